"""Score-changed and segment-alert events, published after the counters changed (at-least-once).

Each round also runs the drift step (``drift_step.DriftStep``), which works only once a UTC day has
closed: ``drift_drop`` alerts come from there, ``below_threshold`` ones from here.

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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import groupby

import structlog

from services.scorer import domain
from services.scorer import metrics as sm
from services.scorer.drift_step import DriftResult, DriftStep
from services.scorer.ports import (
    Counts,
    CountsKey,
    DirtySegment,
    EvaluatorStore,
    LabelledSpan,
    StateKey,
)
from services.scorer.settings import ScorerSettings
from services.scorer.signals import Alert, SegmentState, decide, threshold_for
from services.scorer.windows import rolling
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
    drift: DriftResult = field(default_factory=DriftResult)


@dataclass(frozen=True, slots=True)
class _Outcome:
    """One (segment, window) decided: its new state if it changed, and the records to publish."""

    state: SegmentState | None
    records: list[OutgoingRecord] = field(default_factory=list)
    score_events: int = 0
    alerts: int = 0


class ScoreEvaluator:
    """Turns counter changes into events; safe to run in several replicas (same ids, dedupe downstream)."""

    def __init__(
        self,
        *,
        store: EvaluatorStore,
        settings: ScorerSettings,
        publish: Publish,
        clock: Clock = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._drift = DriftStep(store=store, settings=settings, publish=publish)
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
        """Score events of the dirty segments, then the drift step (which works once a day closed)."""
        result = EvaluationResult()
        after: DirtySegment | None = None
        while True:
            dirty = await self._store.dirty_segments(limit=self._s.score_event_batch, after=after)
            if not dirty:
                break
            after = dirty[-1]
            await self._evaluate(dirty, result)
        if self._s.drift_enabled:
            result.drift = await self._drift.run_once(self._clock())
        return result

    async def _evaluate(self, dirty: Sequence[DirtySegment], result: EvaluationResult) -> None:
        now = self._clock()
        records: list[OutgoingRecord] = []
        new_states: dict[str, dict[StateKey, SegmentState]] = {}
        for metric_name, group in groupby(dirty, key=lambda d: d.metric):
            metric = Metric(metric_name)
            keys = [d.segment_key for d in group]
            spans: list[LabelledSpan] = []
            for label, span_length in self._windows:
                comp = rolling(span_length, now=now, tiers=self._s.tiers, year=self._year)
                spans += [LabelledSpan(f"{label}|cur", s) for s in comp.current.spans]
                spans += [LabelledSpan(f"{label}|prev", s) for s in comp.previous.spans]
            facts = await self._store.load_segments(metric=metric.value, keys=keys, spans=spans)
            changed: dict[StateKey, SegmentState] = {}
            for key in keys:
                for label, _ in self._windows:
                    state_key = StateKey(key, label)
                    out = self._decide(metric, key, label, facts.counts, facts.states.get(state_key), now)
                    records.extend(out.records)
                    result.score_events += out.score_events
                    result.alerts += out.alerts
                    if out.state is not None:
                        changed[state_key] = out.state
            new_states[metric.value] = changed
        await self._publish(records)
        await self._store.save_evaluation(states=new_states, evaluated=dirty)
        result.segments += len(dirty)
        if records:
            log.info("score_events_published", events=len(records), segments=len(dirty))

    def _decide(
        self,
        metric: Metric,
        key: str,
        window: str,
        counts: dict[CountsKey, Counts],
        stored: SegmentState | None,
        now: datetime,
    ) -> _Outcome:
        current = counts.get(CountsKey(f"{window}|cur", key), {})
        previous = counts.get(CountsKey(f"{window}|prev", key), {})
        cur = domain.summarize(metric, current, min_sample=self._s.min_sample)
        prev = domain.summarize(metric, previous, min_sample=self._s.min_sample)
        state = stored if stored is not None else SegmentState()
        threshold = threshold_for(self._s.alert_thresholds, metric, key)
        decision = decide(
            metric=metric,
            window=window,
            segment=key,
            current=cur,
            state=state,
            threshold=threshold,
            min_delta=self._s.score_event_min_delta,
        )
        records: list[OutgoingRecord] = []
        head = _Head(topic=self._s.topics.scores, metric=metric, window=window, key=key, now=now)
        if decision.changed and decision.event_id is not None:
            records.append(_score_changed(head, decision.event_id, cur, prev))
            sm.SCORE_EVENTS.labels("score_changed").inc()
        for alert in decision.alerts:
            records.append(_segment_alert(head, alert, cur, prev))
            sm.SCORE_EVENTS.labels("segment_alert").inc()
            log.info("segment_alert", metric=metric.value, window=window, segment=key, reason=alert.reason)
        return _Outcome(
            state=decision.state if decision.state != state else None,
            records=records,
            score_events=int(decision.changed),
            alerts=len(decision.alerts),
        )


@dataclass(frozen=True, slots=True)
class _Head:
    """What every event about one (metric, window, segment) carries."""

    topic: str
    metric: Metric
    window: str
    key: str
    now: datetime

    def encode(
        self, *, event_type: str, event_id: str, data: ev.ScoreChanged | ev.SegmentAlert
    ) -> OutgoingRecord:
        return encode(
            topic=self.topic,
            event_type=event_type,
            source="/scorer",
            event_id=event_id,
            key=self.key,
            subject=f"{self.metric.value}/{self.window}",
            time=self.now,
            data=data,
        )


def _score_changed(head: _Head, event_id: str, cur: domain.Summary, prev: domain.Summary) -> OutgoingRecord:
    delta = None if cur.score is None or prev.score is None else round(cur.score - prev.score, 2)
    return head.encode(
        event_type=ev.SCORE_CHANGED,
        event_id=event_id,
        data=ev.ScoreChanged(
            metric=head.metric,
            window=head.window,
            segment=head.key,
            segment_attributes=domain.parse_segment_key(head.key),
            score=cur.score,
            responses=cur.responses,
            previous=prev.score,
            delta=delta,
            ci_low=cur.ci_low,
            ci_high=cur.ci_high,
            insufficient=cur.insufficient,
            computed_at=head.now,
        ),
    )


def _segment_alert(head: _Head, alert: Alert, cur: domain.Summary, prev: domain.Summary) -> OutgoingRecord:
    return head.encode(
        event_type=ev.SEGMENT_ALERT,
        event_id=alert.alert_id,
        data=ev.SegmentAlert(
            alert_id=alert.alert_id,
            metric=head.metric,
            window=head.window,
            segment=head.key,
            segment_attributes=domain.parse_segment_key(head.key),
            reason=alert.reason,
            score=cur.score,
            previous=prev.score,
            threshold=alert.threshold,
            responses=cur.responses,
            computed_at=head.now,
        ),
    )
