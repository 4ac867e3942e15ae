"""Source API keys: generated once, shown once, stored only as a hash (pure, no I/O)."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

_PREFIX = "csk_"
_KEY = re.compile(r"^csk_([0-9a-f]{10})_[A-Za-z0-9_-]{32,64}$")


@dataclass(frozen=True, slots=True)
class NewKey:
    key_id: str
    secret: str
    key_hash: bytes


def generate_key() -> NewKey:
    """A 192-bit random key with a public id; ``csk_<id>_<secret>`` is what the client keeps."""
    key_id = secrets.token_hex(5)
    secret = f"{_PREFIX}{key_id}_{secrets.token_urlsafe(24)}"
    return NewKey(key_id=key_id, secret=secret, key_hash=hash_key(secret))


def hash_key(secret: str) -> bytes:
    """SHA-256 is enough for high-entropy random keys (no password stretching needed)."""
    return hashlib.sha256(secret.encode()).digest()


def key_id_of(secret: str) -> str | None:
    """The public id inside a well-formed key, or None for anything else."""
    match = _KEY.match(secret)
    return match.group(1) if match else None
