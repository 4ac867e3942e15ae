"""Scorer composition root: the rating consumer, the score query API and the background jobs."""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import structlog
from fastapi import Depends, FastAPI, Path, Query
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scorer import domain, queries, repository
from services.scorer import metrics as sm
from services.scorer.decoding import RatingRow, decode_record
from services.scorer.evaluator import ScoreEvaluator
from services.scorer.maintenance import every, prune, refresh_gauges, utcnow
from services.scorer.settings import ScorerSettings
from services.scorer.trend import trend
from services.scorer.windows import MINUTE, Tier, plan_series, prune_cutoffs, rolling
from shared.auth import admin_guard
from shared.consumer import Handler, Received
from shared.envelope import OutgoingRecord
from shared.events import RatingSubmitted
from shared.http import install_common, problem
from shared.kafka import send_all
from shared.logs import configure_logging
from shared.runtime import ConsumerRuntime
from shared.scales import SCALES, Metric

log = structlog.get_logger(__name__)

SegmentParam = Annotated[list[str] | None, Query(description="dimension:value, repeatable (store:paris-1)")]

# Ratings are kept for ever: a segment read from them has no tier limits.
_RATINGS_TIER = (Tier("ratings", MINUTE, None),)


def make_handler(settings: ScorerSettings, registry: repository.Registry | None = None) -> Handler:
    """The micro-batch handler: fold segments (caps), then store and count new ratings in one statement."""
    reg = registry or repository.Registry(
        max_values=settings.max_values_per_dimension,
        max_dimensions=settings.max_dimensions,
        combinations=settings.combos,
    )
    tiers = settings.tiers

    async def handle(conn: AsyncConnection, batch: Sequence[Received]) -> list[OutgoingRecord]:
        unique: dict[str, repository.Rating] = {}
        for item in batch:
            data = item.envelope.data
            # RatingRow from the lean decoder; RatingSubmitted from the full path (lax inputs). The
            # exact type first: isinstance on a pydantic class goes through ABCMeta, per record.
            if type(data) is RatingRow or isinstance(data, RatingSubmitted):
                unique.setdefault(data.rating_id, data)
        if not unique:
            return []
        await repository.commit_without_flush_wait(conn)
        ratings = list(unique.values())
        counted = await reg.counted_all(conn, [r.segment for r in ratings])
        cutoff = prune_cutoffs(tiers, now=utcnow())
        new = await repository.apply_batch(
            conn,
            ratings,
            [c[0] for c in counted],
            minute_since=cutoff["minute"],
            hour_since=cutoff["hour"],
        )
        folds: Counter[str] = Counter()
        dropped = 0
        for r, (_keys, folded_dims, lost) in zip(ratings, counted, strict=True):
            if (folded_dims or lost) and r.rating_id in new:
                folds.update(folded_dims)
                dropped += lost
        for dim, n in folds.items():
            sm.VALUES_FOLDED.labels(dim).inc(n)
        if dropped:
            sm.DIMENSIONS_DROPPED.inc(dropped)
        return []

    return handle


def _invalid(field: str, message: str) -> JSONResponse:
    return problem(
        422,
        "Invalid query",
        detail=f"{field}: {message}",
        type_="https://csat.dev/problems/validation",
        errors=[{"field": field, "message": message}],
    )


