"""Who may post: source keys (cached), anonymous dev posts, per-key and per-IP limits, CORS per source."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Any

import orjson
import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.collector import metrics
from services.collector.ports import Principal, Source, SourceRegistry, StoreUnavailable
from services.collector.problems import ProblemError
from services.collector.ratelimit import KeyedLimiter, retry_after
from shared.events import KeyKind
from shared.identity import principal as identity
from shared.identity.apitokens import hash_secret
from shared.identity.ports import StoreUnavailable as IdentityStoreUnavailable
from shared.identity.scopes import Scope as IdentityScope
from shared.identity.sourcekeys import parse_source_key

log = structlog.get_logger(__name__)

#: Ratings posted without a key when keys are not required (dev and test only).
DEV_SOURCE = Source(source_id="dev", name="Anonymous posts (dev only)")

CORS_ALLOW_HEADERS = "authorization, x-api-key, content-type, idempotency-key"
CORS_EXPOSE_HEADERS = "retry-after, idempotent-replayed"


def client_ip(scope: Scope, trusted: list[IPv4Network | IPv6Network]) -> str:
    """The peer address, or the nearest untrusted hop of X-Forwarded-For when the peer is our proxy."""
    peer = (scope.get("client") or ("unknown", 0))[0]
    if not trusted or not _is_trusted(peer, trusted):
        return str(peer)
    forwarded = ""
    for name, value in scope.get("headers", []):
        if name == b"x-forwarded-for":
            forwarded = f"{forwarded},{value.decode('latin-1')}" if forwarded else value.decode("latin-1")
    hops = [h.strip() for h in forwarded.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop
    return str(peer)


def _is_trusted(addr: str, trusted: list[IPv4Network | IPv6Network]) -> bool:
    try:
        ip: IPv4Address | IPv6Address = ip_address(addr)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Token buckets per client address and per key; a refusal is a 429 problem with Retry-After."""

    ip: KeyedLimiter
    key: KeyedLimiter
    proxies: list[IPv4Network | IPv6Network]

    def check_ip(self, scope: Scope, *, source: str | None = None, cost: int = 1) -> None:
        """429 when this client address has used up its bucket; ``cost``: ratings in the request."""
        wait = self.ip.acquire(client_ip(scope, self.proxies), cost=cost)
        if wait:
            metrics.reject("rate_limited", source)
            raise _too_many("too many requests from this address; retry later", wait)

    def check_key(self, principal: Principal, *, cost: int = 1) -> None:
        """429 when this key has used up its bucket (a source may set its own rate and burst).

        Each rating costs one token, so a batch of 500 costs 500: batching saves round trips, not quota.
        """
        src = principal.source
        wait = self.key.acquire(
            f"key:{principal.key_id or src.source_id}",
            cost=cost,
            rate=src.rate_per_s,
            burst=float(src.rate_burst) if src.rate_burst else None,
        )
        if wait:
            metrics.reject("rate_limited", src.source_id)
            raise _too_many("rate limit for this key exceeded; retry later", wait)


def _too_many(detail: str, wait_s: float) -> ProblemError:
    return ProblemError(
        429,
        "Too Many Requests",
        detail=detail,
        type_="https://csat.dev/problems/rate-limited",
        headers={"Retry-After": str(retry_after(wait_s))},
    )


@dataclass(slots=True)
class _Cached:
    principal: Principal | None
    at: float


