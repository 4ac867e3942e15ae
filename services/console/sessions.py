"""Browser sessions and CSRF tokens (pure): when a session ends, how cookies are named, what a form carries.

The cookie holds a 256-bit secret; the identity store keeps its SHA-256 (``shared.identity.apitokens``).
A session ends at the first of: sign-out, ``idle`` without a request, ``lifetime`` after sign-in, the
person being disabled. CSRF tokens are an HMAC of the session's stored key (or, before sign-in, of
a random pre-session cookie), so they need no storage and die with what they are bound to.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from itsdangerous import BadSignature, URLSafeTimedSerializer

from shared.identity.ports import Session

_CSRF_LABEL = b"csat-console-csrf-v1\x00"
_PRE_SESSION_CHARS = 43


class SessionState(StrEnum):
    ACTIVE = "active"
    ENDED = "ended"  # signed out, or ended by an admin (disabled person)
    IDLE = "idle"  # no request for longer than the idle limit
    EXPIRED = "expired"  # past its absolute lifetime


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    """How long sessions live; ``touch_every`` bounds the writes of last activity (one per minute)."""

    idle: timedelta = timedelta(minutes=30)
    lifetime: timedelta = timedelta(hours=8)
    touch_every: timedelta = timedelta(seconds=60)

    def expires_at(self, created_at: datetime) -> datetime:
        return created_at + self.lifetime

    def state(self, session: Session, now: datetime) -> SessionState:
        if session.ended_at is not None:
            return SessionState.ENDED
        if now >= session.expires_at:
            return SessionState.EXPIRED
        last = session.last_seen_at or session.created_at
        if now - last >= self.idle:
            return SessionState.IDLE
        return SessionState.ACTIVE

    def needs_touch(self, session: Session, now: datetime) -> bool:
        last = session.last_seen_at or session.created_at
        return now - last >= self.touch_every


@dataclass(frozen=True, slots=True)
class CookieNames:
    """``__Host-`` names when cookies are Secure: the browser then refuses them from any subdomain."""

    session: str
    pre_session: str
    oidc: str
    lang: str

    @classmethod
    def for_security(cls, *, secure: bool) -> CookieNames:
        prefix = "__Host-" if secure else ""
        return cls(
            session=f"{prefix}csat_session",
            pre_session=f"{prefix}csat_pre",
            oidc=f"{prefix}csat_oidc",
            lang="csat_lang",  # a preference, readable by nothing but the server all the same
        )


class CsrfTokens:
    """Form tokens: HMAC-SHA256 of what the browser's cookie is bound to, with the session secret."""

    def __init__(self, *, key: bytes) -> None:
        self._key = key

    def token(self, binding: bytes) -> str:
        return hmac.new(self._key, _CSRF_LABEL + binding, hashlib.sha256).hexdigest()

    def valid(self, binding: bytes, presented: str | None) -> bool:
        if not presented or len(presented) != 64:
            return False
        return hmac.compare_digest(self.token(binding), presented)


def new_pre_session() -> str:
    """The anonymous visitor's random value; sign-in forms carry a token bound to it (login CSRF)."""
    return secrets.token_urlsafe(32)


def pre_session_binding(value: str | None) -> bytes | None:
    """What a pre-session cookie binds CSRF tokens to, or None for a value we never issued."""
    if value is None or len(value) != _PRE_SESSION_CHARS:
        return None
    return b"pre\x00" + value.encode()


def session_binding(session_hash: bytes) -> bytes:
    return b"session\x00" + session_hash


def safe_next(target: str | None, default: str = "/") -> str:
    """Where to go after sign-in: a path on this site only (no ``//host``, no scheme, no backslash)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in target) or len(target) > 2000:
        return default
    return target


@dataclass(frozen=True, slots=True)
class RoundTrip:
    """What an OpenID sign-in keeps in the browser between the redirect and the callback
    (the fields of ``shared.identity.oidc.PendingSignIn``, and where to go afterwards)."""

    state: str
    nonce: str
    code_verifier: str
    created_at: datetime
    next_path: str


class RoundTripCookie:
    """A signed (HMAC-SHA256), time-limited cookie value holding a ``RoundTrip``.

    Only the browser that started the sign-in has it; the PKCE verifier and the nonce in it are
    worthless without the provider's code, which comes back to that same browser.
    """

    def __init__(self, *, key: bytes, max_age: timedelta = timedelta(minutes=10)) -> None:
        self._serializer = URLSafeTimedSerializer(
            key, salt="csat-console-oidc-v1", signer_kwargs={"digest_method": hashlib.sha256}
        )
        self.max_age = max_age

    def dump(self, trip: RoundTrip) -> str:
        data = {"s": trip.state, "n": trip.nonce, "v": trip.code_verifier, "t": trip.created_at.isoformat()}
        return self._serializer.dumps({**data, "next": trip.next_path})

    def load(self, value: str | None) -> RoundTrip | None:
        if not value:
            return None
        try:
            data = self._serializer.loads(value, max_age=int(self.max_age.total_seconds()))
            return RoundTrip(
                state=str(data["s"]),
                nonce=str(data["n"]),
                code_verifier=str(data["v"]),
                created_at=datetime.fromisoformat(str(data["t"])),
                next_path=safe_next(str(data.get("next") or "/")),
            )
        except (BadSignature, KeyError, TypeError, ValueError):
            return None
