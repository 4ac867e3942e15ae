"""Who may post a rating: the per-IP limit, the source key (or anonymous in dev), origins, the key limit."""

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from services.collector import metrics
from services.collector.access import DEV_SOURCE, origin_of, same_origin
from services.collector.deps import CollectorDeps
from services.collector.ports import Principal, Source, StoreUnavailable
from services.collector.problems import ProblemError, unavailable

_bearer = HTTPBearer(auto_error=False, description="A source key: `Authorization: Bearer csk_...`")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="A source key, as a header")


def source_guard(deps: CollectorDeps) -> Callable[..., Awaitable[Principal]]:
    """A FastAPI dependency answering who posts, or refusing with 401, 403, 429 or 503."""

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
        principal = await _principal(deps, key)
        request.state.source_id = principal.source.source_id
        _admit(principal.source, origin, request)
        deps.limits.check_key(principal)
        return principal

    return guard


async def _principal(deps: CollectorDeps, key: str | None) -> Principal:
    """The source behind ``key``; anonymous posts are the dev source when keys are not required."""
    if not key:
        if deps.settings.keys_required:
            raise _unauthorized("a source API key is required (Authorization: Bearer <key> or X-API-Key)")
        return Principal(source=DEV_SOURCE, key_id=None)
    try:
        found = await deps.keys.resolve(key)
    except StoreUnavailable as exc:
        metrics.reject("database_unavailable", None)
        raise unavailable("database", retry_after_s=deps.settings.retry_after_s) from exc
    if found is None:
        raise _unauthorized("unknown, revoked or expired key; source keys only (csk_...)")
    return found


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
