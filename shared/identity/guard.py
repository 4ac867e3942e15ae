"""The one way every service checks a caller: ``Authenticator.require(scope, ...)`` as a FastAPI dependency.

A credential arrives as ``Authorization: Bearer <credential>`` (or ``X-API-Key``) and is one of:

- a console access token (a JWT, verified offline with the public keys in the settings);
- an API token ``csat_<id>_<secret>`` (looked up by SHA-256 in ``identity.api_tokens``, cached
  ``cache_s`` seconds: a revocation reaches every replica within that bound);
- a source key ``pk_``/``sk_`` (collector only, through its own ``SourceResolver``);
- the bootstrap admin key, which may only manage people and tokens.

Missing or unusable credentials answer 401, a credential without the scope 403, both as RFC 9457
problems through ``shared.http``'s handler; an empty credential is never equal to anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Protocol

import structlog
from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from shared.identity.accesstokens import AccessTokenVerifier, InvalidAccessToken
from shared.identity.apitokens import api_token_id, hash_secret
from shared.identity.ports import ApiToken, StoreUnavailable, TokenLookup
from shared.identity.principal import Principal, bootstrap_principal
from shared.identity.scopes import BOOTSTRAP_SCOPES, Scope
from shared.identity.sourcekeys import parse_source_key
from shared.security.text import text_problem

log = structlog.get_logger(__name__)

_CHALLENGE = 'Bearer realm="csat"'
#: Longer than any credential this platform issues (access tokens are well under 2 kB).
MAX_CREDENTIAL_CHARS = 4096

_bearer = HTTPBearer(auto_error=False, description="An API token, a console access token or a source key")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="The same credential, other header")


class AuthError(Exception):
    """Why a credential was refused; ``status`` is 401 (who are you?) or 503 (cannot check now)."""

    def __init__(self, status: int, detail: str, *, reason: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.reason = reason


class SourceResolver(Protocol):
    """The collector's lookup of ``pk_``/``sk_`` keys; other services have none."""

    async def resolve_source(self, credential: str) -> Principal | None: ...


@dataclass(slots=True)
class _Cached:
    token: ApiToken | None
    fetched: float


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _looks_like_jwt(credential: str) -> bool:
    return credential.startswith("eyJ") and credential.count(".") == 2


