"""The scorer's composition root: settings -> engine, producer, stores, consumer runtime, background
jobs (score events, retention, gauges) and the FastAPI app with its routers. Wiring only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime

from fastapi import Depends, FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scorer.decoding import decode_record
from services.scorer.deps import ScorerDeps
from services.scorer.evaluator import Publish, ScoreEvaluator
from services.scorer.handlers import make_handler
from services.scorer.jobs import every, refresh_gauges
from services.scorer.repository.erasure import export_customer, purge_expired, scrub_customer
from services.scorer.repository.events import PgScoreEvents
from services.scorer.repository.maintenance import prune
from services.scorer.repository.reads import PgReads
from services.scorer.repository.registry import Registry
from services.scorer.repository.responses import PgResponseCounter
from services.scorer.repository.writes import PgRatingCounter
from services.scorer.response_handler import in_turn, make_response_handler
from services.scorer.routes import customers, drift, heatmap, scores, verbatims
from services.scorer.settings import ScorerSettings
from shared.envelope import OutgoingRecord
from shared.erasure import SqlExport, erasure_runtime, export_router
from shared.http import install_common
from shared.identity.guard import Authenticator
from shared.identity.repository import PgIdentityStore
from shared.identity.scopes import Scope
from shared.identity.wiring import service_authenticator
from shared.kafka import send_all
from shared.logs import configure_logging
from shared.retention import RetentionJob
from shared.runtime import ConsumerRuntime
from shared.verbatims import load_taxonomy_file


def utcnow() -> datetime:
    return datetime.now(UTC)


def _lifespan(
    runtime: ConsumerRuntime,
    evaluator: ScoreEvaluator,
    reads: PgReads,
    cfg: ScorerSettings,
    auth: Authenticator,
    erasure: ConsumerRuntime,
    retention: RetentionJob,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The consumer, then the jobs beside it; stopped in the reverse order."""
    stop_jobs = asyncio.Event()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        stop_jobs.clear()
        await runtime.start()
        await auth.start()
        await erasure.start()
        await retention.start()
        jobs = [
            asyncio.create_task(evaluator.run(stop_jobs), name="scorer-events"),
            asyncio.create_task(
                every(
                    cfg.prune_interval_s,
                    stop_jobs,
                    lambda: prune(runtime.engine, settings=cfg, now=utcnow()),
                    name="prune",
                    first_after_s=min(cfg.prune_interval_s, 60.0),
                ),
                name="scorer-prune",
            ),
            asyncio.create_task(
                every(
                    cfg.gauge_interval_s,
                    stop_jobs,
                    lambda: refresh_gauges(reads.session, settings=cfg, now=utcnow()),
                    name="gauges",
                ),
                name="scorer-gauges",
            ),
        ]
        try:
            yield
        finally:
            stop_jobs.set()
            await asyncio.gather(*jobs, return_exceptions=True)
            await retention.stop()
            await erasure.stop()
            await auth.stop()
            await runtime.stop()

    return lifespan


def build_runtime(cfg: ScorerSettings) -> ConsumerRuntime:
    """The consumer of ratings and survey invitations, counting both into the segment registry."""
    registry = Registry(
        max_values=cfg.max_values_per_dimension,
        max_dimensions=cfg.max_dimensions,
        combinations=cfg.combos,
    )
    return ConsumerRuntime(
        name="scorer",
        settings=cfg,
        topics=[cfg.topics.ratings, cfg.topics.surveys_invited],
        group=cfg.consumer_group,
        dlq_topic=cfg.topics.dlq_scorer,
        handler=in_turn(
            make_handler(
                store=PgRatingCounter(registry, counter_write=cfg.counter_write),
                tiers=cfg.tiers,
                clock=utcnow,
            ),
            make_response_handler(store=PgResponseCounter(registry)),
        ),
        max_batch=cfg.max_batch,
        max_partition_fetch_bytes=cfg.fetch_partition_bytes,
        decoder=decode_record,
        min_batch_interval_ms=cfg.min_batch_interval_ms,
    )


def publisher(cfg: ScorerSettings, runtime: ConsumerRuntime) -> Publish:
    """How score events reach the broker: through the consumer's producer, once it is connected."""

    async def publish(records: list[OutgoingRecord]) -> None:
        if not records:
            return
        producer = runtime.producer
        if producer is None:
            raise RuntimeError("producer not connected yet")
        await send_all(producer, records, timeout_s=cfg.kafka_request_timeout_s * 2)

    return publish


def mount_routers(app: FastAPI, deps: ScorerDeps, engine: AsyncEngine) -> None:
    """Every audience's router, then the GDPR export."""
    app.include_router(scores.router(deps))
    app.include_router(heatmap.router(deps))
    app.include_router(customers.router(deps))
    app.include_router(verbatims.router(deps))
    app.include_router(drift.router(deps))
    # GDPR export: gdpr:admin (admin role only), checked by this service's own Authenticator.
    guard = Depends(deps.auth.require(Scope.GDPR_ADMIN))
    app.include_router(export_router(SqlExport(engine, export_customer), guard))


def create_app(settings: ScorerSettings | None = None) -> FastAPI:
    """Settings -> consumer, erasure, retention, score events and auth -> the app with its routers."""
    cfg = settings or ScorerSettings()
    configure_logging(service="scorer", level=cfg.log_level, fmt=cfg.log_format)
    runtime = build_runtime(cfg)
    publish = publisher(cfg, runtime)
    erasure = erasure_runtime(
        service="scorer",
        settings=cfg,
        group=f"{cfg.consumer_group}-erasure",
        topic=cfg.topics.customers_erased,
        dlq_topic=cfg.topics.dlq_scorer,
        scrub=scrub_customer,
        engine=runtime.engine,
    )
    retention = RetentionJob(
        service="scorer", engine=runtime.engine, purge=purge_expired, settings=cfg, clock=utcnow
    )
    evaluator = ScoreEvaluator(store=PgScoreEvents(runtime.engine), settings=cfg, publish=publish)
    reads = PgReads(runtime.engine)
    auth = service_authenticator(
        service="scorer",
        identity=cfg,
        environment=cfg.environment,
        tokens=PgIdentityStore(engine=runtime.engine, timeout_s=2.0),
    )
    app = FastAPI(
        title="CSAT scorer",
        version="1.0.0",
        description="Exact rolling CSAT, NPS and CES per segment, with sample size and 95% intervals.",
        lifespan=_lifespan(runtime, evaluator, reads, cfg, auth, erasure, retention),
    )
    app.state.runtime = runtime
    app.state.evaluator = evaluator
    app.state.retention = retention
    install_common(
        app,
        service="scorer",
        internal_port=cfg.internal_port,
        documents_public=cfg.environment != "prod",
        checks={"database": runtime.check_database, "consumer": runtime.check_consumer},
    )
    deps = ScorerDeps(
        settings=cfg,
        scores=reads.session,
        customers=reads.session,
        clock=utcnow,
        taxonomy=load_taxonomy_file(cfg.themes_file),
        auth=auth,
    )
    mount_routers(app, deps, runtime.engine)
    return app
