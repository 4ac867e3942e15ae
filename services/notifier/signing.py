"""Generic webhook signatures: ``X-CSAT-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>``. Pure.

The signed string is ``f"{t}.{raw body}"`` (the Stripe scheme): the receiver recomputes it with the
shared secret, compares in constant time and refuses timestamps older than its tolerance (replays).
"""

from __future__ import annotations

import hashlib
import hmac

HEADER = "X-CSAT-Signature"
ID_HEADER = "X-CSAT-Id"


class SignatureError(ValueError):
    pass


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, *, now: int, tolerance_s: int = 300) -> int:
    """Check a signature header as a receiver would; return its timestamp or raise SignatureError."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError) as exc:
        raise SignatureError("no timestamp in the signature header") from exc
    if abs(now - timestamp) > tolerance_s:
        raise SignatureError("timestamp outside the tolerance (replayed or clock skew)")
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    if not any(hmac.compare_digest(expected, candidate) for candidate in parts.get("v1", [])):
        raise SignatureError("signature mismatch")
    return timestamp
