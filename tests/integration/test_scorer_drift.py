"""Drift alerts on the real broker and PostgreSQL, over an accelerated half-year.

Ratings of two stores (30 answers a day each, 180 days; one drops from 80 % to 60 % positive on day
150) go through the collector's normalisation, the broker and the scorer's consumer into the real
counters. The evaluator then runs with a clock the test controls, one round just after each simulated
midnight (plus the grace): exactly one ``drift_drop`` alert reaches the scores topic, for the dropping
store, dated within a week of the change; none for the stable store. Evaluated after a long pause it
publishes the same alert (same id); the states read back from PostgreSQL are those a pure fold of the
same day counters gives; ``csat replay`` resets them and the next round refolds them to the same.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from services.collector.domain import RatingIn, normalize
from services.collector.intake import to_record
from services.scorer import drift
from services.scorer.bootstrap import create_app
from services.scorer.evaluator import ScoreEvaluator
from services.scorer.ports import Counts
from services.scorer.repository.drift import reset_drift
from services.scorer.repository.events import PgScoreEvents
from services.scorer.repository.replay import Replayer
from services.scorer.settings import ScorerSettings
from shared import events as ev
from shared.db import make_engine
from shared.envelope import OutgoingRecord, decode
from shared.kafka import make_producer, send_all
from shared.scales import Metric
from shared.topics import Topics
from tests.credentials import ADMIN
from tests.helpers import produce, read_events, running, wait_for
from tests.infra import Infra
from tests.integration.test_scorer_queries import scorer_settings, stored

pytestmark = pytest.mark.integration

START = date(2025, 1, 6)  # a Monday, long enough ago that every simulated day is closed in real time
DAYS, DROP_DAY, PER_DAY = 180, 150, 30
CHANGE = START + timedelta(days=DROP_DAY)
STORES = {"stable": None, "dropping": DROP_DAY}


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


@dataclass
class Simulated:
    records: list[OutgoingRecord] = field(default_factory=list)
    days: dict[str, dict[date, Counts]] = field(default_factory=dict)  # segment key -> day -> counts


def simulate(topic: str) -> Simulated:
    """Each store's ratings, spread over the day, and the day counters they must make."""
    out = Simulated()
    for seed, (store, drop_day) in enumerate(STORES.items()):
        rng = random.Random(seed)
        for d in range(DAYS):
            day = START + timedelta(days=d)
            p = 0.6 if drop_day is not None and d >= drop_day else 0.8
            for i in range(PER_DAY):
                score = rng.choice((4, 5)) if rng.random() < p else rng.choice((1, 2, 3))
                at = midnight(day) + timedelta(minutes=17 + i * 47)
                body = {
                    "rating_id": f"{store}-{d}-{i}",
                    "metric": "csat",
                    "scale": "1-5",
                    "score": score,
                    "customer": {"id": f"cus-{store}-{i}"},
                    "segment": {"store": store},
                    "occurred_at": at.isoformat(),
                }
                rated = normalize(RatingIn.model_validate(body), received_at=at)
                out.records.append(to_record(rated, topic=topic))
                for key in (f"store={store}", "*"):
                    counts = out.days.setdefault(key, {}).setdefault(day, {})
                    counts[("1-5", score)] = counts.get(("1-5", score), 0) + 1
    return out


@dataclass
class Clock:
    now: datetime = datetime(2025, 1, 6, tzinfo=UTC)  # START

    def __call__(self) -> datetime:
        return self.now

    def after_day(self, d: int) -> None:
        """The grace after day ``d`` closed, plus a minute."""
        self.now = midnight(START + timedelta(days=d + 1)) + timedelta(minutes=61)


@dataclass
class Published:
    """What the evaluator sent to the broker (acknowledged), kept to compare the two runs."""

    producer: AIOKafkaProducer
    drops: list[ev.SegmentAlert] = field(default_factory=list)
    sent: int = 0

    async def publish(self, records: list[OutgoingRecord]) -> None:
        await send_all(self.producer, records, timeout_s=10)
        self.sent += len(records)
        for r in records:
            data = decode(headers=r.headers, key=r.key, value=r.value).data
            if isinstance(data, ev.SegmentAlert) and data.reason == drift.DRIFT_DROP:
                self.drops.append(data)


