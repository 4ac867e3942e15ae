"""Scorer composition root: the rating consumer and the score query API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import structlog
from fastapi import FastAPI, Query
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scorer import domain, repository
from services.scorer.benchmarks import benchmark_for
from services.scorer.settings import ScorerSettings
from shared.consumer import Received
from shared.envelope import OutgoingRecord
from shared.events import RatingSubmitted
from shared.http import install_common, problem
from shared.logs import configure_logging
from shared.runtime import ConsumerRuntime
from shared.scales import Metric

log = structlog.get_logger(__name__)


def make_handler(settings: ScorerSettings) -> Any:
    combos = [tuple(c) for c in settings.combinations]

    async def handle(conn: AsyncConnection, batch: Sequence[Received]) -> list[OutgoingRecord]:
        ratings = [r.envelope.data for r in batch if isinstance(r.envelope.data, RatingSubmitted)]
        new = await repository.insert_new_ratings(conn, ratings)
        increments = domain.bucket_increments(
            ((r.metric, r.scale, r.score, r.occurred_at, r.segment) for r in new), combinations=combos
        )
        await repository.add_counts(conn, increments)
        return []

    return handle


def create_app(settings: ScorerSettings | None = None) -> FastAPI:
    cfg = settings or ScorerSettings()
    configure_logging(service="scorer", level=cfg.log_level, fmt=cfg.log_format)
    runtime = ConsumerRuntime(
        name="scorer",
        settings=cfg,
        topics=[cfg.topics.ratings],
        group=cfg.consumer_group,
        dlq_topic=cfg.topics.dlq_scorer,
        handler=make_handler(cfg),
        max_batch=cfg.max_batch,
    )
    combos = {tuple(sorted(c)) for c in cfg.combinations}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        yield
        await runtime.stop()

    app = FastAPI(
        title="CSAT scorer",
        version="1.0.0",
        description="Exact rolling CSAT, NPS and CES per segment, with sample size and 95% intervals.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    install_common(
        app,
        service="scorer",
        checks={"database": runtime.check_database, "consumer": runtime.check_consumer},
    )

    async def counts_for(
        conn: AsyncConnection, metric: Metric, attrs: dict[str, str], start: datetime, end: datetime
    ) -> dict[tuple[str, int], int]:
        if len(attrs) <= 1 or tuple(sorted(attrs)) in combos:
            return await repository.load_counts(
                conn, metric=metric.value, segment_key=domain.segment_key(attrs), start=start, end=end
            )
        return await repository.load_counts_from_ratings(
            conn, metric=metric.value, attributes=attrs, start=start, end=end
        )

    def render(summary: domain.Summary) -> dict[str, Any]:
        out: dict[str, Any] = {
            "score": summary.score,
            "responses": summary.responses,
            "positive": summary.positive,
            "neutral": summary.neutral,
            "negative": summary.negative,
            "positive_pct": summary.positive_pct,
            "ci_low": summary.ci_low,
            "ci_high": summary.ci_high,
            "insufficient": summary.insufficient,
            "mean": summary.mean,
            "distribution": summary.distribution,
        }
        if summary.metric is Metric.NPS:
            out.update(promoters=summary.promoters, passives=summary.passives, detractors=summary.detractors)
        if summary.metric is Metric.CSAT:
            out["band"] = summary.band
        return out

    @app.get(
        "/v1/scores", tags=["scores"], summary="A metric over a rolling window, optionally for a segment"
    )
    async def get_scores(
        metric: Metric = Metric.CSAT,
        window: str = "30d",
        segment: Annotated[list[str] | None, Query(description="dimension:value, repeatable")] = None,
    ) -> Any:
        try:
            span = domain.parse_window(window)
            attrs = domain.parse_segment_params(segment or [])
        except ValueError as exc:
            field = "window" if isinstance(exc, domain.WindowError) else "segment"
            return problem(
                422, "Invalid query", detail=str(exc), errors=[{"field": field, "message": str(exc)}]
            )
        now = datetime.now(UTC)
        start, end = domain.aligned_window(now, span)
        async with runtime.engine.connect() as conn:
            current = await counts_for(conn, metric, attrs, start, end)
            previous = await counts_for(conn, metric, attrs, start - span, start)
        cur = domain.summarize(metric, current, min_sample=cfg.min_sample)
        prev = domain.summarize(metric, previous, min_sample=cfg.min_sample)
        delta = None
        if cur.score is not None and prev.score is not None:
            delta = round(cur.score - prev.score, 2)
        body: dict[str, Any] = {
            "metric": metric.value,
            "window": window,
            "segment": attrs or None,
            "segment_key": domain.segment_key(attrs),
            "from": start.isoformat(),
            "to": end.isoformat(),
            **render(cur),
            "previous": prev.score,
            "previous_responses": prev.responses,
            "delta": delta,
            "min_sample": cfg.min_sample,
        }
        if metric is Metric.CSAT:
            body["benchmark"] = benchmark_for(cfg.industry)
        return body

    @app.get("/v1/scores/breakdown", tags=["scores"], summary="Ranked scores for every value of a dimension")
    async def get_breakdown(
        by: str,
        metric: Metric = Metric.CSAT,
        window: str = "30d",
    ) -> Any:
        try:
            span = domain.parse_window(window)
        except domain.WindowError as exc:
            return problem(
                422, "Invalid query", detail=str(exc), errors=[{"field": "window", "message": str(exc)}]
            )
        start, end = domain.aligned_window(datetime.now(UTC), span)
        async with runtime.engine.connect() as conn:
            per_value = await repository.load_breakdown(
                conn, metric=metric.value, dimension=by, start=start, end=end
            )
        rows = []
        for value, counts in per_value.items():
            s = domain.summarize(metric, counts, min_sample=cfg.min_sample)
            rows.append({"value": value, **render(s)})
        rows.sort(key=lambda r: (r["score"] is None, -(r["score"] or 0), -r["responses"]))
        return {
            "metric": metric.value,
            "window": window,
            "by": by,
            "from": start.isoformat(),
            "to": end.isoformat(),
            "segments": rows,
        }

    return app
