"""Signed one-click unsubscribe tokens (itsdangerous, HMAC-SHA256): who and which address, never the address
itself (a keyed hash of it, ``policy.AddressKeys``)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeSerializer

SALT = "csat-unsubscribe-v1"


class BadToken(ValueError):
    """A token that was not signed by us (tampered, truncated, or signed with a retired key)."""


@dataclass(frozen=True, slots=True)
class UnsubscribeClaim:
    customer_id: str | None
    scope: str  # "email" | "sms": the channel the link was sent on
    address_key: str  # policy.AddressKeys.key(scope, address); the unkeyed legacy hash in old tokens
    notification_id: str
    locale: str = "en"


class UnsubscribeTokens:
    """Sign with the first secret, accept any listed one, so a secret can be rotated without dead links.

    Tokens are HMAC-SHA256. With ``accept_sha1``, tokens of earlier releases (itsdangerous' default
    HMAC-SHA1) are still read: an unsubscribe link in a message already sent must keep working.
    """

    def __init__(self, secrets: Sequence[str], *, accept_sha1: bool = False) -> None:
        if not secrets or not all(secrets):
            raise ValueError("at least one non-empty unsubscribe secret is required")
        # itsdangerous signs with the last key and verifies with all of them.
        keys = list(reversed(secrets))
        self._serializer = URLSafeSerializer(keys, salt=SALT, signer_kwargs={"digest_method": hashlib.sha256})
        self._legacy = URLSafeSerializer(keys, salt=SALT) if accept_sha1 else None

    def make(self, claim: UnsubscribeClaim) -> str:
        return str(
            self._serializer.dumps(
                {
                    "c": claim.customer_id,
                    "s": claim.scope,
                    "a": claim.address_key,
                    "n": claim.notification_id,
                    "l": claim.locale,
                }
            )
        )

    def read(self, token: str) -> UnsubscribeClaim:
        try:
            data = self._serializer.loads(token)
        except BadSignature as exc:
            if self._legacy is None:
                raise BadToken("invalid unsubscribe token") from exc
            try:
                data = self._legacy.loads(token)
            except BadSignature as legacy_exc:
                raise BadToken("invalid unsubscribe token") from legacy_exc
        if not isinstance(data, dict) or data.get("s") not in ("email", "sms") or not data.get("a"):
            raise BadToken("malformed unsubscribe token")
        return UnsubscribeClaim(
            customer_id=data.get("c"),
            scope=str(data["s"]),
            address_key=str(data["a"]),
            notification_id=str(data.get("n", "")),
            locale=str(data.get("l") or "en"),
        )