class KeyResolver:
    """Source key (``pk_``, ``sk_`` or a pre-split ``csk_``) -> source and key kind, cached ``ttl_s``
    (revocations reach other replicas within it).

    While the database is away, keys seen in the last ``stale_s`` keep working: ingestion stays up
    through a database restart, at the cost of a revoked key living that much longer. It is also the
    ``SourceResolver`` the shared ``Authenticator`` asks about source keys.
    """

    def __init__(
        self,
        *,
        store: SourceRegistry,
        ttl_s: float,
        stale_s: float,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.stale_s = stale_s
        self.max_entries = max_entries
        self._clock = clock
        self._cache: dict[bytes, _Cached] = {}

    async def resolve(self, key: str) -> Principal | None:
        if parse_source_key(key) is None:
            return None  # not even shaped like a source key: no database lookup
        digest = hash_secret(key)
        now = self._clock()
        hit = self._cache.get(digest)
        if hit is not None and now - hit.at < self.ttl_s:
            return hit.principal
        try:
            principal = await self.store.principal_for_key(key_hash=digest, now=datetime.now(UTC))
        except StoreUnavailable:
            if hit is not None and hit.principal is not None and now - hit.at < self.stale_s:
                return hit.principal
            raise
        if len(self._cache) >= self.max_entries:
            self._cache.clear()
        self._cache[digest] = _Cached(principal, now)
        return principal

    def forget(self) -> None:
        """Drop the cache after an admin change on this replica."""
        self._cache.clear()

    async def resolve_source(self, credential: str) -> identity.Principal | None:
        """``shared.identity.guard.SourceResolver``: a source key as a principal that may post ratings."""
        try:
            found = await self.resolve(credential)
        except StoreUnavailable as exc:
            raise IdentityStoreUnavailable(str(exc)) from exc
        if found is None or found.source.disabled:
            return None
        return identity.Principal(
            subject=found.source.source_id,
            kind=identity.PrincipalKind.SOURCE,
            role=None,
            scopes=frozenset({IdentityScope.RATINGS_WRITE}),
        )


def token_poster(principal: identity.Principal) -> Principal:
    """An API token holding ``ratings:write`` posts as a server does: under its own name, facts trusted."""
    name = principal.log_name
    return Principal(source=Source(source_id=name, name=name), key_id=principal.subject, kind=KeyKind.TOKEN)


class OriginSet:
    """The union of every source's allowed origins, refreshed every ``ttl_s`` (answers preflights)."""

    def __init__(self, *, store: SourceRegistry, ttl_s: float, clock: Callable[[], float] = time.monotonic):
        self.store = store
        self.ttl_s = ttl_s
        self._clock = clock
        self._origins: set[str] = set()
        self._at: float | None = None

    async def contains(self, origin: str) -> bool:
        now = self._clock()
        if self._at is None or now - self._at >= self.ttl_s:
            try:
                self._origins = await self.store.all_origins()
                self._at = now
            except StoreUnavailable:
                log.warning("origins_refresh_failed")
                if self._at is None:
                    return False
        return origin in self._origins

    def forget(self) -> None:
        self._at = None


def same_origin(origin: str, scope: Scope) -> bool:
    """A page served by the collector itself posting back to it (the demo page)."""
    host = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"host"), None)
    if not host:
        return False
    return origin in {f"http://{host}", f"https://{host}"}


def origin_of(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"origin":
            text = value.decode("latin-1")
            return None if text == "null" else text
    return None


class SourceCorsMiddleware:
    """CORS for the rating endpoints, per source: no ``*``, no credentials, unknown origins get nothing.

    A preflight carries no key, so it is answered for any origin some source allows; the actual
    request is then checked against the posting key's own source (``scope['state']['cors_origin']``
    is set by the route's guard once it has approved the origin).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        paths: Collection[str],
        origins: OriginSet,
        max_age_s: int = 600,
        prefixes: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.paths = paths
        self.prefixes = prefixes
        self.origins = origins
        self.max_age_s = max_age_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (
            scope["path"] not in self.paths and not scope["path"].startswith(self.prefixes)
        ):
            await self.app(scope, receive, send)
            return
        origin = origin_of(scope)
        headers = dict(scope.get("headers", []))
        if scope["method"] == "OPTIONS" and origin and b"access-control-request-method" in headers:
            await self._preflight(scope, origin, send)
            return
        if origin is None:
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                approved = scope.get("state", {}).get("cors_origin")
                out = list(message.get("headers", []))
                out.append((b"vary", b"Origin"))
                if approved == origin:
                    out.append((b"access-control-allow-origin", origin.encode("latin-1")))
                    out.append((b"access-control-expose-headers", CORS_EXPOSE_HEADERS.encode()))
                message = {**message, "headers": out}
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(self, scope: Scope, origin: str, send: Send) -> None:
        allowed = same_origin(origin, scope) or await self.origins.contains(origin)
        headers: list[tuple[bytes, bytes]] = [(b"vary", b"Origin")]
        if allowed:
            status = 204
            body = b""
            headers += [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"access-control-allow-methods", b"POST, OPTIONS"),
                (b"access-control-allow-headers", CORS_ALLOW_HEADERS.encode()),
                (b"access-control-max-age", str(self.max_age_s).encode()),
            ]
        else:
            status = 403
            body = orjson.dumps(_origin_problem())
            headers.append((b"content-type", b"application/problem+json"))
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _origin_problem() -> dict[str, Any]:
    return {
        "type": "https://csat.dev/problems/origin-not-allowed",
        "title": "Forbidden",
        "status": 403,
        "detail": "this origin is not allowed to post ratings",
        "field": "Origin",
    }
