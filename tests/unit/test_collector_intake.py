"""The intake use case on fakes (in-memory store, fake publishers): validate -> claim -> publish -> answer.

No broker, no database, no wall-clock waits: concurrency is driven by events and an injected clock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cloudevents.core.bindings import kafka as ce_kafka
from prometheus_client import REGISTRY

from services.collector.domain import RatingIn, RatingRejected, Trust
from services.collector.intake import (
    Intake,
    IntakeUnavailable,
    Outcome,
    Submission,
    Verdict,
    to_record,
    to_record_fast,
)
from services.collector.ports import BrokerUnavailable, Claim, ClaimState
from shared import tracing
from shared.envelope import OutgoingRecord, decode
from shared.events import KeyKind
from tests.fakes.collector_store import MemoryStore

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
SERVER = Trust(KeyKind.SECRET)


class FakePublisher:
    """Publishes at once, or fails while ``down``."""

    def __init__(self) -> None:
        self.records: list[OutgoingRecord] = []
        self.down = False

    async def publish(self, records: Sequence[OutgoingRecord]) -> None:
        if self.down:
            raise BrokerUnavailable("down")
        self.records.extend(records)

    async def check(self) -> None:
        return None


class GatedPublisher(FakePublisher):
    """Holds every publish until ``gate`` opens; ``entered`` tells a publish has begun."""

    def __init__(self, *, failures: int = 0) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()
        self.failures = failures

    async def publish(self, records: Sequence[OutgoingRecord]) -> None:
        self.entered.set()
        await self.gate.wait()
        if self.failures:
            self.failures -= 1
            raise BrokerUnavailable("down")
        self.records.extend(records)


class Polls:
    """Injected clock and sleep: a poll moves the clock on by the time asked, unless ``advance=False``."""

    def __init__(self, *, advance: bool = True) -> None:
        self.advance = advance
        self.now = 0.0
        self.count = 0
        self.polled = asyncio.Event()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds if self.advance else 0.0
        self.count += 1
        self.polled.set()
        await asyncio.sleep(0)


def intake(publisher: FakePublisher, store: MemoryStore, *, polls: Polls | None = None, **kw: Any) -> Intake:
    polls = polls or Polls()
    options: dict[str, Any] = {"wait_s": 5.0, "lease_s": 30.0, "poll_s": 0.01, **kw}
    return Intake(
        publisher=publisher, records=store, topic="t", sleep=polls.sleep, clock=polls.clock, **options
    )


def rating(**kw: Any) -> RatingIn:
    return RatingIn.model_validate(
        {"metric": "csat", "scale": "1-5", "score": 4, "customer": {"id": "c1"}, **kw}
    )


def sub(it: Intake, *, score: int = 4, rid: str = "r-1", source: str = "s") -> Submission:
    return it.prepare(
        rating(score=score), received_at=NOW, source=source, rating_id=rid, keyed=True, trust=SERVER
    )


def counted(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_prepare_validates_and_fingerprints_only_client_chosen_ids() -> None:
    it = intake(FakePublisher(), MemoryStore(), max_future_skew=timedelta(minutes=1))
    keyed = it.prepare(rating(), received_at=NOW, source="shop", rating_id="k-1", keyed=True, trust=SERVER)
    assert (keyed.rating.rating_id, keyed.source_id, keyed.rating.source) == ("k-1", "shop", "shop")
    assert keyed.fingerprint is not None
    assert (
        it.prepare(
            rating(), received_at=NOW, source="shop", rating_id=None, keyed=False, trust=SERVER
        ).fingerprint
        is None
    )
    with pytest.raises(RatingRejected) as bad:
        it.prepare(rating(score=9), received_at=NOW, source="shop", rating_id=None, keyed=False, trust=SERVER)
    assert bad.value.field == "score"
    later = rating(occurred_at=(NOW + timedelta(minutes=2)).isoformat())
    with pytest.raises(RatingRejected) as future:
        it.prepare(later, received_at=NOW, source="shop", rating_id=None, keyed=False, trust=SERVER)
    assert future.value.field == "occurred_at"


async def test_a_new_rating_is_published_once_and_counted() -> None:
    pub, store = FakePublisher(), MemoryStore()
    it = intake(pub, store)
    before = counted("csat_ratings_accepted_total", metric="csat", source="s-new")
    (verdict,) = await it.submit([sub(it, rid="n-1", source="s-new")])
    assert verdict == Verdict(rating_id="n-1", outcome=Outcome.ACCEPTED)
    assert verdict.recorded and not verdict.replayed
    (record,) = pub.records
    envelope = decode(headers=record.headers, key=record.key, value=record.value)
    assert (envelope.id, record.key) == ("n-1", b"c1")
    assert counted("csat_ratings_accepted_total", metric="csat", source="s-new") == before + 1
    await it.close()
    assert store.idem["n-1"].state == "accepted"


async def test_a_retry_replays_and_a_changed_body_is_refused_in_words() -> None:
    pub, store = FakePublisher(), MemoryStore()
    it = intake(pub, store)
    assert [v.outcome for v in await it.submit([sub(it)])] == [Outcome.ACCEPTED]
    await it.close()
    (again,) = await it.submit([sub(it)])
    assert again.recorded and again.replayed
    conflicts = counted("csat_ratings_rejected_total", reason="idempotency_conflict", source="s")
    (changed,) = await it.submit([sub(it, score=1)])
    assert not changed.recorded and changed.outcome is Outcome.CONFLICT
    assert changed.refusal == "rating_id 'r-1' was already used for a different rating"
    assert counted("csat_ratings_rejected_total", reason="idempotency_conflict", source="s") == conflicts + 1
    assert len(pub.records) == 1


async def test_repeats_inside_one_request_are_answered_without_a_second_publish() -> None:
    pub, store = FakePublisher(), MemoryStore()
    it = intake(pub, store)
    outcomes = [v.outcome for v in await it.submit([sub(it), sub(it), sub(it, score=1)])]
    assert outcomes == [Outcome.ACCEPTED, Outcome.REPLAYED, Outcome.CONFLICT]
    assert len(pub.records) == 1


async def test_a_broker_outage_records_nothing_and_frees_the_id_for_the_retry() -> None:
    pub, store = FakePublisher(), MemoryStore()
    it = intake(pub, store)
    pub.down = True
    refused = counted("csat_ratings_rejected_total", reason="broker_unavailable", source="s")
    with pytest.raises(IntakeUnavailable) as down:
        await it.submit([sub(it, rid="b-1"), sub(it, rid="b-2")])
    assert down.value.what == "broker"
    assert counted("csat_ratings_rejected_total", reason="broker_unavailable", source="s") == refused + 2
    assert store.idem == {}  # both claims released
    pub.down = False
    assert [v.outcome for v in await it.submit([sub(it, rid="b-1")])] == [Outcome.ACCEPTED]


async def test_a_database_outage_publishes_unchecked_unless_told_to_refuse() -> None:
    pub, store = FakePublisher(), MemoryStore()
    store.down = True
    unchecked = counted("csat_collector_idempotency_unchecked_total")
    (verdict,) = await intake(pub, store).submit([sub(intake(pub, store), rid="d-1")])
    assert verdict.outcome is Outcome.ACCEPTED and len(pub.records) == 1
    assert counted("csat_collector_idempotency_unchecked_total") == unchecked + 1
    strict = intake(pub, store, degrade=False)
    with pytest.raises(IntakeUnavailable) as down:
        await strict.submit([sub(strict, rid="d-2")])
    assert down.value.what == "database" and len(pub.records) == 1


async def test_a_concurrent_retry_waits_for_the_first_attempt_then_replays() -> None:
    pub, store, polls = GatedPublisher(), MemoryStore(), Polls(advance=False)
    it = intake(pub, store, polls=polls)
    first = asyncio.create_task(it.submit([sub(it)]))
    await pub.entered.wait()  # the first attempt holds the claim and is publishing
    retry = asyncio.create_task(it.submit([sub(it)]))
    await polls.polled.wait()  # the retry found the id pending and waits
    (other,) = await it.submit([sub(it, score=1)])
    assert other.outcome is Outcome.CONFLICT  # a different body is refused at once
    assert not retry.done()
    pub.gate.set()
    assert [v.outcome for v in await first] == [Outcome.ACCEPTED]
    assert [v.outcome for v in await retry] == [Outcome.REPLAYED]
    assert len(pub.records) == 1


async def test_a_concurrent_retry_takes_over_when_the_first_attempt_fails() -> None:
    pub, store, polls = GatedPublisher(failures=1), MemoryStore(), Polls(advance=False)
    it = intake(pub, store, polls=polls)
    first = asyncio.create_task(it.submit([sub(it)]))
    await pub.entered.wait()
    retry = asyncio.create_task(it.submit([sub(it)]))
    await polls.polled.wait()
    pub.gate.set()
    with pytest.raises(IntakeUnavailable):
        await first
    assert [v.outcome for v in await retry] == [Outcome.ACCEPTED]
    assert len(pub.records) == 1


async def test_the_wait_is_bounded_and_a_stale_claim_is_taken_over() -> None:
    pub, store, polls = FakePublisher(), MemoryStore(), Polls()
    waiting = intake(pub, store, polls=polls, wait_s=0.05, lease_s=60)
    stuck = sub(waiting)
    assert stuck.fingerprint is not None
    await store.claim(claims=[Claim("r-1", "s", stuck.fingerprint)], lease_s=60)  # a crashed replica's claim
    (verdict,) = await waiting.submit([sub(waiting)])
    assert verdict.outcome is Outcome.IN_PROGRESS and not verdict.recorded
    assert "concurrent request" in verdict.refusal
    assert polls.count == 5  # polled until the injected clock passed wait_s, then gave up
    taking_over = intake(pub, store, wait_s=0.05, lease_s=0)
    assert [v.outcome for v in await taking_over.submit([sub(taking_over)])] == [Outcome.ACCEPTED]
    assert len(pub.records) == 1


async def test_confirmations_land_in_batches_off_the_request_and_at_close() -> None:
    pub, store = FakePublisher(), MemoryStore()
    it = intake(pub, store, wait_s=1)
    verdicts = await it.submit([sub(it, rid="c-1"), sub(it, rid="c-2")])
    assert [v.outcome for v in verdicts] == [Outcome.ACCEPTED, Outcome.ACCEPTED]
    assert {r.state for r in store.idem.values()} == {"pending"}  # the answer did not wait for them
    await it.close()
    assert {r.state for r in store.idem.values()} == {"accepted"}
    assert [v.outcome for v in await it.submit([sub(it, rid="c-3")])] == [Outcome.ACCEPTED]
    store.down = True  # a confirmation that cannot land is left to the lease
    await it.close()
    assert store.idem["c-3"].state == "pending"


async def test_confirmations_take_the_configured_delay_and_land_together() -> None:
    pub, store = FakePublisher(), MemoryStore()
    it = Intake(publisher=pub, records=store, topic="t", wait_s=1, lease_s=30, confirm_delay_s=0.2)
    assert it.confirmer.delay_s == 0.2  # CSAT_CONFIRM_DELAY_MS reaches the confirmer
    await it.submit([sub(it, rid="d-1")])
    first = it.confirmer._task
    await it.submit([sub(it, rid="d-2")])
    assert first is not None and it.confirmer._task is first  # one pending flush for both ids
    await first
    assert {rid: r.state for rid, r in store.idem.items()} == {"d-1": "accepted", "d-2": "accepted"}


class GatedStore(MemoryStore):
    """Holds each claim statement until ``gate`` opens; records the ids of every statement."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()
        self.statements: list[list[str]] = []
        self.confirmed_with: list[list[str]] = []  # the confirmations each claim statement carried

    async def claim(
        self, *, claims: Sequence[Claim], lease_s: float, confirm: Sequence[str] = ()
    ) -> dict[str, ClaimState]:
        self.statements.append([c.rating_id for c in claims])
        self.confirmed_with.append(list(confirm))
        self.entered.set()
        await self.gate.wait()
        return await super().claim(claims=claims, lease_s=lease_s, confirm=confirm)


