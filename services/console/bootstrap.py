"""The console's composition root: settings -> database, identity store, keys, OpenID client, APIs -> app.

Only wiring: decisions live in the routes, ``people`` (use cases) and the pure modules.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import structlog
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from services.console.apiclient import ApiClient
from services.console.deps import ConsoleDeps
from services.console.events import KafkaEvents
from services.console.guard import SessionGate
from services.console.live import LiveHub
from services.console.livefeed import ScoreFeed, kafka_consumer
from services.console.ports import ConsoleStore, EventSink, IdentityStore
from services.console.repository import PgConsoleStore
from services.console.routes import (
    admin,
    alerts,
    api,
    auth,
    customers,
    dryrun,
    gdpr,
    live,
    pages,
    rules,
    scores,
    segments,
    verbatims,
)
from services.console.sessions import CookieNames, CsrfTokens, SessionPolicy
from services.console.settings import SERVICE, ConsoleSettings
from services.console.tokens import AccessTokens
from services.console.web import STATIC_DIR, LocaleMiddleware, Pages, SecurityHeaders, install_page_handlers
from shared.db import make_engine
from shared.http import install_common
from shared.identity.accesstokens import AccessTokenIssuer, AccessTokenVerifier, KeyRing
from shared.identity.guard import Authenticator
from shared.identity.oidc import OidcClient, OidcClientConfig
from shared.identity.passwords import Passwords
from shared.identity.ports import StoreUnavailable
from shared.identity.repository import PgIdentityStore
from shared.limits import BodySizeLimitMiddleware
from shared.logs import configure_logging

log = structlog.get_logger(__name__)

OIDC_CALLBACK = "/auth/oidc/callback"
MAX_BODY_BYTES = 262_144  # forms and small JSON bodies only


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Adapters:
    """The stores and HTTP clients, and what this app opened (and so must close)."""

    identity: IdentityStore
    console: ConsoleStore
    http: httpx.AsyncClient
    owned_engine: PgConsoleStore | None
    events: EventSink  # erasure requests to the broker
    owned_events: KafkaEvents | None


def create_app(
    settings: ConsoleSettings | None = None,
    *,
    identity: IdentityStore | None = None,
    console: ConsoleStore | None = None,
    passwords: Passwords | None = None,
    http: httpx.AsyncClient | None = None,
    clock: Callable[[], datetime] = _utcnow,
    events: EventSink | None = None,
) -> FastAPI:
    """Wire settings, stores and routes; tests pass in-memory stores, cheap passwords or a clock."""
    cfg = settings or ConsoleSettings()
    configure_logging(service=SERVICE, level=cfg.log_level, fmt=cfg.log_format)
    adapters = connect(cfg, identity=identity, console=console, http=http, events=events)
    deps = build_deps(cfg, adapters, passwords=passwords or Passwords(), clock=clock)
    feed = live_feed(cfg, deps)
    app = FastAPI(
        title="CSAT console",
        version="1.0.0",
        description="People sign in here; the identity API manages people, API tokens and the audit log.",
        lifespan=lifespan(cfg, adapters, deps, feed),
        docs_url="/docs" if cfg.environment != "prod" else None,
        redoc_url=None,
        openapi_url="/openapi.json" if cfg.environment != "prod" else None,
    )
    app.state.live_feed = feed  # tests and operators see whether it is connected
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(LocaleMiddleware, cookies=deps.gate.cookies, secure=deps.gate.secure)
    app.add_middleware(SecurityHeaders, hsts=deps.gate.secure and cfg.environment == "prod")
    install_common(
        app,
        service=SERVICE,
        checks={"database": adapters.identity.check},
        internal_port=cfg.internal_port,
        documents_public=cfg.environment != "prod",
    )
    install_page_handlers(app, deps.pages)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(auth.router(deps))
    app.include_router(pages.router(deps))
    app.include_router(scores.router(deps))
    app.include_router(segments.router(deps))
    app.include_router(live.router(deps))
    app.include_router(admin.router(deps))
    app.include_router(verbatims.router(deps))
    app.include_router(alerts.router(deps))
    app.include_router(customers.router(deps))
    app.include_router(rules.router(deps))
    app.include_router(dryrun.router(deps))
    app.include_router(api.router(deps))
    app.include_router(api.jwks_router(deps))
    app.include_router(gdpr.router(deps))
    return app


def connect(
    cfg: ConsoleSettings,
    *,
    identity: IdentityStore | None,
    console: ConsoleStore | None,
    http: httpx.AsyncClient | None,
    events: EventSink | None = None,
) -> Adapters:
    owned: PgConsoleStore | None = None
    if identity is None or console is None:
        engine = make_engine(cfg.database_url, pool_size=cfg.db_pool_size, application_name="csat-console")
        identity = identity or PgIdentityStore(engine=engine, timeout_s=cfg.db_timeout_s)
        console = owned = PgConsoleStore(engine=engine, timeout_s=cfg.db_timeout_s)
    client = http or httpx.AsyncClient(timeout=cfg.api_timeout_s, follow_redirects=False, trust_env=False)
    owned_events = None
    if events is None:
        events = owned_events = KafkaEvents(
            bootstrap=cfg.kafka_bootstrap,
            idempotence=cfg.kafka_idempotence,
            timeout_s=cfg.kafka_request_timeout_s,
        )
    return Adapters(
        identity=identity,
        console=console,
        http=client,
        owned_engine=owned,
        events=events,
        owned_events=owned_events,
    )


def build_deps(
    cfg: ConsoleSettings, adapters: Adapters, *, passwords: Passwords, clock: Callable[[], datetime]
) -> ConsoleDeps:
    """Everything the routes share, built once per app."""
    key = cfg.signing_key()
    if cfg.identity_signing_key is None:
        log.warning("signing_key_generated", detail="other services will not accept this console's tokens")
    jwks = KeyRing(keys={**cfg.key_ring().keys, **KeyRing.of([key]).keys})
    secure = cfg.secure_cookies
    cookies = CookieNames.for_security(secure=secure)
    gate = SessionGate(
        store=adapters.identity,
        policy=SessionPolicy(
            idle=timedelta(minutes=cfg.session_idle_minutes),
            lifetime=timedelta(hours=cfg.session_hours),
            touch_every=timedelta(seconds=cfg.session_touch_s),
        ),
        csrf=CsrfTokens(key=cfg.session_key),
        cookies=cookies,
        secure=secure,
        clock=clock,
    )
    issuer = AccessTokenIssuer(
        key=key,
        issuer=cfg.identity_issuer,
        audience=cfg.identity_audience,
        ttl_s=cfg.access_token_ttl_s,
        clock=clock,
    )
    tokens = AccessTokens(
        issuer=issuer, clock=clock, refresh_before=timedelta(seconds=cfg.access_token_refresh_s)
    )
    return ConsoleDeps(
        settings=cfg,
        identity=adapters.identity,
        console=adapters.console,
        passwords=passwords,
        gate=gate,
        auth=authenticator(cfg, adapters.identity, jwks),
        pages=Pages(time_zone=ZoneInfo(cfg.time_zone), csrf=gate.csrf_token, finish=gate.finish),
        api=ApiClient(http=adapters.http, urls=cfg.service_urls, tokens=tokens),
        tokens=tokens,
        jwks=jwks,
        oidc=oidc_client(cfg, adapters.http),
        live=LiveHub(max_streams=cfg.live_max_streams, max_per_session=cfg.live_max_streams_per_session),
        clock=clock,
        events=adapters.events,
    )


def authenticator(cfg: ConsoleSettings, store: IdentityStore, jwks: KeyRing) -> Authenticator:
    """Bearer credentials of the identity API: API tokens, the bootstrap key, access tokens."""
    bootstrap = cfg.bootstrap_admin_key.get_secret_value() if cfg.bootstrap_admin_key else None
    return Authenticator(
        service=SERVICE,
        tokens=store,
        access=AccessTokenVerifier(
            keys=jwks,
            issuer=cfg.identity_issuer,
            audience=cfg.identity_audience,
            leeway_s=cfg.access_token_leeway_s,
            max_ttl_s=cfg.access_token_max_ttl_s,
        ),
        bootstrap_key=bootstrap,
        cache_s=cfg.token_cache_s,
        stale_s=cfg.token_cache_stale_s,
        touch_every_s=cfg.token_touch_s,
    )


def oidc_client(cfg: ConsoleSettings, http: httpx.AsyncClient) -> OidcClient | None:
    if not cfg.oidc_issuer or not cfg.oidc_client_id:
        return None
    secret = cfg.oidc_client_secret.get_secret_value() if cfg.oidc_client_secret else None
    config = OidcClientConfig(
        issuer=cfg.oidc_issuer,
        client_id=cfg.oidc_client_id,
        client_secret=secret,
        redirect_uri=cfg.base_url + OIDC_CALLBACK,
        scopes=tuple(cfg.oidc_scopes),
        require_https=cfg.environment == "prod",
    )
    return OidcClient(config=config, http=http)


def lifespan(
    cfg: ConsoleSettings, adapters: Adapters, deps: ConsoleDeps, feed: ScoreFeed | None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def run(_app: FastAPI) -> AsyncIterator[None]:
        await deps.auth.start()
        purger = asyncio.create_task(purge_forever(deps, keep=timedelta(days=1)), name="console-purge")
        stop_feed = asyncio.Event()
        feeding = asyncio.create_task(feed.run(stop_feed), name="console-live-feed") if feed else None
        log.info("console_started", oidc=deps.oidc is not None, secure_cookies=deps.gate.secure)
        yield
        stop_feed.set()
        purger.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await purger
        if feeding is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(feeding, 10)
        await deps.auth.stop()
        await adapters.http.aclose()
        if adapters.owned_events is not None:
            await adapters.owned_events.close()
        if adapters.owned_engine is not None:
            await adapters.owned_engine.close()

    return run


def live_feed(cfg: ConsoleSettings, deps: ConsoleDeps) -> ScoreFeed | None:
    """The one consumer of score changes this process runs for its live pages (none when disabled)."""
    if not cfg.live_enabled:
        return None
    topic = cfg.topics.scores
    return ScoreFeed(hub=deps.live, make=lambda: kafka_consumer(bootstrap=cfg.kafka_bootstrap, topic=topic))


async def purge_forever(deps: ConsoleDeps, *, keep: timedelta, every_s: float = 3600) -> None:
    """Forget ended or expired sessions and used or expired links a day after they stopped working."""
    while True:
        await asyncio.sleep(every_s)
        try:
            older = deps.clock() - keep
            sessions = await deps.identity.purge_sessions(older_than=older)
            links = await deps.console.purge_links(older_than=older)
            if sessions or links:
                log.info("console_purged", sessions=sessions, links=links)
        except StoreUnavailable as exc:
            log.warning("console_purge_failed", error=str(exc))
