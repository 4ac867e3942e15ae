"""The evaluator's drift step on the in-memory store: it works once a UTC day closed (plus the grace),
publishes one ``drift_drop`` alert per alarm with what was detected, catches a new segment up without
publishing old news, and refolds to the same alert ids after a replay or a crash before saving."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest

from services.scorer.drift import DriftState, Status
from services.scorer.evaluator import ScoreEvaluator
from services.scorer.settings import ScorerSettings
from shared import events as ev
from shared.envelope import OutgoingRecord, decode
from shared.scales import Metric
from tests.fakes.scorer_store import Bucket, MemoryScorerStore

START = date(2026, 1, 5)  # a Monday
DROP_DAY = 150  # the dropping store's change: 80 % -> 60 % positive from this day on
DAYS = 180
GRACE = timedelta(minutes=60)


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def fill(
    store: MemoryScorerStore, key: str, *, seed: int, drop_day: int | None = None, days: int = DAYS
) -> None:
    """30 CSAT answers a day into the day tier, 80 % positive (60 % from ``drop_day``)."""
    rng = random.Random(seed)
    for d in range(days):
        p = 0.6 if drop_day is not None and d >= drop_day else 0.8
        positive = sum(rng.random() < p for _ in range(30))
        at = midnight(START + timedelta(days=d))
        store.tiers["day"][Bucket("csat", key, at, "1-5", 5)] += positive
        store.tiers["day"][Bucket("csat", key, at, "1-5", 2)] += 30 - positive


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def after_day(self, d: int, *, minutes: int = 61) -> None:
        """Just past the grace after day ``d`` (from START) closed."""
        self.now = midnight(START + timedelta(days=d + 1)) + timedelta(minutes=minutes)


@dataclass
class Broker:
    alerts: list[ev.SegmentAlert] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    rounds: int = 0

    async def publish(self, records: list[OutgoingRecord]) -> None:
        self.rounds += 1
        for r in records:
            env = decode(headers=r.headers, key=r.key, value=r.value)
            assert isinstance(env.data, ev.SegmentAlert) and env.id == env.data.alert_id
            self.alerts.append(env.data)
            self.ids.append(env.id)


def settings(**values: Any) -> ScorerSettings:
    return ScorerSettings.model_validate({"environment": "test", "event_windows": ["7d"], **values})


def two_stores() -> MemoryScorerStore:
    store = MemoryScorerStore()
    fill(store, "store=stable", seed=1)
    fill(store, "store=dropping", seed=2, drop_day=DROP_DAY)
    return store


def evaluator(store: MemoryScorerStore, broker: Broker, clock: Clock) -> ScoreEvaluator:
    return ScoreEvaluator(store=store, settings=settings(), publish=broker.publish, clock=clock)


async def run_daily(store: MemoryScorerStore, broker: Broker, *, through: int = DAYS - 1) -> None:
    clock = Clock(midnight(START))
    ev_ = evaluator(store, broker, clock)
    for d in range(through + 1):
        clock.after_day(d)
        await ev_.run_once()


def states(store: MemoryScorerStore) -> dict[str, DriftState]:
    return {k.segment_key: r.state for k, r in store.drift_saved.items()}


async def test_a_day_is_judged_once_it_closed_and_the_grace_passed() -> None:
    store, broker = two_stores(), Broker()
    clock = Clock(midnight(START + timedelta(days=1)) + GRACE - timedelta(seconds=1))
    ev_ = evaluator(store, broker, clock)
    first = await ev_.run_once()  # 00:59:59 after day 0: day 0 may still get late answers
    assert first.drift.segments == 0 and not store.drift_saved
    clock.now += timedelta(seconds=1)
    ready = await ev_.run_once()
    assert (ready.drift.segments, ready.drift.days) == (2, 2)
    assert {s.day for s in states(store).values()} == {START}
    clock.now += timedelta(hours=12)
    again = await ev_.run_once()  # no new closed day: no work at all
    assert again.drift.segments == 0
    clock.now += timedelta(days=3)
    late = await ev_.run_once()  # a scorer away for days folds each missed day
    assert (late.drift.segments, late.drift.days) == (2, 6)
    assert {s.day for s in states(store).values()} == {START + timedelta(days=3)}


async def test_one_alert_per_true_drop_and_none_for_a_stable_segment() -> None:
    store, broker = two_stores(), Broker()
    await run_daily(store, broker)
    assert [a.segment for a in broker.alerts] == ["store=dropping"]
    (alert,) = broker.alerts
    d = alert.drift
    assert (
        d is not None and alert.reason == "drift_drop" and alert.segment_attributes == {"store": "dropping"}
    )
    change = START + timedelta(days=DROP_DAY)
    assert abs((d.since - change).days) <= 7
    assert 0 <= (d.day - change).days <= 21  # confirmed within three weeks at 30 answers a day
    assert d.drop is not None and d.drop_ci_low is not None and d.drop_ci_high is not None
    assert d.drop_ci_low < 20 < d.drop_ci_high and d.drop_ci_low > 0
    assert (alert.previous, alert.score) == (d.before, d.after) and alert.responses == d.answers_after
    assert d.evidence >= d.evidence_threshold and d.months_per_false_alarm == 120
    assert alert.window == f"{(d.day - d.since).days + 1}d"
    assert d.message.startswith(f"CSAT dropped by {d.drop:.1f} points") and d.since.isoformat() in d.message
    saved = states(store)
    assert saved["store=dropping"].alarms == 1 and saved["store=stable"].alarms == 0
    assert saved["store=stable"].calibration is not None
    assert saved["store=stable"].calibration.status is Status.MONITORING


async def test_evaluated_daily_or_after_a_long_pause_the_same_alerts_and_states() -> None:
    daily_store, daily = two_stores(), Broker()
    await run_daily(daily_store, daily)
    paused_store, paused = two_stores(), Broker()
    clock = Clock(midnight(START))
    ev_ = evaluator(paused_store, paused, clock)
    clock.after_day(0)
    await ev_.run_once()  # the segments' first fold...
    clock.after_day(DAYS - 1)
    await ev_.run_once()  # ...then one round at the end folds 179 days at once
    assert paused.ids == daily.ids and len(paused.ids) == 1
    assert [a.drift for a in paused.alerts] == [a.drift for a in daily.alerts]
    assert states(paused_store) == states(daily_store)


async def test_a_first_fold_catches_up_without_publishing_old_alarms() -> None:
    store, broker = two_stores(), Broker()
    clock = Clock(midnight(START))
    clock.after_day(DAYS - 1)
    await evaluator(store, broker, clock).run_once()
    assert broker.alerts == []  # the drop was confirmed weeks ago: history, not an alert
    assert states(store)["store=dropping"].alarms == 1
    assert states(store)["store=dropping"].last_drop is not None


async def test_a_refold_after_a_replay_republishes_a_recent_alarm_with_the_same_id() -> None:
    daily_store, daily = two_stores(), Broker()
    await run_daily(daily_store, daily)
    (alert,) = daily.alerts
    assert alert.drift is not None
    alarm = (alert.drift.day - START).days
    # The replay resets the states the day after the alarm: the refold publishes it again, same id.
    store, broker = two_stores(), Broker()
    await run_daily(store, broker, through=alarm + 1)
    store.reset_drift()
    clock = Clock(midnight(START))
    clock.after_day(alarm + 1)
    await evaluator(store, broker, clock).run_once()
    assert broker.ids == [alert.alert_id, alert.alert_id]
    assert broker.alerts[1].drift == alert.drift


async def test_a_crash_before_saving_folds_the_same_days_and_republishes_the_same_ids() -> None:
    store, broker = two_stores(), Broker()
    await run_daily(store, broker, through=DROP_DAY)
    before = states(store)
    clock = Clock(midnight(START))
    clock.after_day(DAYS - 1)
    store.fail_saves = True
    with pytest.raises(ConnectionError):
        await evaluator(store, broker, clock).run_once()
    assert states(store) == before and len(broker.ids) == 1
    store.fail_saves = False
    await evaluator(store, broker, clock).run_once()
    assert len(broker.ids) == 2 and broker.ids[0] == broker.ids[1]


async def test_drift_off_publishes_and_saves_nothing() -> None:
    store, broker = two_stores(), Broker()
    clock = Clock(midnight(START))
    clock.after_day(DAYS - 1)
    ev_ = ScoreEvaluator(
        store=store, settings=settings(drift_enabled=False), publish=broker.publish, clock=clock
    )
    result = await ev_.run_once()
    assert result.drift.segments == 0 and not store.drift_saved and broker.rounds == 0


def test_settings_in_plain_words_build_the_detector_settings() -> None:
    cfg = settings(drift_months_per_false_alarm=60, drift_min_drop={"csat": 5}, drift_max_delay_days=14)
    d = cfg.drift
    assert d.months_per_false_alarm == 60 and d.max_delay_days == 14
    assert d.min_drop[Metric.CSAT] == 5 and d.min_drop[Metric.NPS] == 10 and d.min_drop[Metric.CES] == 0.5
    assert cfg.drift_grace == GRACE
    with pytest.raises(ValueError, match="min_drop"):
        settings(drift_min_drop={"csat": 50})  # above the largest watched drop (30)
    with pytest.raises(ValueError, match="lag_days"):
        settings(drift_lag_days=7)  # a drop would become its own baseline before it is confirmed
