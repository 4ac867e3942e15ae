"""Background jobs of the scorer: retention of the fine counter tiers, and the segment gauges.

They run beside the consumer on the same engine (``bootstrap`` starts them); SQL is in ``repository``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scorer import domain
from services.scorer import metrics as sm
from services.scorer.ports import CountsKey, KeyFilter, LabelledSpan
from services.scorer.repository.maintenance import prune_before, try_lock_prune
from services.scorer.repository.reads import load_counts
from services.scorer.repository.tables import TIER_TABLES
from services.scorer.settings import ScorerSettings
from services.scorer.windows import MINUTE, floor_to, plan_window, prune_cutoffs
from shared.scales import Metric

log = structlog.get_logger(__name__)


async def prune(
    engine: AsyncEngine, *, settings: ScorerSettings, now: datetime, chunk: int = 20_000
) -> dict[str, int]:
    """Delete minute/hour buckets past their retention, with a day of slack so no query ever misses one.

    One replica prunes at a time (an advisory lock); each chunk is its own short transaction.
    """
    deleted: dict[str, int] = {}
    for name, cutoff in prune_cutoffs(settings.tiers, now=now).items():
        table = TIER_TABLES[name]
        total = 0
        while True:
            async with engine.begin() as conn:
                if not await try_lock_prune(conn):
                    return deleted
                n = await prune_before(conn, table=table, cutoff=cutoff, limit=chunk)
            total += n
            if n < chunk:
                break
        deleted[name] = total
        if total:
            sm.PRUNED_BUCKETS.labels(name).inc(total)
            log.info("pruned_buckets", tier=name, deleted=total, before=cutoff.isoformat())
    return deleted


async def refresh_gauges(engine: AsyncEngine, *, settings: ScorerSettings, now: datetime) -> int:
    """Set ``csat_segment_score`` / ``csat_segment_responses`` for the configured segments and windows."""
    windows = [(w, domain.parse_window(w)) for w in settings.event_windows]
    keys = settings.gauge_segments
    spans: list[LabelledSpan] = []
    for label, span in windows:
        end = floor_to(now, MINUTE) + MINUTE
        plan = plan_window(end - span, end, now=now, tiers=settings.tiers)
        spans += [LabelledSpan(label, s) for s in plan.spans]
    updated = 0
    async with engine.connect() as conn:
        for metric in Metric:
            counts = await load_counts(conn, metric=metric.value, where=KeyFilter(keys=keys), spans=spans)
            for key in keys:
                for label, _ in windows:
                    summary = domain.summarize(
                        metric, counts.get(CountsKey(label, key), {}), min_sample=settings.min_sample
                    )
                    sm.SEGMENT_RESPONSES.labels(metric.value, label, key).set(summary.responses)
                    if summary.score is None:
                        with contextlib.suppress(KeyError):
                            sm.SEGMENT_SCORE.remove(metric.value, label, key)
                    else:
                        sm.SEGMENT_SCORE.labels(metric.value, label, key).set(summary.score)
                    updated += 1
    return updated


async def every(
    interval_s: float,
    stop: asyncio.Event,
    job: Callable[[], Awaitable[object]],
    *,
    name: str,
    first_after_s: float = 0.0,
) -> None:
    """Run ``job`` after ``first_after_s`` then every ``interval_s`` until ``stop``; failures are retried."""
    if first_after_s > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), first_after_s)
    while not stop.is_set():
        try:
            await job()
        except Exception as exc:  # noqa: BLE001 - a background job must survive a failed round
            log.warning("scorer_job_failed", job=name, error=type(exc).__name__, detail=str(exc)[:200])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
