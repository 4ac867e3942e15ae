"""The evaluator's drift step: once a UTC day has closed (plus a grace for late answers), fold the closed
days of every (metric, segment) into its detector and publish one ``drift_drop`` alert per alarm.

Like the score events: read, decide (``drift.evaluate_segment``, the function ``make stats`` drives),
publish and wait for the broker, then save the new states in one transaction. A crash before that
commit folds the same days again from the same states and republishes the same alert ids (an
alarm's id is its (metric, segment, day)), so subscribers dedupe; so does a replay's refold.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import groupby

import structlog

from services.scorer import domain, drift
from services.scorer import metrics as sm
from services.scorer.ports import Counts, DriftKey, DriftStore
from services.scorer.settings import ScorerSettings
from shared import events as ev
from shared.envelope import OutgoingRecord, encode
from shared.scales import Metric

log = structlog.get_logger(__name__)

Publish = Callable[[list[OutgoingRecord]], Awaitable[None]]

#: Segments per read, fold and save: a first fold reads every day of each (a deployment on old data).
DRIFT_BATCH = 100


@dataclass(slots=True)
class DriftResult:
    segments: int = 0  # (metric, segment) folded
    days: int = 0  # segment-days folded
    alerts: int = 0


class DriftStep:
    """Runs in the evaluator's round; does work only when a day closed since its last complete pass."""

    def __init__(self, *, store: DriftStore, settings: ScorerSettings, publish: Publish) -> None:
        self._store = store
        self._s = settings
        self._drift = settings.drift
        self._publish = publish
        self._done: date | None = None  # every segment is folded through this day

    async def run_once(self, now: datetime) -> DriftResult:
        result = DriftResult()
        through = drift.last_closed_day(now, grace=self._s.drift_grace)
        if self._done is not None and self._done >= through:
            return result
        after: DriftKey | None = None
        while True:
            pending = await self._store.drift_pending(through=through, limit=DRIFT_BATCH, after=after)
            if not pending:
                break
            after = pending[-1]
            await self._evaluate(pending, now=now, through=through, result=result)
        self._done = through
        if result.segments:
            log.info("drift_evaluated", through=through.isoformat(), segments=result.segments,
                     days=result.days, alerts=result.alerts)  # fmt: skip
        return result

    async def _evaluate(
        self, pending: Sequence[DriftKey], *, now: datetime, through: date, result: DriftResult
    ) -> None:
        records: list[OutgoingRecord] = []
        new: dict[DriftKey, drift.DriftState] = {}
        for metric_name, group in groupby(pending, key=lambda k: k.metric):
            metric = Metric(metric_name)
            keys = [k.segment_key for k in group]
            states = await self._store.drift_states(metric=metric.value, keys=keys)
            fresh = [k for k in keys if k not in states]
            firsts = await self._store.first_days(metric=metric.value, keys=fresh) if fresh else {}
            since = {
                k: drift.history_start(s, first=through, settings=self._drift) for k, s in states.items()
            }
            since.update(firsts)
            counts = await self._store.day_counts(metric=metric.value, since=since, through=through)
            # A first fold can be years of days: computed in a thread, the event loop (the consumer,
            # its heartbeats, the API) keeps running between the interpreter's switches.
            rounds = await asyncio.to_thread(
                self._fold, metric, states=states, since=since, counts=counts, now=now, through=through
            )
            for key, rnd in rounds.items():
                state = states.get(key, drift.DriftState())
                if rnd.state != state:
                    new[DriftKey(metric.value, key)] = rnd.state
                result.segments += 1
                result.days += len(rnd.verdicts)
                for verdict in rnd.publish:
                    records.append(self._alert(metric, key, verdict, now=now))
        if records:
            await self._publish(records)
        await self._store.save_drift(states=new, evaluated_at=now)
        result.alerts += len(records)

    def _fold(
        self,
        metric: Metric,
        *,
        states: Mapping[str, drift.DriftState],
        since: Mapping[str, date],
        counts: Mapping[str, Mapping[date, Counts]],
        now: datetime,
        through: date,
    ) -> dict[str, drift.SegmentRound]:
        """Each segment's evaluation from its stored state (pure: reads only its arguments)."""
        out: dict[str, drift.SegmentRound] = {}
        for key, start in since.items():
            history = drift.History.from_counts(
                metric, span=drift.DateRange(start, through + timedelta(days=1)), counts=counts.get(key, {})
            )
            out[key] = drift.evaluate_segment(
                states.get(key, drift.DriftState()),
                history=history,
                first=start,
                now=now,
                grace=self._s.drift_grace,
                settings=self._drift,
            )
        return out

    def _alert(self, metric: Metric, key: str, v: drift.Verdict, *, now: datetime) -> OutgoingRecord:
        """The ``drift_drop`` alert of one alarm verdict."""
        d = v.drop
        since = v.day if d is None else d.since
        window = f"{(v.day - since).days + 1}d"
        alert_id = drift.alert_id(metric, key, v.day)
        sm.SCORE_EVENTS.labels("segment_alert").inc()
        log.info("segment_alert", metric=metric.value, window=window, segment=key, reason=drift.DRIFT_DROP)
        details = ev.DriftDetails(
            status=v.status.value,
            day=v.day,
            since=since,
            drop=None if d is None else round(d.size, 2),
            drop_ci_low=None if d is None else round(d.ci_low, 2),
            drop_ci_high=None if d is None else round(d.ci_high, 2),
            before=None if d is None else round(d.before, 2),
            after=None if d is None else round(d.after, 2),
            answers_before=None if d is None else d.answers_before,
            answers_after=None if d is None else d.answers_after,
            evidence=round(v.evidence, 3),
            evidence_threshold=round(v.threshold, 3),
            watched_drop=None if v.watched_drop is None else round(v.watched_drop, 2),
            min_drop=v.min_drop,
            months_per_false_alarm=self._drift.months_per_false_alarm,
            message=drift.describe(v, metric=metric, settings=self._drift),
        )
        return encode(
            topic=self._s.topics.scores,
            event_type=ev.SEGMENT_ALERT,
            source="/scorer",
            event_id=alert_id,
            key=key,
            subject=f"{metric.value}/{window}",
            time=now,
            data=ev.SegmentAlert(
                alert_id=alert_id,
                metric=metric,
                window=window,
                segment=key,
                segment_attributes=domain.parse_segment_key(key),
                reason=drift.DRIFT_DROP,
                score=details.after,
                previous=details.before,
                responses=0 if d is None else d.answers_after,
                computed_at=now,
                drift=details,
            ),
        )
