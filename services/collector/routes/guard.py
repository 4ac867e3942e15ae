"""Who may post a rating: the per-IP limit, the credential (or anonymous in dev), origins, the key limit.

A credential is a source key (``pk_`` publishable, ``sk_`` secret, or a pre-split ``csk_`` key, which
counts as publishable) or an API token holding ``ratings:write`` (checked by the shared
``Authenticator``, like every other service's routes). What the ratings may do follows from its kind:
a publishable key's contact, consent and account fields are claims (``intake.prepare``).
"""

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from services.collector import metrics
from services.collector.access import DEV_SOURCE, origin_of, same_origin, token_poster
from services.collector.deps import CollectorDeps
from services.collector.domain import Trust, identity_secrets
from services.collector.ports import Principal, Source, StoreUnavailable
from services.collector.problems import ProblemError, unavailable
from shared.events import KeyKind
from shared.identity.guard import AuthError
from shared.identity.scopes import Scope
from shared.identity.sourcekeys import parse_source_key

_bearer = HTTPBearer(
    auto_error=False,
    description="A source key (`pk_...` publishable, `sk_...` secret) or an API token with ratings:write",
)
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="The same credential, other header")


def source_guard(
    deps: CollectorDeps, *, scope: Scope = Scope.RATINGS_WRITE, secret_only: bool = False
) -> Callable[..., Awaitable[Principal]]:
    """A FastAPI dependency answering who posts, or refusing with 401, 403, 429 or 503.

    ``scope``: what an API token must hold (ratings:write, interactions:write, usage:write).
    ``secret_only``: a publishable key (public by nature: in pages and apps) is refused with 403, as for
    interactions, which start surveys, and usage figures, facts only a server may state.
    """

    async def guard(
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        api_key: Annotated[str | None, Depends(_api_key)],
    ) -> Principal:
        origin = origin_of(request.scope)
        if origin is not None and (same_origin(origin, request.scope) or await deps.origins.contains(origin)):
            # An origin some source allows may read our refusals (429 with Retry-After, 401); whether
            # it may post for this key's source is decided below.
            request.state.cors_origin = origin
        deps.limits.check_ip(request.scope)
        key = bearer.credentials.strip() if bearer else (api_key.strip() if api_key else None)
        principal = await _principal(deps, key, scope)
        request.state.source_id = principal.source.source_id
        if secret_only and principal.kind is KeyKind.PUBLISHABLE:
            metrics.reject("forbidden", principal.source.source_id)
            raise ProblemError(
                403,
                "Forbidden",
                detail=f"a publishable key cannot post here; use a secret key or a token with {scope}",
                type_="https://csat.dev/problems/forbidden",
            )
        _admit(principal.source, origin, request)
        deps.limits.check_key(principal)
        return principal

    return guard


async def _principal(deps: CollectorDeps, key: str | None, scope: Scope) -> Principal:
    """The poster behind ``key``; anonymous posts are the dev source when keys are not required."""
    if not key:
        if deps.settings.keys_required:
            raise _unauthorized("a source key or an API token is required (Authorization: Bearer <key>)")
        return Principal(source=DEV_SOURCE, key_id=None, kind=KeyKind.NONE)
    if parse_source_key(key) is None:
        return await _token(deps, key, scope)
    try:
        found = await deps.keys.resolve(key)
    except StoreUnavailable as exc:
        metrics.reject("database_unavailable", None)
        raise unavailable("database", retry_after_s=deps.settings.retry_after_s) from exc
    if found is None:
        raise _unauthorized("unknown, revoked or expired source key")
    return found


async def _token(deps: CollectorDeps, credential: str, scope: Scope) -> Principal:
    """An API token (or any other credential the shared ``Authenticator`` knows) holding ``scope``."""
    try:
        who = await deps.auth.authenticate(credential)
    except AuthError as exc:
        if exc.status == 503:
            metrics.reject("database_unavailable", None)
            raise unavailable("database", retry_after_s=deps.settings.retry_after_s) from None
        raise _unauthorized("unknown, revoked or expired key or token") from None
    if who.missing({scope}):
        metrics.reject("forbidden", None)
        raise ProblemError(
            403,
            "Forbidden",
            detail=f"this credential lacks the scope {scope}",
            type_="https://csat.dev/problems/forbidden",
        )
    return token_poster(who)


def trust_of(deps: CollectorDeps, principal: Principal, *, now: datetime) -> Trust:
    """What vouches for this poster's ratings; a publishable key brings its source's identity secrets."""
    if principal.kind is not KeyKind.PUBLISHABLE:
        return Trust(key_kind=principal.kind)
    secrets = identity_secrets(
        platform_key=deps.settings.identity_platform_key,
        source=principal.source,
        now=now,
        grace=timedelta(hours=deps.settings.identity_secret_grace_h),
    )
    return Trust(key_kind=principal.kind, identity_secrets=secrets)


def _admit(source: Source, origin: str | None, request: Request) -> None:
    """403 for a disabled source, or for a browser origin that is not one of the source's."""
    if source.disabled:
        metrics.reject("forbidden", source.source_id)
        raise ProblemError(
            403, "Forbidden", detail="this source is disabled", type_="https://csat.dev/problems/forbidden"
        )
    if origin is None:
        return
    if origin in source.allowed_origins or same_origin(origin, request.scope):
        request.state.cors_origin = origin
        return
    request.state.cors_origin = None
    metrics.reject("origin_not_allowed", source.source_id)
    raise ProblemError(
        403,
        "Forbidden",
        detail="this origin is not allowed for the source of this key",
        type_="https://csat.dev/problems/origin-not-allowed",
        field="Origin",
    )


def _unauthorized(detail: str) -> ProblemError:
    metrics.reject("unauthorized", None)
    return ProblemError(
        401,
        "Unauthorized",
        detail=detail,
        type_="https://csat.dev/problems/unauthorized",
        headers={"WWW-Authenticate": "Bearer"},
    )
