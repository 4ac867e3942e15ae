"""The collector's composition root: settings -> broker, database, intake, limits -> the app and routes.

Only wiring: every decision lives in the routes, the intake use case and the pure modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from fastapi import Depends, FastAPI

from services.collector import metrics
from services.collector.access import KeyResolver, OriginSet, RateLimits, SourceCorsMiddleware
from services.collector.deps import CollectorDeps
from services.collector.intake import Intake, InteractionIntake
from services.collector.links import LinkSigner
from services.collector.ports import CollectorStore, IdempotencyRecords, Publisher, StoreUnavailable
from services.collector.problems import add_problem_schema, install_handlers
from services.collector.publisher import KafkaPublisher
from services.collector.ratelimit import KeyedLimiter
from services.collector.repository import PgStore, export_customer, purge_expired, scrub_customer
from services.collector.routes import admin, channels, interactions, ratings, usage
from services.collector.settings import CollectorSettings
from services.collector.usage_intake import UsageIntake
from shared.db import make_engine
from shared.erasure import SqlExport, erasure_runtime, export_router
from shared.http import ReadinessCheck, install_common
from shared.identity.ports import AuditLog, TokenLookup
from shared.identity.repository import PgIdentityStore
from shared.identity.scopes import Scope
from shared.identity.wiring import service_authenticator
from shared.limits import BodySizeLimitMiddleware
from shared.logs import configure_logging
from shared.retention import RetentionJob

log = structlog.get_logger(__name__)

DESCRIPTION = (
    "Ingestion API. Ratings are validated, normalised (score on its scale, normalised 0..1 "
    "score, sentiment) and made durable in the broker (acks=all) before the 202 answer.\n\n"
    "Posting needs a source key (`Authorization: Bearer pk_...` from pages and apps, `sk_...` from "
    "servers, or `X-API-Key`) or an API token with ratings:write, outside dev; a source key can post "
    "ratings (a secret key also interactions, `/v1/interactions`) and nothing else. What a "
    "publishable key posts about a person (email, phone, consent, "
    "account) is kept as a claim and never acted on. Admin endpoints (sources and their keys, "
    "email links, SMS "
    "surveys) are served only on the internal listener (`CSAT_INTERNAL_PORT`) and need an API "
    "token or a signed-in person with the matching scope (`sources:admin`, `surveys:admin`). "
    "A `rating_id` (or the `Idempotency-Key` header) makes a retry safe: it gets the first "
    "answer back; the same id with a different body is refused with 409. Every error is an "
    "RFC 9457 `application/problem+json` naming the `field` at fault."
)


@dataclass(frozen=True, slots=True)
class Adapters:
    """The broker and database adapters, and which of them this app started (and so must stop)."""

    publisher: Publisher
    store: CollectorStore
    owned_publisher: KafkaPublisher | None
    owned_store: PgStore | None
    #: API tokens (``identity.api_tokens``); None: the collector takes source keys only.
    tokens: TokenLookup | None = None
    #: The audit log of admin changes (``identity.audit_log``), with the collector's own database.
    audit: AuditLog | None = None


def create_app(
    settings: CollectorSettings | None = None,
    *,
    publisher: Publisher | None = None,
    store: CollectorStore | None = None,
    tokens: TokenLookup | None = None,
) -> FastAPI:
    """Wire settings, publisher, stores and routes; unit tests pass fakes for the three adapters."""
    cfg = settings or CollectorSettings()
    configure_logging(service="collector", level=cfg.log_level, fmt=cfg.log_format)
    adapters = connect(cfg, publisher=publisher, store=store, tokens=tokens)
    deps = build_deps(cfg, adapters)
    app = FastAPI(
        title="CSAT collector",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan(cfg, adapters, deps),
        # FastAPI's own OpenTelemetry hooks are unused here (tracing is W3C traceparent on the records,
        # docs/operations.md), yet asked on every request whether a provider is configured.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.add_middleware(
        SourceCorsMiddleware,
        paths=ratings.RATING_PATHS | {channels.WIDGET_INVITATION_PATH},
        prefixes=(channels.EMAIL_LINK_PREFIX,),
        origins=deps.origins,
    )
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=cfg.max_body_bytes,
        on_reject=lambda _scope: metrics.reject("body_too_large", None),
    )
    # Ratings keep flowing while PostgreSQL is away (idempotency unchecked, see settings): the
    # database then only degrades readiness instead of taking the collector out of rotation.
    db_check: dict[str, ReadinessCheck] = {"database": adapters.store.check}
    degrade = cfg.idempotency_when_db_down == "accept"
    install_common(
        app,
        service="collector",
        internal_port=cfg.internal_port,
        documents_public=cfg.environment != "prod",
        admin_prefixes=admin.INTERNAL_PREFIXES,
        checks={"broker": adapters.publisher.check, **({} if degrade else db_check)},
        soft_checks=db_check if degrade else None,
    )
    install_handlers(app, rating_paths=ratings.RATING_PATHS)
    # Rating routes go straight onto the app's router: FastAPI dispatches an included router through
    # one more matching layer, about 90 more Python calls per rating (+4 %, measured with cProfile).
    # They go first, too: the router tries its routes in order, and seven (documents, probes, metrics)
    # came before them; no other route matches their paths.
    # Interactions likewise (their fast path patches the routes the app dispatches with).
    common = list(app.router.routes)
    ratings.add_routes(app.router, deps)
    interactions.add_routes(app.router, deps)
    app.router.routes[:] = app.router.routes[len(common) :] + common
    app.include_router(admin.router(deps))
    app.include_router(channels.router(deps))
    if adapters.owned_store is not None:  # GDPR export: what this collector's database holds
        guard = Depends(deps.auth.require(Scope.GDPR_ADMIN))
        app.include_router(export_router(SqlExport(adapters.owned_store.engine, export_customer), guard))
    app.include_router(usage.router(deps))
    add_problem_schema(app)
    return app


def connect(
    cfg: CollectorSettings,
    *,
    publisher: Publisher | None,
    store: CollectorStore | None,
    tokens: TokenLookup | None = None,
) -> Adapters:
    """The Kafka producer and the PostgreSQL stores, unless the caller brought its own."""
    owned_publisher: KafkaPublisher | None = None
    if publisher is None:
        publisher = owned_publisher = KafkaPublisher(
            bootstrap=cfg.kafka_bootstrap,
            idempotence=cfg.kafka_idempotence,
            timeout_s=cfg.publish_timeout_s,
            request_timeout_s=cfg.kafka_request_timeout_s,
            linger_ms=cfg.publish_linger_ms,
        )
    owned_store: PgStore | None = None
    audit: AuditLog | None = None
    if store is None:
        engine = make_engine(cfg.database_url, pool_size=cfg.db_pool_size, application_name="csat-collector")
        store = owned_store = PgStore(
            engine=engine,
            timeout_s=cfg.db_timeout_s,
            reset_sessions=cfg.db_reset_sessions,
            custom_plans=cfg.db_custom_plans,
        )
        tokens = tokens or PgIdentityStore(engine=engine, timeout_s=cfg.db_timeout_s)
        audit = PgIdentityStore(engine=engine, timeout_s=10.0)  # after the change: wait rather than lose it
    return Adapters(
        publisher=publisher,
        store=store,
        owned_publisher=owned_publisher,
        owned_store=owned_store,
        tokens=tokens,
        audit=audit,
    )


def build_deps(cfg: CollectorSettings, adapters: Adapters) -> CollectorDeps:
    """Everything the routes share, built once per app."""
    store = adapters.store
    keys = KeyResolver(store=store, ttl_s=cfg.key_cache_s, stale_s=cfg.key_cache_stale_s)
    return CollectorDeps(
        settings=cfg,
        intake=Intake(
            publisher=adapters.publisher,
            records=store,
            topic=cfg.topics.ratings,
            wait_s=cfg.idempotency_wait_s,
            lease_s=cfg.publish_timeout_s * 2 + 5,
            degrade=cfg.idempotency_when_db_down == "accept",
            max_future_skew=timedelta(seconds=cfg.max_future_skew_s),
            group_claims=cfg.claim_group,
            claim_inflight=cfg.claim_group_inflight,
            confirm_delay_s=cfg.confirm_delay_ms / 1000,
            confirm_with_claim=cfg.confirm_with_claim,
            fast_encode=cfg.fast_encode,
            lean=cfg.lean_normalize,
        ),
        interactions=InteractionIntake(
            publisher=adapters.publisher,
            records=store,
            topic=cfg.topics.interactions,
            wait_s=cfg.idempotency_wait_s,
            lease_s=cfg.publish_timeout_s * 2 + 5,
            degrade=cfg.idempotency_when_db_down == "accept",
            max_future_skew=timedelta(seconds=cfg.max_future_skew_s),
            group_claims=cfg.claim_group,
            claim_inflight=cfg.claim_group_inflight,
            confirm_delay_s=cfg.confirm_delay_ms / 1000,
            confirm_with_claim=cfg.confirm_with_claim,
            fast_encode=cfg.fast_encode,
            lean=cfg.lean_normalize,
        ),
        sources=store,
        surveys=store,
        keys=keys,
        origins=OriginSet(store=store, ttl_s=cfg.key_cache_s),
        limits=RateLimits(
            ip=KeyedLimiter(
                rate_per_s=cfg.ip_rate, burst=cfg.rate_ip_burst, max_clients=cfg.rate_max_clients
            ),
            key=KeyedLimiter(
                rate_per_s=cfg.key_rate, burst=cfg.rate_key_burst, max_clients=cfg.rate_max_clients
            ),
            proxies=cfg.proxy_networks,
        ),
        signer=LinkSigner(
            secret=cfg.signing_secret.get_secret_value(),
            previous=[s.get_secret_value() for s in cfg.signing_secret_previous],
            accept_sha1=cfg.email_link_accept_sha1,
        ),
        auth=service_authenticator(
            service="collector",
            identity=cfg,
            environment=cfg.environment,
            tokens=adapters.tokens,
            sources=keys,
        ),
        phone_hasher=cfg.address_hasher_for(cfg.environment),
        usage=UsageIntake(
            publisher=adapters.publisher,
            records=store,
            topic=cfg.topics.usage,
            lease_s=cfg.publish_timeout_s * 2 + 5,
            degrade=cfg.idempotency_when_db_down == "accept",
        ),
        audit=adapters.audit,
    )


def lifespan(
    cfg: CollectorSettings, adapters: Adapters, deps: CollectorDeps
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Start the producer, the idempotency purge and the tokens' last-used flush; at shutdown land
    pending confirmations, close."""

    # GDPR erasure: only a collector with its own database holds anything to erase.
    erasure = (
        erasure_runtime(
            service="collector",
            settings=cfg,
            group="csat-collector-erasure",
            topic=cfg.topics.customers_erased,
            dlq_topic=cfg.topics.dlq_collector,
            scrub=scrub_customer,
            engine=adapters.owned_store.engine,
        )
        if adapters.owned_store is not None
        else None
    )

    retention = (
        RetentionJob(
            service="collector",
            engine=adapters.owned_store.engine,
            purge=purge_expired,
            settings=cfg,
            clock=lambda: datetime.now(UTC),
        )
        if adapters.owned_store is not None
        else None
    )

    @asynccontextmanager
    async def run(_app: FastAPI) -> AsyncIterator[None]:
        if adapters.owned_publisher is not None:
            await adapters.owned_publisher.start()
        if erasure is not None:
            await erasure.start()
        if retention is not None:
            await retention.start()
        purger = asyncio.create_task(
            purge_forever(adapters.store, ttl=timedelta(hours=cfg.idempotency_ttl_h)),
            name="idempotency-purge",
        )
        await deps.auth.start()
        if cfg.gc_freeze:
            # Everything built at startup (modules, the app, pydantic schemas) lives as long as the
            # process; out of the collector's sight, a full collection no longer walks it on the
            # request path (pauses of tens of milliseconds, the p99 in docs/benchmarks.md).
            gc.collect()
            gc.freeze()
        log.info("collector_started", topic=cfg.topics.ratings, keys_required=cfg.keys_required)
        yield
        purger.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await purger
        await deps.auth.stop()
        if retention is not None:
            await retention.stop()
        if erasure is not None:
            await erasure.stop()
        await deps.intake.close()
        await deps.interactions.close()
        if adapters.owned_publisher is not None:
            await adapters.owned_publisher.stop()
        if adapters.owned_store is not None:
            await adapters.owned_store.close()

    return run


async def purge_forever(records: IdempotencyRecords, *, ttl: timedelta, every_s: float = 600) -> None:
    """Forget rating ids older than the idempotency window, a bounded chunk at a time."""
    while True:
        await asyncio.sleep(every_s)
        try:
            removed = await records.purge(older_than=datetime.now(UTC) - ttl)
            if removed:
                log.info("idempotency_purged", rows=removed)
        except StoreUnavailable as exc:
            log.warning("idempotency_purge_failed", error=str(exc))
