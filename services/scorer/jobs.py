"""The scorer's periodic jobs: the segment gauges, and the loop that runs a job every interval.

``bootstrap`` starts them beside the consumer: the gauges, and retention (``repository.maintenance``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime

import structlog

from services.scorer import domain
from services.scorer import metrics as sm
from services.scorer.ports import CountsKey, KeyFilter, LabelledSpan, ScoreSessions
from services.scorer.settings import ScorerSettings
from services.scorer.windows import MINUTE, floor_to, plan_window
from shared.scales import Metric

log = structlog.get_logger(__name__)


async def refresh_gauges(scores: ScoreSessions, *, settings: ScorerSettings, now: datetime) -> int:
    """Set ``csat_segment_score`` / ``csat_segment_responses`` for the configured segments and windows."""
    windows = [(w, domain.parse_window(w)) for w in settings.event_windows]
    keys = settings.gauge_segments
    spans: list[LabelledSpan] = []
    for label, span in windows:
        end = floor_to(now, MINUTE) + MINUTE
        plan = plan_window(end - span, end, now=now, tiers=settings.tiers)
        spans += [LabelledSpan(label, s) for s in plan.spans]
    updated = 0
    async with scores() as reader:
        for metric in Metric:
            counts = await reader.load_counts(metric=metric.value, where=KeyFilter(keys=keys), spans=spans)
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