async def test_concurrent_requests_share_one_claim_statement_while_one_is_running() -> None:
    pub, store = FakePublisher(), GatedStore()
    it = intake(pub, store)
    first = asyncio.create_task(it.submit([sub(it, rid="g-0")]))
    await store.entered.wait()  # the first statement is running: the next requests queue behind it
    rest = [asyncio.create_task(it.submit([sub(it, rid=f"g-{i}")])) for i in range(1, 6)]
    await asyncio.sleep(0)
    store.gate.set()
    verdicts = [await first] + [await t for t in rest]
    assert [v.outcome for (v,) in verdicts] == [Outcome.ACCEPTED] * 6
    assert store.statements == [["g-0"], ["g-1", "g-2", "g-3", "g-4", "g-5"]]
    assert len(pub.records) == 6


async def test_the_same_id_from_two_requests_in_one_group_is_published_once() -> None:
    pub, store, polls = (
        FakePublisher(),
        GatedStore(),
        Polls(advance=False),
    )  # the retry waits as long as needed
    it = intake(pub, store, polls=polls)
    blocker = asyncio.create_task(it.submit([sub(it, rid="other")]))
    await store.entered.wait()
    one = asyncio.create_task(it.submit([sub(it, rid="dup")]))
    two = asyncio.create_task(it.submit([sub(it, rid="dup")]))
    changed = asyncio.create_task(it.submit([sub(it, rid="dup", score=1)]))
    await asyncio.sleep(0)
    store.gate.set()
    await blocker
    # The first attempt publishes; the other polls until its confirmation lands, then replays.
    outcomes = sorted([(await one)[0].outcome, (await two)[0].outcome])
    assert store.statements[1] == ["dup"]  # one statement, the id once
    assert outcomes == sorted([Outcome.ACCEPTED, Outcome.REPLAYED])
    assert (await changed)[0].outcome is Outcome.CONFLICT
    assert [r.key for r in pub.records] == [b"c1", b"c1"]  # "other" and "dup", each once