def pure_fold(days: dict[date, Counts], *, settings: drift.DriftSettings, now: datetime) -> drift.DriftState:
    """The same days folded without the scorer: what the stored state must equal."""
    history = drift.History.from_counts(
        Metric.CSAT, span=drift.DateRange(START, START + timedelta(days=DAYS)), counts=days
    )
    return drift.evaluate_segment(
        drift.DriftState(), history=history, first=START, now=now, grace=timedelta(hours=1), settings=settings
    ).state


async def evaluate(
    engine: AsyncEngine, cfg: ScorerSettings, publish: Callable[[list[OutgoingRecord]], Awaitable[None]],
    days: list[int],
) -> None:  # fmt: skip
    """One evaluator (as one scorer process), a round after each of ``days`` closed."""
    clock = Clock()
    evaluator = ScoreEvaluator(store=PgScoreEvents(engine), settings=cfg, publish=publish, clock=clock)
    for d in days:
        clock.after_day(d)
        await evaluator.run_once()


async def test_one_true_drop_alerted_once_and_a_stable_store_never(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    sim = simulate(topics.ratings)
    await produce(infra.bootstrap, sim.records)
    # The service ingests through its consumer; its own evaluator keeps its (real) clock out of this.
    ingest = scorer_settings(infra, database_url, topics, drift_enabled=False)
    cfg = scorer_settings(infra, database_url, topics, event_windows=["7d"])
    engine = make_engine(database_url)
    producer = make_producer(bootstrap=infra.bootstrap, client_id="drift-test", idempotence=False)
    await producer.start()
    try:
        async with running(create_app(ingest), headers=ADMIN) as client:
            await wait_for(lambda: stored(database_url), until=lambda n: n == len(sim.records), timeout_s=60)

            daily = Published(producer)
            await evaluate(engine, cfg, daily.publish, list(range(DAYS)))
            by_store = {a.segment: a for a in daily.drops}
            # The dropping store, and all customers ('*': both stores, 80 % -> 70 %), once each.
            assert sorted(a.segment for a in daily.drops) == ["*", "store=dropping"]
            alert = by_store["store=dropping"]
            assert alert.drift is not None and abs((alert.drift.since - CHANGE).days) <= 7
            assert 0 <= (alert.drift.day - CHANGE).days <= 21
            assert alert.drift.drop_ci_low is not None and alert.drift.drop_ci_low > 0

            # What PostgreSQL kept is what a pure fold of the same day counters gives.
            store = PgScoreEvents(engine)
            end = Clock()
            end.after_day(DAYS - 1)
            saved = await store.drift_states(metric="csat", keys=sorted(sim.days))
            for key, days in sim.days.items():
                assert saved[key] == pure_fold(days, settings=cfg.drift, now=end.now), key

            # The API reads the same states.
            listed = (await client.get("/v1/drift", params={"status": "drop_detected"})).json()
            assert "store=dropping" in [s["segment_key"] for s in listed["segments"]]
            assert "store=stable" not in [s["segment_key"] for s in listed["segments"]]

            # Evaluated after a long pause (a first fold on day 0, then one round at the end): the same.
            async with engine.begin() as conn:
                await reset_drift(conn)
            paused = Published(producer)
            await evaluate(engine, cfg, paused.publish, [0, DAYS - 1])
            assert sorted((a.alert_id, a.segment, a.drift) for a in paused.drops) == sorted(
                (a.alert_id, a.segment, a.drift) for a in daily.drops
            )
            assert await store.drift_states(metric="csat", keys=sorted(sim.days)) == saved

        on_topic = await read_events(infra.bootstrap, topics.scores, count=daily.sent + paused.sent)
        drops = [e for e in on_topic if isinstance(e.data, ev.SegmentAlert) and e.data.reason == "drift_drop"]
        assert sorted(e.id for e in drops) == sorted(a.alert_id for a in daily.drops + paused.drops)

        # csat replay: the states are forgotten, and the next round refolds them to the same.
        result = await Replayer(engine, settings=cfg).run()
        assert result.drift_states_reset == len(sim.days)
        assert await store.drift_states(metric="csat", keys=sorted(sim.days)) == {}
        refold = Published(producer)
        await evaluate(engine, cfg, refold.publish, [DAYS - 1])
        assert refold.drops == []  # the drop is weeks old: not news any more
        assert await store.drift_states(metric="csat", keys=sorted(sim.days)) == saved
    finally:
        await producer.stop()
        await engine.dispose()
