"""Signed one-click unsubscribe tokens (itsdangerous): who and which address, never the address itself."""

from __future__ import annotations

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
    address_key: str  # policy.address_key(scope, address)
    notification_id: str
    locale: str = "en"


class UnsubscribeTokens:
    """Sign with the first secret, accept any listed one, so a secret can be rotated without dead links."""

    def __init__(self, secrets: Sequence[str]) -> None:
        if not secrets or not all(secrets):
            raise ValueError("at least one non-empty unsubscribe secret is required")
        # itsdangerous signs with the last key and verifies with all of them.
        self._serializer = URLSafeSerializer(list(reversed(secrets)), salt=SALT)

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
            raise BadToken("invalid unsubscribe token") from exc
        if not isinstance(data, dict) or data.get("s") not in ("email", "sms") or not data.get("a"):
            raise BadToken("malformed unsubscribe token")
        return UnsubscribeClaim(
            customer_id=data.get("c"),
            scope=str(data["s"]),
            address_key=str(data["a"]),
            notification_id=str(data.get("n", "")),
            locale=str(data.get("l") or "en"),
        )