async def test_a_failed_group_statement_reaches_every_request_in_it() -> None:
    pub, store = FakePublisher(), GatedStore()
    it = intake(pub, store, degrade=False)
    first = asyncio.create_task(it.submit([sub(it, rid="f-0")]))
    await store.entered.wait()
    store.down = True
    rest = [asyncio.create_task(it.submit([sub(it, rid=f"f-{i}")])) for i in range(1, 4)]
    await asyncio.sleep(0)
    store.gate.set()
    for task in [first, *rest]:
        with pytest.raises(IntakeUnavailable):
            await task
    assert pub.records == []


async def test_confirmations_ride_on_the_next_claim_statement() -> None:
    pub, store = FakePublisher(), GatedStore()
    store.gate.set()
    it = intake(pub, store, confirm_delay_s=60)  # no confirmation statement of its own within the test
    await it.submit([sub(it, rid="a-1"), sub(it, rid="a-2")])
    assert {r.state for r in store.idem.values()} == {"pending"}
    await it.submit([sub(it, rid="a-3")])
    assert store.confirmed_with == [[], ["a-1", "a-2"]]  # one statement: a-3 claimed, a-1 and a-2 confirmed
    assert {rid: r.state for rid, r in store.idem.items()} == {
        "a-1": "accepted",
        "a-2": "accepted",
        "a-3": "pending",
    }
    await it.close()  # the last confirmation, queued with no claim after it, lands at close
    assert store.idem["a-3"].state == "accepted"


