"""Source keys of the collector and the identity proof a site's server gives for its customer (pure).

Two kinds of key per source: *publishable* (``pk_``), embedded in pages and apps and therefore public,
and *secret* (``sk_``), kept on the site's servers. Anything posted with a publishable key is a claim.
A customer id becomes a fact only with a proof the site's server computed with the source's identity
secret (HMAC-SHA256 of the customer id and an expiry), the way Intercom and Formbricks verify identity.
The identity secret is derived from a platform key, so nothing secret needs to be stored per source.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum

from shared.identity.apitokens import hash_secret

_KEY = re.compile(r"^(pk|sk)_([0-9a-f]{10})_[A-Za-z0-9_-]{32,64}$")
_LEGACY = re.compile(r"^csk_([0-9a-f]{10})_[A-Za-z0-9_-]{32,64}$")
_PROOF = re.compile(r"^v1\.([0-9]{1,12})\.([0-9a-f]{64})$")


class SourceKeyKind(StrEnum):
    PUBLISHABLE = "pk"
    SECRET = "sk"  # noqa: S105 - the key kind's prefix, not a secret


@dataclass(frozen=True, slots=True)
class NewSourceKey:
    kind: SourceKeyKind
    key_id: str
    secret: str
    key_hash: bytes


@dataclass(frozen=True, slots=True)
class SourceKeyRef:
    """What the shape of a presented key says, before any lookup. ``legacy``: a ``csk_`` key."""

    kind: SourceKeyKind
    key_id: str
    legacy: bool = False


def generate_source_key(kind: SourceKeyKind) -> NewSourceKey:
    key_id = secrets.token_hex(5)
    secret = f"{kind.value}_{key_id}_{secrets.token_urlsafe(24)}"
    return NewSourceKey(kind=kind, key_id=key_id, secret=secret, key_hash=hash_secret(secret))


def parse_source_key(credential: str) -> SourceKeyRef | None:
    """Kind and id of a well-formed source key; the pre-split ``csk_`` keys count as publishable.

    Those keys were handed to browsers as well as servers, so they get the lesser trust until an admin
    replaces them with an ``sk_`` key where a server uses them.
    """
    match = _KEY.match(credential)
    if match:
        return SourceKeyRef(kind=SourceKeyKind(match.group(1)), key_id=match.group(2))
    legacy = _LEGACY.match(credential)
    if legacy:
        return SourceKeyRef(kind=SourceKeyKind.PUBLISHABLE, key_id=legacy.group(1), legacy=True)
    return None


def derive_identity_secret(*, platform_key: str, source_id: str, version: int) -> str:
    """The identity secret of one source (version ``version``): shown to its admin, never stored.

    Rotating it means bumping the source's version; the previous version stays valid for a grace period.
    """
    message = f"csat.source-identity.v1\x00{source_id}\x00{version}".encode()
    digest = hmac.new(platform_key.encode(), message, hashlib.sha256).digest()
    return "sis_" + base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _mac(identity_secret: str, customer_id: str, expires_at: int) -> str:
    message = f"{customer_id}\x00{expires_at}".encode()
    return hmac.new(identity_secret.encode(), message, hashlib.sha256).hexdigest()


def sign_customer(*, identity_secret: str, customer_id: str, expires_at: int) -> str:
    """The proof a site's server puts beside the customer id: ``v1.<unix expiry>.<hex HMAC-SHA256>``."""
    return f"v1.{expires_at}.{_mac(identity_secret, customer_id, expires_at)}"


class ProofCheck(StrEnum):
    VALID = "valid"
    MALFORMED = "malformed"
    EXPIRED = "expired"
    TOO_LONG = "too_long"  # valid further ahead than the platform accepts: a leaked proof would live on
    WRONG = "wrong"


def verify_customer_proof(
    *,
    identity_secrets: list[str],
    customer_id: str,
    proof: str,
    now: int,
    max_ttl_s: int = 7 * 24 * 3600,
) -> ProofCheck:
    """Check a proof against the source's current and previous identity secrets (constant time)."""
    match = _PROOF.match(proof)
    if not match or not customer_id:
        return ProofCheck.MALFORMED
    expires_at = int(match.group(1))
    given = match.group(2).encode()
    ok = False
    for identity_secret in identity_secrets:
        ok |= hmac.compare_digest(_mac(identity_secret, customer_id, expires_at).encode(), given)
    if not ok:
        return ProofCheck.WRONG
    if expires_at <= now:
        return ProofCheck.EXPIRED
    if expires_at - now > max_ttl_s:
        return ProofCheck.TOO_LONG
    return ProofCheck.VALID