def _encode_cursor(at: datetime, rating_id: str) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{rating_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _, rating_id = raw.partition("|")
        parsed = datetime.fromisoformat(at)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError("cursor is not one this API gave") from exc
    if parsed.tzinfo is None or not rating_id:
        raise ValueError("cursor is not one this API gave")
    return parsed, rating_id


def _normalized_pct(metric: str, scale: str, score: int) -> float | None:
    found = SCALES.get((Metric(metric), scale))
    return None if found is None else round(100 * found.normalized(score), 2)


def _default_step(span: timedelta) -> timedelta:
    if span <= timedelta(hours=2):
        return MINUTE
    if span <= timedelta(days=8):
        return timedelta(hours=1)
    return timedelta(days=1)


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
        decoder=decode_record,
    )
    year = timedelta(days=cfg.year_ago_days)

    async def publish(records: list[OutgoingRecord]) -> None:
        if not records:
            return
        producer = runtime.producer
        if producer is None:
            raise RuntimeError("producer not connected yet")
        await send_all(producer, records, timeout_s=cfg.kafka_request_timeout_s * 2)

    evaluator = ScoreEvaluator(engine=runtime.engine, settings=cfg, publish=publish)
    stop_jobs = asyncio.Event()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        stop_jobs.clear()
        await runtime.start()
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
                    lambda: refresh_gauges(runtime.engine, settings=cfg, now=utcnow()),
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
            await runtime.stop()

    app = FastAPI(
        title="CSAT scorer",
        version="1.0.0",
        description="Exact rolling CSAT, NPS and CES per segment, with sample size and 95% intervals.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.evaluator = evaluator
    install_common(
        app,
        service="scorer",
        checks={"database": runtime.check_database, "consumer": runtime.check_consumer},
    )

    @app.get(
        "/v1/scores", tags=["scores"], summary="A metric over a rolling window, optionally for a segment"
    )
    async def get_scores(
        metric: Metric = Metric.CSAT, window: str = "30d", segment: SegmentParam = None
    ) -> Any:
        try:
            span = domain.parse_window(window, max_window=cfg.max_window)
        except domain.WindowError as exc:
            return _invalid("window", str(exc))
        try:
            attrs = domain.parse_segment_params(segment or [])
        except ValueError as exc:
            return _invalid("segment", str(exc))
        comp = rolling(span, now=utcnow(), tiers=cfg.tiers, year=year)
        plans = queries.comparison_plans(comp)
        async with runtime.engine.connect() as conn:
            target = await queries.resolve_target(conn, attributes=attrs, combos=cfg.combos)
            counts = await queries.counts_for(conn, metric=metric, target=target, plans=plans)
        return queries.score_body(
            metric=metric,
            window=window,
            target=target,
            plans=plans,
            counts=counts,
            min_sample=cfg.min_sample,
            alpha=cfg.alert_alpha,
            industry=cfg.industry,
        )

    @app.get(
        "/v1/scores/breakdown",
        tags=["scores"],
        summary="Every value of a dimension (or configured combination), ranked, with intervals",
    )
    async def get_breakdown(
        by: Annotated[
            str, Query(description="a dimension (store) or a configured combination (channel,store)")
        ],
        metric: Metric = Metric.CSAT,
        window: str = "30d",
        sort: Literal["score", "ci_low", "ci_high", "responses", "delta"] = "score",
        order: Literal["desc", "asc"] = "desc",
        min_responses: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Any:
        try:
            span = domain.parse_window(window, max_window=cfg.max_window)
        except domain.WindowError as exc:
            return _invalid("window", str(exc))
        dims = tuple(sorted({d.strip() for d in by.split(",") if d.strip()}))
        if not dims or (len(dims) > 1 and dims not in cfg.combos):
            combos = ", ".join(",".join(c) for c in cfg.combos) or "none"
            return _invalid("by", f"by must be one dimension or a configured combination ({combos})")
        comp = rolling(span, now=utcnow(), tiers=cfg.tiers, year=year)
        spans = queries.plan_spans({queries.CURRENT: comp.current, queries.PREVIOUS: comp.previous})
        async with runtime.engine.connect() as conn:
            loaded = await repository.load_counts(
                conn, metric=metric.value, where=repository.KeyFilter(dimensions=dims), spans=spans
            )
        by_key: dict[str, dict[str, repository.Counts]] = {}
        for (label, key), counts in loaded.items():
            by_key.setdefault(key, {})[label] = counts
        rows: list[dict[str, Any]] = []
        for key, per_label in by_key.items():
            current = per_label.get(queries.CURRENT, {})
            previous = per_label.get(queries.PREVIOUS, {})
            cur = domain.summarize(metric, current, min_sample=cfg.min_sample)
            if cur.responses < max(min_responses, 1):
                continue
            prev = domain.summarize(metric, previous, min_sample=cfg.min_sample)
            attrs = domain.parse_segment_key(key)
            rows.append(
                {
                    "value": attrs[dims[0]] if len(dims) == 1 else ",".join(attrs[d] for d in dims),
                    "segment": attrs,
                    "segment_key": key,
                    "folded": domain.OTHER in attrs.values(),
                    **queries.render(cur),
                    "previous": prev.score,
                    "previous_responses": prev.responses,
                    **queries.change(
                        metric,
                        current,
                        previous,
                        cur,
                        prev,
                        min_responses=cfg.min_sample,
                        alpha=cfg.alert_alpha,
                    ),
                }
            )
        reverse = order == "desc"
        present = [r for r in rows if r[sort] is not None]
        missing = [r for r in rows if r[sort] is None]
        present.sort(key=lambda r: (r[sort], r["responses"] if reverse else -r["responses"]), reverse=reverse)
        missing.sort(key=lambda r: -r["responses"])
        ranked = present + missing
        for i, row in enumerate(ranked, start=1):
            row["rank"] = i
        return {
            "metric": metric.value,
            "window": window,
            "by": ",".join(dims),
            "from": comp.current.start.isoformat(),
            "to": comp.current.end.isoformat(),
            "previous_from": comp.previous.start.isoformat(),
            "previous_to": comp.previous.end.isoformat(),
            "sort": sort,
            "order": order,
            "total": len(ranked),
            "segments": ranked[:limit],
        }

    @app.get("/v1/scores/series", tags=["scores"], summary="A metric per time step, for charts")
    async def get_series(
        metric: Metric = Metric.CSAT,
        window: str = "30d",
        step: Annotated[
            str | None, Query(description="bucket per point: 1m, 1h, 1d, 1w... (default by window)")
        ] = None,
        rolling_window: Annotated[
            str | None, Query(alias="rolling", description="each point over this trailing window (e.g. 7d)")
        ] = None,
        segment: SegmentParam = None,
    ) -> Any:
        try:
            span = domain.parse_window(window, max_window=cfg.max_window)
        except domain.WindowError as exc:
            return _invalid("window", str(exc))
        try:
            step_td = domain.parse_window(step) if step else _default_step(span)
        except domain.WindowError as exc:
            return _invalid("step", str(exc))
        lead = timedelta(0)
        if rolling_window is not None:
            try:
                roll = domain.parse_window(rolling_window, max_window=cfg.max_window)
            except domain.WindowError as exc:
                return _invalid("rolling", str(exc))
            if roll < step_td or roll % step_td or roll // step_td > 400:
                return _invalid("rolling", "rolling must be 1 to 400 whole steps")
            lead = roll - step_td
        try:
            attrs = domain.parse_segment_params(segment or [])
        except ValueError as exc:
            return _invalid("segment", str(exc))
        now = utcnow()
        async with runtime.engine.connect() as conn:
            target = await queries.resolve_target(conn, attributes=attrs, combos=cfg.combos)
            try:
                plan = plan_series(
                    span, step_td, now=now, tiers=cfg.tiers if target.counted else _RATINGS_TIER, lead=lead
                )
            except ValueError as exc:
                return _invalid("step", str(exc))
            data = await repository.load_series(
                conn,
                metric=metric.value,
                key=target.key if target.counted else None,
                attributes=attrs,
                tier=plan.tier,
                start=plan.start - lead,
                end=plan.end,
                step=plan.step,
            )
        lookback = lead // plan.step + 1
        points = []
        for i in range(plan.points):
            t = plan.start + i * plan.step
            counts: dict[tuple[str, int], int] = {}
            for k in range(lookback):
                for key, n in data.get(t - k * plan.step, {}).items():
                    counts[key] = counts.get(key, 0) + n
            s = domain.summarize(metric, counts, min_sample=cfg.min_sample)
            points.append(
                {
                    "from": (t - lead).isoformat(),
                    "to": (t + plan.step).isoformat(),
                    "score": s.score,
                    "responses": s.responses,
                    "positive_pct": s.positive_pct,
                    "ci_low": s.ci_low,
                    "ci_high": s.ci_high,
                    "insufficient": s.insufficient,
                }
            )
        return {
            "metric": metric.value,
            "window": window,
            "step": step or f"{int(plan.step.total_seconds() // 60)}m",
            "rolling": rolling_window,
            "segment": attrs or None,
            "segment_key": target.key,
            "source": "counters" if target.counted else "ratings",
            "tier": plan.tier,
            "from": plan.start.isoformat(),
            "to": plan.end.isoformat(),
            "points": points,
        }

    guard = admin_guard(cfg.admin_api_key)

    @app.get(
        "/v1/customers/{customer_id}/history",
        tags=["customers"],
        summary="A customer's ratings, newest first, with their trend and lowest/highest (admin key)",
        dependencies=[Depends(guard)],
    )
    async def customer_history(
        customer_id: Annotated[str, Path(min_length=1, max_length=200)],
        metric: Metric | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: str | None = None,
        trend_ratings: Annotated[
            int, Query(ge=2, le=500, description="ratings the trend is computed on")
        ] = 50,
    ) -> Any:
        try:
            before = _decode_cursor(cursor) if cursor else None
        except ValueError as exc:
            return _invalid("cursor", str(exc))
        m = metric.value if metric else None
        async with runtime.engine.connect() as conn:
            page = await repository.customer_ratings(
                conn, customer_id=customer_id, metric=m, before=before, limit=limit + 1
            )
            recent = await repository.customer_recent(
                conn, customer_id=customer_id, metric=m, limit=trend_ratings
            )
            groups = await repository.customer_score_groups(conn, customer_id=customer_id, metric=m)
        more = len(page) > limit
        page = page[:limit]
        points = [
            (r.occurred_at, v)
            for r in reversed(recent)
            if (v := _normalized_pct(r.metric, r.scale, r.score)) is not None
        ]
        tr = trend(points)
        ranked = [
            (v, g.latest_at, g)
            for g in groups
            if (v := _normalized_pct(g.metric, g.scale, g.score)) is not None
        ]

        def extreme(choice: tuple[float, datetime, repository.ScoreGroup] | None) -> dict[str, Any] | None:
            if choice is None:
                return None
            value, _, g = choice
            return {
                "metric": g.metric,
                "scale": g.scale,
                "score": g.score,
                "normalized": value,
                "times": g.n,
                "latest_rating_id": g.latest_rating_id,
                "latest_at": g.latest_at.isoformat(),
            }

        lowest = min(ranked, key=lambda x: (x[0], -x[1].timestamp()), default=None)
        highest = max(ranked, key=lambda x: (x[0], x[1].timestamp()), default=None)
        return {
            "customer_id": customer_id,
            "metric": m,
            "total": sum(g.n for g in groups),
            "ratings": [
                {
                    "rating_id": r.rating_id,
                    "metric": r.metric,
                    "scale": r.scale,
                    "score": r.score,
                    "normalized": _normalized_pct(r.metric, r.scale, r.score),
                    "sentiment": r.sentiment,
                    "touchpoint": r.touchpoint,
                    "comment": r.comment,
                    "segment": r.segment,
                    "occurred_at": r.occurred_at.isoformat(),
                }
                for r in page
            ],
            "next_cursor": _encode_cursor(page[-1].occurred_at, page[-1].rating_id)
            if more and page
            else None,
            "trend": {
                "ratings": tr.ratings,
                "mean": tr.mean,
                "slope_per_30d": tr.slope_per_30d,
                "recent_mean": tr.recent_mean,
                "previous_mean": tr.previous_mean,
                "change": tr.change,
                "direction": tr.direction,
            },
            "lowest": extreme(lowest),
            "highest": extreme(highest),
        }

    return app