async def test_a_statement_never_confirms_an_id_it_claims_the_confirmation_waits_for_the_next() -> None:
    pub, store = FakePublisher(), GatedStore()
    store.gate.set()
    it = intake(pub, store, wait_s=0.02, confirm_delay_s=60)
    await it.submit([sub(it, rid="x")])
    # The retry's statement claims x while x's confirmation is queued: x stays queued, the retry waits.
    (retry, fresh) = await it.submit([sub(it, rid="x"), sub(it, rid="y")])
    assert (retry.outcome, fresh.outcome) == (Outcome.IN_PROGRESS, Outcome.ACCEPTED)
    assert all("x" not in carried for carried in store.confirmed_with)
    assert store.idem["x"].state == "pending"
    await it.submit([sub(it, rid="z")])  # the next statement without x carries it (and y's)
    assert sorted(store.confirmed_with[-1]) == ["x", "y"]
    assert [v.outcome for v in await it.submit([sub(it, rid="x")])] == [Outcome.REPLAYED]
    assert len(pub.records) == 3  # x, y and z once each
    await it.close()


async def test_a_failed_claim_statement_fails_its_requests_and_drops_its_confirmations_to_the_lease() -> None:
    pub, store = FakePublisher(), GatedStore()
    store.gate.set()
    it = intake(pub, store, degrade=False, confirm_delay_s=60)
    await it.submit([sub(it, rid="k-1")])
    store.down = True
    with pytest.raises(IntakeUnavailable):
        await it.submit([sub(it, rid="k-2")])
    assert store.confirmed_with[-1] == ["k-1"]  # the failed statement carried k-1's confirmation
    store.down = False
    await it.close()  # as a failed confirmation statement: not sent again, the lease settles it
    assert store.idem["k-1"].state == "pending" and "k-2" not in store.idem
    assert len(pub.records) == 1


async def test_confirmations_apart_from_claims_when_switched_off() -> None:
    pub, store = FakePublisher(), GatedStore()
    store.gate.set()
    it = intake(pub, store, confirm_with_claim=False, confirm_delay_s=60)
    await it.submit([sub(it, rid="o-1")])
    await it.submit([sub(it, rid="o-2")])
    assert store.confirmed_with == [[], []]
    assert {r.state for r in store.idem.values()} == {"pending"}
    await it.close()
    assert {r.state for r in store.idem.values()} == {"accepted"}


