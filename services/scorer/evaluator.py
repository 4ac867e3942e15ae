"""Score-changed and segment-alert events, published after the counters changed (at-least-once).

Each micro-batch marks the segments it touched in ``scorer.dirty_segments`` (same transaction as
the counters). Every ``score_event_interval_s`` this evaluator reads the dirty segments, computes
each configured window against its previous window, decides with :mod:`signals` what to publish,
waits for the broker's acknowledgement, and only then saves the new state and clears the dirty
marks whose version did not move. A crash before that commit republishes the same decisions with
the same event ids (the state they derive from was not saved), so subscribers dedupe on the id.
The interval is the throttle: at most one event per (segment, window) per interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import groupby
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scorer import domain, repository
from services.scorer import metrics as sm
from services.scorer.settings import ScorerSettings
from services.scorer.signals import SegmentState, decide, drop_test, threshold_for
from services.scorer.windows import Span, rolling
from shared import events as ev
from shared.envelope import OutgoingRecord, encode
from shared.scales import Metric

log = structlog.get_logger(__name__)

Publish = Callable[[list[OutgoingRecord]], Awaitable[None]]
Clock = Callable[[], datetime]


@dataclass(slots=True)
class EvaluationResult:
    segments: int = 0
    score_events: int = 0
    alerts: int = 0


class ScoreEvaluator:
    """Turns counter changes into events; safe to run in several replicas (same ids, dedupe downstream)."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        settings: ScorerSettings,
        publish: Publish,
        clock: Clock = lambda: datetime.now(UTC),
    ) -> None:
        self._engine = engine
        self._s = settings
        self._publish = publish
        self._clock = clock
        self._windows = [(w, domain.parse_window(w)) for w in settings.event_windows]
        self._year = timedelta(days=settings.year_ago_days)

    async def run(self, stop: asyncio.Event) -> None:
        """Evaluate every interval until ``stop``; errors are logged and retried next interval."""
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception as exc:  # noqa: BLE001 - a failed round is retried; the dirty marks remain
                log.warning("score_evaluation_failed", error=type(exc).__name__, detail=str(exc)[:200])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._s.score_event_interval_s)

    async def run_once(self) -> EvaluationResult:
        result = EvaluationResult()
        after: tuple[str, str] | None = None
        while True:
            async with self._engine.connect() as conn:
                dirty = await repository.dirty_segments(conn, limit=self._s.score_event_batch, after=after)
            if not dirty:
                return result
            after = (dirty[-1].metric, dirty[-1].segment_key)
            await self._evaluate(dirty, result)

    async def _evaluate(self, dirty: Sequence[repository.DirtySegment], result: EvaluationResult) -> None:
        now = self._clock()
        records: list[OutgoingRecord] = []
        new_states: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
        for metric_name, group in groupby(dirty, key=lambda d: d.metric):
            metric = Metric(metric_name)
            keys = [d.segment_key for d in group]
            spans: list[tuple[str, Span]] = []
            for label, span_length in self._windows:
                comp = rolling(span_length, now=now, tiers=self._s.tiers, year=self._year)
                spans += [(f"{label}|cur", s) for s in comp.current.spans]
                spans += [(f"{label}|prev", s) for s in comp.previous.spans]
            async with self._engine.connect() as conn:
                counts = await repository.load_counts(
                    conn, metric=metric.value, where=repository.KeyFilter(keys=keys), spans=spans
                )
                states = await repository.load_states(conn, metric=metric.value, keys=keys)
            changed: dict[tuple[str, str], dict[str, Any]] = {}
            for key in keys:
                for label, _ in self._windows:
                    out = self._decide(metric, key, label, counts, states.get((key, label)), now)
                    records.extend(out[1])
                    result.score_events += out[2]
                    result.alerts += out[3]
                    if out[0] is not None:
                        changed[(key, label)] = out[0]
            new_states[metric.value] = changed
        await self._publish(records)
        async with self._engine.begin() as conn:
            for metric_name, states_for_metric in new_states.items():
                await repository.save_states(conn, metric=metric_name, states=states_for_metric)
            await repository.clear_dirty(conn, dirty)
        result.segments += len(dirty)
        if records:
            log.info("score_events_published", events=len(records), segments=len(dirty))

    def _decide(
        self,
        metric: Metric,
        key: str,
        window: str,
        counts: dict[tuple[str, str], repository.Counts],
        stored: dict[str, Any] | None,
        now: datetime,
    ) -> tuple[dict[str, Any] | None, list[OutgoingRecord], int, int]:
        current = counts.get((f"{window}|cur", key), {})
        previous = counts.get((f"{window}|prev", key), {})
        cur = domain.summarize(metric, current, min_sample=self._s.min_sample)
        prev = domain.summarize(metric, previous, min_sample=self._s.min_sample)
        state = SegmentState(**stored) if stored is not None else SegmentState()
        threshold = threshold_for(self._s.alert_thresholds, metric, key)
        decision = decide(
            metric=metric,
            window=window,
            segment=key,
            current=cur,
            previous=prev,
            test=drop_test(metric, current, previous, cur, prev),
            state=state,
            threshold=threshold,
            alpha=self._s.alert_alpha,
            min_responses=self._s.drop_min_responses,
            min_delta=self._s.score_event_min_delta,
        )
        records: list[OutgoingRecord] = []
        attrs = domain.parse_segment_key(key)
        delta = None if cur.score is None or prev.score is None else round(cur.score - prev.score, 2)
        topic = self._s.topics.scores
        if decision.changed and decision.event_id is not None:
            records.append(
                encode(
                    topic=topic,
                    event_type=ev.SCORE_CHANGED,
                    source="/scorer",
                    event_id=decision.event_id,
                    key=key,
                    subject=f"{metric.value}/{window}",
                    time=now,
                    data=ev.ScoreChanged(
                        metric=metric,
                        window=window,
                        segment=key,
                        segment_attributes=attrs,
                        score=cur.score,
                        responses=cur.responses,
                        previous=prev.score,
                        delta=delta,
                        ci_low=cur.ci_low,
                        ci_high=cur.ci_high,
                        insufficient=cur.insufficient,
                        computed_at=now,
                    ),
                )
            )
            sm.SCORE_EVENTS.labels("score_changed").inc()
        for alert in decision.alerts:
            records.append(
                encode(
                    topic=topic,
                    event_type=ev.SEGMENT_ALERT,
                    source="/scorer",
                    event_id=alert.alert_id,
                    key=key,
                    subject=f"{metric.value}/{window}",
                    time=now,
                    data=ev.SegmentAlert(
                        alert_id=alert.alert_id,
                        metric=metric,
                        window=window,
                        segment=key,
                        segment_attributes=attrs,
                        reason=alert.reason,
                        score=cur.score,
                        previous=prev.score,
                        threshold=alert.threshold,
                        p_value=None if alert.p_value is None else round(alert.p_value, 6),
                        responses=cur.responses,
                        computed_at=now,
                    ),
                )
            )
            sm.SCORE_EVENTS.labels("segment_alert").inc()
            log.info("segment_alert", metric=metric.value, window=window, segment=key, reason=alert.reason)
        new_state = dataclasses.asdict(decision.state) if decision.state != state else None
        return new_state, records, int(decision.changed), len(decision.alerts)