class Authenticator:
    """Credential -> ``Principal``, the same in every service; built once by each composition root."""

    def __init__(
        self,
        *,
        service: str,
        tokens: TokenLookup | None = None,
        access: AccessTokenVerifier | None = None,
        sources: SourceResolver | None = None,
        bootstrap_key: str | None = None,
        bootstrap_scopes: frozenset[Scope] = BOOTSTRAP_SCOPES,
        cache_s: float = 30.0,
        stale_s: float = 0.0,
        touch_every_s: float = 60.0,
        max_entries: int = 10_000,
        monotonic: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.service = service
        self.tokens = tokens
        self.access = access
        self.sources = sources
        # Only a digest is kept: compared in constant time, and equal-length whatever was presented.
        self._bootstrap = hashlib.sha256(bootstrap_key.encode()).digest() if bootstrap_key else None
        self._bootstrap_scopes = bootstrap_scopes
        self.cache_s = cache_s
        self.stale_s = stale_s
        self.touch_every_s = touch_every_s
        self.max_entries = max_entries
        self._monotonic = monotonic
        self._now = now
        self._cache: dict[bytes, _Cached] = {}
        self._touched: dict[str, float] = {}
        self._pending: dict[str, datetime] = {}
        self._flusher: asyncio.Task[None] | None = None

    # ---- verification ----------------------------------------------------------------------------
    async def authenticate(self, credential: str | None) -> Principal:
        """The principal behind ``credential``; raises ``AuthError`` (never returns None)."""
        credential = (credential or "").strip()
        if not credential:
            raise AuthError(401, "a credential is required", reason="missing")
        if len(credential) > MAX_CREDENTIAL_CHARS or text_problem(credential, single_line=True):
            raise AuthError(401, "the credential is not valid", reason="malformed")
        if _looks_like_jwt(credential):
            return self._access_token(credential)
        if api_token_id(credential) is not None:
            return await self._api_token(credential)
        if self.sources is not None and parse_source_key(credential) is not None:
            principal = await self.sources.resolve_source(credential)
            if principal is None:
                raise AuthError(401, "the source key is not valid", reason="source_key")
            return principal
        if self._bootstrap is not None and hmac.compare_digest(
            hashlib.sha256(credential.encode()).digest(), self._bootstrap
        ):
            return bootstrap_principal(self._bootstrap_scopes)
        raise AuthError(401, "the credential is not valid", reason="unknown_format")

    def _access_token(self, credential: str) -> Principal:
        if self.access is None:
            raise AuthError(401, "this service accepts no access tokens", reason="no_keys")
        try:
            return self.access.verify(credential)
        except InvalidAccessToken as exc:
            raise AuthError(401, "the access token is not valid or has expired", reason=str(exc)) from None

    async def _api_token(self, credential: str) -> Principal:
        if self.tokens is None:
            raise AuthError(401, "this service accepts no API tokens", reason="no_store")
        token = await self._lookup(hash_secret(credential))
        if token is None or not token.active(self._now()):
            raise AuthError(401, "the token is not valid (unknown, expired or revoked)", reason="token")
        self._note_use(token.token_id)
        return token.principal()

    async def _lookup(self, digest: bytes) -> ApiToken | None:
        assert self.tokens is not None
        clock = self._monotonic()
        hit = self._cache.get(digest)
        if hit is not None and clock - hit.fetched < self.cache_s:
            return hit.token
        try:
            token = await self.tokens.token_by_hash(token_hash=digest)
        except StoreUnavailable:
            if hit is not None and hit.token is not None and clock - hit.fetched < self.stale_s:
                return hit.token
            raise AuthError(
                503, "credentials cannot be checked right now; retry shortly", reason="store"
            ) from None
        if len(self._cache) >= self.max_entries:
            self._cache.clear()
        self._cache[digest] = _Cached(token=token, fetched=clock)
        return token

    def forget(self) -> None:
        """Drop cached lookups (after a revocation on this replica, so it takes effect here at once)."""
        self._cache.clear()

    # ---- last-used times: at most one write per token per ``touch_every_s`` per replica -----------
    def _note_use(self, token_id: str) -> None:
        clock = self._monotonic()
        last = self._touched.get(token_id)
        if last is not None and clock - last < self.touch_every_s:
            return
        self._touched[token_id] = clock
        self._pending[token_id] = self._now()
        if len(self._touched) > self.max_entries:
            self._touched.clear()

    async def flush_last_used(self) -> int:
        """Write the pending last-used times in one statement; kept for the next flush on failure."""
        if not self._pending or self.tokens is None:
            return 0
        batch, self._pending = self._pending, {}
        try:
            await self.tokens.touch_tokens(last_used=batch)
        except StoreUnavailable:
            for token_id, at in batch.items():
                self._pending.setdefault(token_id, at)
            return 0
        return len(batch)

    async def start(self) -> None:
        """Begin flushing last-used times in the background (the service's lifespan calls it)."""
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_loop(), name=f"{self.service}-token-last-used")

    async def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        await self.flush_last_used()

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.touch_every_s)
            await self.flush_last_used()

    # ---- FastAPI -----------------------------------------------------------------------------------
    def require(self, *scopes: Scope) -> Callable[..., Awaitable[Principal]]:
        """A dependency returning the caller's ``Principal`` once it holds every scope in ``scopes``."""
        needed = frozenset(scopes)

        async def dependency(
            request: Request,
            bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
            api_key: Annotated[str | None, Depends(_api_key)],
        ) -> Principal:
            credential = bearer.credentials if bearer is not None else api_key
            try:
                principal = await self.authenticate(credential)
            except AuthError as exc:
                log.info("auth_refused", service=self.service, reason=exc.reason, status=exc.status)
                raise _http_error(exc) from None
            missing = principal.missing(needed)
            if missing:
                log.info("auth_forbidden", service=self.service, principal=principal.log_name)
                raise HTTPException(
                    403, f"this credential lacks the scope {', '.join(sorted(missing))}"
                ) from None
            request.state.principal = principal
            return principal

        return dependency


def _http_error(exc: AuthError) -> HTTPException:
    if exc.status == 503:
        return HTTPException(503, exc.detail, headers={"Retry-After": "5"})
    challenge = _CHALLENGE if exc.reason == "missing" else f'{_CHALLENGE}, error="invalid_token"'
    return HTTPException(exc.status, exc.detail, headers={"WWW-Authenticate": challenge})


def principal_of(request: Request) -> Principal | None:
    """The principal a ``require`` dependency stored on the request (for logs and audit entries)."""
    found = getattr(request.state, "principal", None)
    return found if isinstance(found, Principal) else None
