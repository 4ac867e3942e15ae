"""Opaque secrets for machines and browser sessions: generated once, shown once, stored as SHA-256 (pure).

The secrets are 256 random bits, so a plain SHA-256 is the right storage: nothing can be guessed from
it, and a lookup is one index probe. Password stretching (argon2) would only slow every request.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

API_TOKEN_PREFIX = "csat_"  # noqa: S105 - the public prefix, not a secret
_API_TOKEN = re.compile(r"^csat_([0-9a-f]{12})_[A-Za-z0-9_-]{43}$")
_SESSION = re.compile(r"^[A-Za-z0-9_-]{43}$")


@dataclass(frozen=True, slots=True)
class NewApiToken:
    """``secret`` goes to the caller once; only ``token_hash`` is stored, ``token_id`` is public."""

    token_id: str
    secret: str
    token_hash: bytes


@dataclass(frozen=True, slots=True)
class NewSession:
    """``secret`` goes into the HttpOnly cookie; ``session_hash`` is the stored key."""

    secret: str
    session_hash: bytes


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def generate_api_token() -> NewApiToken:
    """``csat_<12 hex id>_<43 url-safe chars>``: a public id to list and revoke it, 256 secret bits.

    The fixed prefix lets secret scanners (and people) recognise a leaked token.
    """
    token_id = secrets.token_hex(6)
    secret = f"{API_TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    return NewApiToken(token_id=token_id, secret=secret, token_hash=hash_secret(secret))


def api_token_id(credential: str) -> str | None:
    """The public id inside a well-formed API token, or None for anything else (no lookup needed)."""
    match = _API_TOKEN.match(credential)
    return match.group(1) if match else None


def generate_session() -> NewSession:
    secret = secrets.token_urlsafe(32)
    return NewSession(secret=secret, session_hash=hash_secret(secret))


def session_hash(cookie_value: str) -> bytes | None:
    """The stored key of a session cookie, or None for a value that cannot be one."""
    return hash_secret(cookie_value) if _SESSION.match(cookie_value) else None