def test_the_hand_encoded_cloudevent_is_what_the_sdk_encodes_and_decodes_alike() -> None:
    it = intake(FakePublisher(), MemoryStore())
    ratings = [
        sub(it, rid="enc-1").rating,
        sub(it, rid="enc-2").rating.model_copy(update={"revision": 2}),  # a re-click: its own event id
        it.prepare(
            rating(comment='Très bien — ünïcødé "quoted"', segment={"store": "paris-1"}),
            received_at=NOW.replace(microsecond=0),
            source="s",
            rating_id=None,
            keyed=False,
            trust=Trust(KeyKind.PUBLISHABLE, identity_secrets=("x" * 64,)),
        ).rating,
    ]
    for r in ratings:
        for traced in (False, True):
            with tracing.span(tracing.continue_from(None)) if traced else contextlib.nullcontext():
                fast, sdk = to_record_fast(r, topic="t"), to_record(r, topic="t")
            assert (fast.topic, fast.key, fast.value, fast.headers) == (
                sdk.topic,
                sdk.key,
                sdk.value,
                sdk.headers,
            )
            assert any(h == "ce_traceparent" for h, _ in fast.headers) is traced
            # The SDK (the reference) reads the hand-made record as it reads its own.
            ours = ce_kafka.from_binary_event(ce_kafka.KafkaMessage(dict(fast.headers), fast.key, fast.value))
            theirs = ce_kafka.from_binary_event(ce_kafka.KafkaMessage(dict(sdk.headers), sdk.key, sdk.value))
            assert ours.get_attributes() == theirs.get_attributes()
            assert ours.get_data() == theirs.get_data()
            assert decode(headers=fast.headers, key=fast.key, value=fast.value).data == r


# ---- survey link answers: re-clicks -----------------------------------------------------------------
WINDOW = timedelta(minutes=15)


def revisions(pub: FakePublisher) -> list[tuple[int, int, str]]:
    out = []
    for r in pub.records:
        e = decode(headers=r.headers, key=r.key, value=r.value)
        out.append((e.data.score, e.data.revision, e.id))
    return out


async def test_two_concurrent_reclicks_publish_distinct_revisions_in_order() -> None:
    pub, store, polls = GatedPublisher(), MemoryStore(), Polls(advance=False)
    it = intake(pub, store, polls=polls)
    pub.gate.set()
    first = await it.answer_link(sub(it, score=4), window=WINDOW, now=NOW)
    assert (first.outcome, first.revision) == (Outcome.ACCEPTED, 0)
    await it.confirmer.flush()
    store.idem["r-1"].first_accepted_at = NOW  # the fake stamps the wall clock; the test's is NOW
    pub.gate.clear()
    pub.entered.clear()
    one = asyncio.create_task(it.answer_link(sub(it, score=1), window=WINDOW, now=NOW + timedelta(minutes=1)))
    await pub.entered.wait()  # revision 1 is claimed and being published
    two = asyncio.create_task(it.answer_link(sub(it, score=2), window=WINDOW, now=NOW + timedelta(minutes=2)))
    await polls.polled.wait()  # the other change waits: it may not claim the same revision
    assert not two.done()
    pub.gate.set()
    assert ((await one).outcome, (await one).revision) == (Outcome.ACCEPTED, 1)
    assert ((await two).outcome, (await two).revision) == (Outcome.ACCEPTED, 2)
    assert revisions(pub) == [(4, 0, "r-1"), (1, 1, "r-1/r1"), (2, 2, "r-1/r2")]
    await it.confirmer.flush()
    again = await it.answer_link(sub(it, score=2), window=WINDOW, now=NOW + timedelta(hours=1))
    assert (again.outcome, again.revision) == (Outcome.REPLAYED, 2)  # the standing answer, any time
    late = await it.answer_link(sub(it, score=5), window=WINDOW, now=NOW + timedelta(minutes=16))
    assert (late.outcome, late.revision) == (Outcome.CONFLICT, 2)  # the window ran from the first answer
    assert len(pub.records) == 3


async def test_a_link_answer_from_another_source_is_refused_whatever_the_window() -> None:
    pub, store = FakePublisher(), MemoryStore()
    it = intake(pub, store)
    await it.answer_link(sub(it, score=4), window=WINDOW, now=NOW)
    await it.confirmer.flush()
    other = await it.answer_link(sub(it, score=1, source="elsewhere"), window=WINDOW, now=NOW)
    assert other.outcome is Outcome.CONFLICT and len(pub.records) == 1
