"""The scorer's use cases on the in-memory store: the consumer's batch handler (stored once, counted
per segment within the caps) and the score-event evaluator that publishes from those counters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY

from services.scorer.decoding import RatingRow, decode_record
from services.scorer.evaluator import ScoreEvaluator
from services.scorer.handlers import make_handler
from services.scorer.settings import ScorerSettings
from shared import events as ev
from shared.consumer import Received
from shared.envelope import Envelope, OutgoingRecord, decode, encode
from shared.events import CustomerRef, RatingSubmitted, ScoreChanged, SegmentAlert
from shared.scales import SCALES, Metric, Sentiment
from tests.fakes.scorer_store import Bucket, MemoryScorerStore

NOW = datetime(2026, 11, 23, 12, 0, 30, tzinfo=UTC)
TX = object()  # the consumer's transaction: opaque to the handler, passed through to the store


@dataclass
class Raw:
    """A consumed record as aiokafka gives it."""

    value: bytes | None
    headers: Sequence[tuple[str, bytes]]
    key: bytes | None
    topic: str = "ratings"
    partition: int = 0
    offset: int = 0


def rating(
    rating_id: str,
    score: int = 5,
    *,
    segment: dict[str, str] | None = None,
    at: datetime = NOW - timedelta(hours=1),
    customer: str = "cus-1",
) -> RatingSubmitted:
    scale = SCALES[(Metric.CSAT, "1-5")]
    return RatingSubmitted(
        rating_id=rating_id,
        metric=Metric.CSAT,
        scale="1-5",
        score=score,
        normalized=scale.normalized(score),
        sentiment=scale.sentiment(score),
        positive=scale.sentiment(score) is Sentiment.POSITIVE,
        customer=CustomerRef(id=customer),
        segment=segment or {},
        occurred_at=at,
        received_at=at,
    )


def received(data: RatingSubmitted | ScoreChanged, *, offset: int = 0, lean: bool = True) -> Received:
    """As the consumer hands records over: decoded by the scorer's decoder (a lean ``RatingRow`` for a
    rating in the common form), or by the full decoder (the pydantic model, as for lax inputs)."""
    record = encode(
        topic="ratings",
        event_type=ev.RATING_SUBMITTED if isinstance(data, RatingSubmitted) else ev.SCORE_CHANGED,
        source="/collector",
        event_id=data.rating_id if isinstance(data, RatingSubmitted) else "e-1",
        key="k",
        data=data,
    )
    if lean:
        envelope = decode_record(Raw(value=record.value, headers=record.headers, key=record.key))
        assert isinstance(envelope, Envelope)
    else:
        envelope = decode(headers=record.headers, key=record.key, value=record.value)
    return Received(envelope=envelope, topic="ratings", partition=0, offset=offset)


def batch(*ratings: RatingSubmitted) -> list[Received]:
    return [received(r, offset=i) for i, r in enumerate(ratings)]


def settings(**values: Any) -> ScorerSettings:
    return ScorerSettings.model_validate(
        {"environment": "test", "event_windows": ["7d"], "min_sample": 10, **values}
    )


def handler_for(store: MemoryScorerStore, cfg: ScorerSettings | None = None) -> Any:
    return make_handler(store=store, tiers=(cfg or settings()).tiers, clock=lambda: NOW)


def day_counts(store: MemoryScorerStore) -> dict[str, int]:
    """Ratings counted per segment key in the day tier."""
    out: dict[str, int] = {}
    for b, n in store.tiers["day"].items():
        out[b.segment_key] = out.get(b.segment_key, 0) + n
    return out


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


# ---- the consumer's batch handler ---------------------------------------------------------------------
async def test_a_batch_is_counted_into_every_segment_and_tier() -> None:
    store = MemoryScorerStore(combinations=[("channel", "store")])
    handle = handler_for(store)
    paris = {"store": "paris-1", "channel": "chat"}
    records = [
        received(rating("r-1", 5, segment=paris)),
        received(rating("r-2", 2, segment=paris), lean=False),
        received(rating("r-3", 4, segment={"store": "lyon-2", "channel": "web"})),
    ]
    assert [type(r.envelope.data) for r in records] == [RatingRow, RatingSubmitted, RatingRow]
    out = await handle(TX, records)
    assert out == []  # score events come from the evaluator, after the counters committed
    assert set(store.ratings) == {"r-1", "r-2", "r-3"} and store.batches == 1
    assert day_counts(store) == {
        "*": 3,
        "channel=chat": 2,
        "store=paris-1": 2,
        "channel=chat|store=paris-1": 2,
        "channel=web": 1,
        "store=lyon-2": 1,
        "channel=web|store=lyon-2": 1,
    }
    at = NOW - timedelta(hours=1)
    minute, hour = at.replace(second=0), at.replace(minute=0, second=0)
    assert store.tiers["minute"][Bucket("csat", "store=paris-1", minute, "1-5", 2)] == 1
    assert store.tiers["hour"][Bucket("csat", "store=paris-1", hour, "1-5", 5)] == 1
    assert {key for _, key in store.dirty} == set(day_counts(store))


async def test_a_rating_delivered_twice_is_counted_once() -> None:
    store = MemoryScorerStore()
    handle = handler_for(store)
    first = rating("r-1", segment={"store": "paris-1"})
    # Twice in one batch (the store would count a repeated id twice), then the batch redelivered.
    await handle(TX, [received(first), received(first, offset=1), received(rating("r-2"))])
    await handle(TX, [received(first), received(rating("r-2"))])
    assert day_counts(store) == {"*": 2, "store=paris-1": 1}
    assert len(store.ratings) == 2


async def test_a_batch_without_ratings_does_not_reach_the_store() -> None:
    store = MemoryScorerStore()
    other = ScoreChanged(
        metric=Metric.CSAT,
        window="7d",
        segment="*",
        score=80.0,
        responses=40,
        previous=None,
        delta=None,
        ci_low=None,
        ci_high=None,
        insufficient=False,
        computed_at=NOW,
    )
    out = await handler_for(store)(TX, [received(other)])
    assert out == [] and store.batches == 0 and not store.ratings


async def test_caps_fold_values_and_drop_dimensions_once_per_new_rating() -> None:
    store = MemoryScorerStore(max_values=1, max_dimensions=1)
    handle = handler_for(store)
    folded_before = sample("csat_segment_values_folded_total", {"dimension": "store"})
    dropped_before = sample("csat_segment_dimensions_dropped_total")
    ratings = [
        rating("r-1", segment={"store": "a", "zone": "north"}),
        rating("r-2", segment={"store": "b", "zone": "north"}),
        rating("r-3", segment={"store": "a"}),
    ]
    await handle(TX, batch(*ratings))
    await handle(TX, batch(*ratings))  # redelivered: nothing new, nothing counted again
    # "store" sorts first and takes the one dimension; "a" sorts first and takes the one value.
    assert day_counts(store) == {"*": 3, "store=a": 2, "store=other": 1}
    assert sample("csat_segment_values_folded_total", {"dimension": "store"}) - folded_before == 1
    assert sample("csat_segment_dimensions_dropped_total") - dropped_before == 2


async def test_old_ratings_skip_the_buckets_retention_would_prune() -> None:
    store = MemoryScorerStore()
    cfg = settings()  # minute buckets kept 35 days, hour buckets 800
    await handler_for(store, cfg)(
        TX,
        batch(
            rating("recent", at=NOW - timedelta(days=2)),
            rating("last-quarter", at=NOW - timedelta(days=90)),
            rating("years-ago", at=NOW - timedelta(days=1000)),
        ),
    )
    written = {
        tier: {b.start for b in counts if b.segment_key == "*"} for tier, counts in store.tiers.items()
    }
    days = {tier: sorted((NOW - at).days for at in starts) for tier, starts in written.items()}
    assert days == {"minute": [2], "hour": [2, 90], "day": [2, 90, 1000]}


# ---- the score-event evaluator on the handler's counters ----------------------------------------------
@dataclass
class Broker:
    """Records what the evaluator published (the real one waits for the broker's acknowledgement)."""

    sent: list[list[OutgoingRecord]] = field(default_factory=list)

    async def publish(self, records: list[OutgoingRecord]) -> None:
        self.sent.append(records)

    def events(self, round_: int = -1) -> list[tuple[str, str, Any]]:
        out = []
        for r in self.sent[round_]:
            env = decode(headers=r.headers, key=r.key, value=r.value)
            out.append((env.type, env.id, env.data))
        return out


async def counted_drop(store: MemoryScorerStore, cfg: ScorerSettings) -> None:
    """Last week 20 happy ratings in one store; this week 4 happy and 16 unhappy ones."""
    store_a = {"store": "paris-1"}
    before = [rating(f"p-{i}", 5, segment=store_a, at=NOW - timedelta(days=8)) for i in range(20)]
    now = [rating(f"c-{i}", 5 if i < 4 else 1, segment=store_a) for i in range(20)]
    await handler_for(store, cfg)(TX, batch(*before, *now))


async def test_counters_that_moved_give_score_changes_and_alerts_once() -> None:
    cfg = settings()
    store, broker = MemoryScorerStore(), Broker()
    evaluator = ScoreEvaluator(store=store, settings=cfg, publish=broker.publish, clock=lambda: NOW)
    await counted_drop(store, cfg)
    result = await evaluator.run_once()
    assert (result.segments, result.score_events, result.alerts) == (2, 2, 2)
    events = broker.events()
    changes = {data.segment: data for kind, _, data in events if kind == ev.SCORE_CHANGED}
    assert set(changes) == {"*", "store=paris-1"}
    paris = changes["store=paris-1"]
    assert isinstance(paris, ScoreChanged)
    assert (paris.score, paris.previous, paris.responses, paris.delta) == (20.0, 100.0, 20, -80.0)
    alerts = sorted((data.segment, data.reason) for kind, _, data in events if kind == ev.SEGMENT_ALERT)
    # The collapse against last week is a one-look comparison (the scores API), not an alert: drift
    # alerts come from closed days, and these segments are too new for their detector.
    assert alerts == [("*", "below_threshold"), ("store=paris-1", "below_threshold")]
    assert result.drift.alerts == 0 and result.drift.segments == 2
    assert all(
        isinstance(data, SegmentAlert) and data.threshold == 70.0
        for k, _, data in events
        if k == ev.SEGMENT_ALERT
    )
    assert not store.dirty
    # Nothing moved since: nothing to evaluate, nothing published.
    again = await evaluator.run_once()
    assert (again.segments, again.score_events, again.alerts) == (0, 0, 0) and len(broker.sent) == 1


async def test_a_round_that_could_not_save_republishes_the_same_events() -> None:
    cfg = settings()
    store, broker = MemoryScorerStore(), Broker()
    evaluator = ScoreEvaluator(store=store, settings=cfg, publish=broker.publish, clock=lambda: NOW)
    await counted_drop(store, cfg)
    store.fail_saves = True
    with pytest.raises(ConnectionError):
        await evaluator.run_once()
    assert len(store.dirty) == 2 and not store.states
    store.fail_saves = False
    await evaluator.run_once()
    assert [i for _, i, _ in broker.events(0)] == [i for _, i, _ in broker.events(1)]
    assert len(broker.events(1)) == 4 and not store.dirty


async def test_a_segment_counted_again_while_evaluated_stays_dirty() -> None:
    cfg = settings()
    store = MemoryScorerStore()
    handle = handler_for(store, cfg)
    await handle(TX, batch(*(rating(f"r-{i}", 5) for i in range(12))))
    sent: list[list[OutgoingRecord]] = []

    async def publish_while_a_batch_lands(records: list[OutgoingRecord]) -> None:
        sent.append(records)
        if len(sent) == 1:
            await handle(TX, batch(rating("late", 1)))

    evaluator = ScoreEvaluator(
        store=store, settings=cfg, publish=publish_while_a_batch_lands, clock=lambda: NOW
    )
    await evaluator.run_once()
    assert set(store.dirty) == {("csat", "*")}  # its version moved after it was read
    second = await evaluator.run_once()
    assert second.score_events == 1
    change = decode(headers=sent[1][0].headers, key=sent[1][0].key, value=sent[1][0].value).data
    assert isinstance(change, ScoreChanged)
    assert (change.responses, change.score, change.previous) == (13, 92.31, None)


# ---- survey re-clicks: a newer revision replaces the counted answer -------------------------------
def revised(rating_id: str, score: int, revision: int, **kw: Any) -> RatingSubmitted:
    return rating(rating_id, score, **kw).model_copy(update={"revision": revision})


def scores_of(store: MemoryScorerStore, key: str, tier: str = "day") -> dict[int, int]:
    """Ratings per score counted for one segment key (rows that went back to 0 left out)."""
    out: dict[int, int] = {}
    for b, n in store.tiers[tier].items():
        if b.segment_key == key and n:
            out[b.score] = out.get(b.score, 0) + n
    return out


@pytest.mark.parametrize("lean", [True, False])
async def test_a_newer_revision_replaces_the_answer_in_every_tier(lean: bool) -> None:
    store = MemoryScorerStore()
    handle = handler_for(store)
    paris = {"store": "paris-1"}
    await handle(TX, [received(rating("r-1", 2, segment=paris)), received(rating("r-2", 5, segment=paris))])
    await handle(TX, [received(revised("r-1", 4, 1, segment=paris), lean=lean)])
    for tier in ("minute", "hour", "day"):
        assert scores_of(store, "store=paris-1", tier) == {4: 1, 5: 1}, tier
        assert scores_of(store, "*", tier) == {4: 1, 5: 1}, tier
    assert store.ratings["r-1"].score == 4 and store.ratings["r-1"].revision == 1
    # The same revision again (a replay) and the first answer delivered late change nothing.
    await handle(
        TX, [received(revised("r-1", 4, 1, segment=paris)), received(rating("r-1", 2, segment=paris))]
    )
    assert scores_of(store, "store=paris-1") == {4: 1, 5: 1}
    # Two more re-clicks in one batch, newest first (out of order): the newest stands.
    await handle(
        TX, [received(revised("r-1", 1, 3, segment=paris)), received(revised("r-1", 3, 2, segment=paris))]
    )
    assert scores_of(store, "store=paris-1") == {1: 1, 5: 1}
    assert store.ratings["r-1"].revision == 3
    assert sum(day_counts(store).values()) == 4  # two ratings in two segment keys, never more


async def test_a_revision_before_its_first_answer_is_counted_once() -> None:
    store = MemoryScorerStore()
    handle = handler_for(store)
    await handle(TX, [received(revised("r-1", 5, 1))])  # the first answer arrives later (a redelivery)
    await handle(TX, [received(rating("r-1", 1))])
    assert scores_of(store, "*") == {5: 1}
    # One batch holding both: the revision wins whatever the order.
    await handle(TX, [received(rating("r-2", 1)), received(revised("r-2", 3, 1))])
    assert scores_of(store, "*") == {5: 1, 3: 1}


async def test_a_revision_moved_to_another_bucket_leaves_no_trace_in_the_old_one() -> None:
    store = MemoryScorerStore()
    handle = handler_for(store)
    first_at = NOW - timedelta(hours=3)
    await handle(TX, [received(rating("r-1", 2, at=first_at))])
    await handle(TX, [received(revised("r-1", 2, 1, at=NOW - timedelta(hours=1), segment={"store": "s1"}))])
    hours = {b.start: n for b, n in store.tiers["hour"].items() if b.segment_key == "*" and n}
    assert hours == {(NOW - timedelta(hours=1)).replace(minute=0, second=0): 1}
    assert scores_of(store, "store=s1") == {2: 1}
