"""The intake use case every channel shares: validate -> claim the rating_id -> publish -> answer.

No HTTP here: the JSON API, the email-link page and the SMS webhook call ``Intake.prepare`` and
``Intake.submit`` and only render the ``Verdict`` they get back (the CSV import goes through the JSON
batch API). A 202 is only ever given for a rating the broker acknowledged (acks=all).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Container, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal, Protocol

import structlog

from services.collector import metrics
from services.collector.domain import (
    EncodedRating,
    RatingIn,
    Trust,
    fingerprint,
    normalize,
    normalize_encoded,
    provenance_of,
)
from services.collector.interactions import (
    EncodedInteraction,
    InteractionIn,
    normalize_interaction,
    normalize_interaction_encoded,
)
from services.collector.interactions import fingerprint as interaction_fingerprint
from services.collector.ports import (
    BrokerUnavailable,
    Claim,
    ClaimState,
    IdempotencyRecords,
    Publisher,
    StoreUnavailable,
)
from services.collector.reclick import Answered, SecondAnswer, second_answer
from shared import events as ev
from shared import tracing
from shared.envelope import OutgoingRecord, encode
from shared.events import InteractionRecorded, RatingSubmitted

log = structlog.get_logger(__name__)


class Outcome(StrEnum):
    ACCEPTED = "accepted"  # published now; the broker acknowledged it
    REPLAYED = "replayed"  # accepted earlier with the same content; nothing published again
    CONFLICT = "conflict"  # the rating_id was used before with different content
    IN_PROGRESS = "in_progress"  # a concurrent attempt with this rating_id has not finished yet


class Pending(Protocol):
    """What the intake claims and publishes: a rating or an interaction, under its idempotency key."""

    @property
    def source_id(self) -> str: ...
    @property
    def fingerprint(self) -> bytes | None: ...
    @property
    def key(self) -> str: ...
    def record(self, topic: str) -> OutgoingRecord: ...


@dataclass(frozen=True, slots=True)
class Submission:
    rating: RatingSubmitted
    source_id: str
    fingerprint: bytes | None  # None when the server chose the id: nothing to deduplicate

    @property
    def key(self) -> str:
        return self.rating.rating_id

    @property
    def rating_id(self) -> str:
        return self.rating.rating_id

    @property
    def metric(self) -> str:
        return self.rating.metric.value

    def record(self, topic: str) -> OutgoingRecord:
        return to_record(self.rating, topic=topic)


class EncodedSubmission:
    """A rating normalised straight to its event's bytes (``normalize_encoded``): no model on the way.

    What ``Intake.submit`` needs of a ``Submission`` (id, metric, fingerprint, the record), for the
    JSON API's hot path; a plain class with slots because one is made per rating.
    """

    __slots__ = ("encoded", "source_id")

    def __init__(self, encoded: EncodedRating, source_id: str) -> None:
        self.encoded = encoded
        self.source_id = source_id

    @property
    def fingerprint(self) -> bytes | None:
        return self.encoded.fingerprint

    @property
    def key(self) -> str:
        return self.encoded.rating_id

    @property
    def rating_id(self) -> str:
        return self.encoded.rating_id

    @property
    def metric(self) -> str:
        return self.encoded.metric.value

    def record(self, topic: str) -> OutgoingRecord:
        enc = self.encoded
        return _ce_record(
            topic=topic,
            rating_id=enc.rating_id,
            received_at=enc.received_at,
            key=enc.customer_id.encode(),
            value=enc.value,
        )


#: What the intake takes: a rating as a model (every channel) or as its encoded event (the JSON API).
AnySubmission = Submission | EncodedSubmission


#: Interactions share the idempotency table with ratings; their keys live in their own namespace.
INTERACTION_KEY_PREFIX = "interaction:"


@dataclass(frozen=True, slots=True)
class InteractionSubmission:
    interaction: InteractionRecorded
    source_id: str
    fingerprint: bytes | None

    @property
    def key(self) -> str:
        return INTERACTION_KEY_PREFIX + self.interaction.interaction_id

    @property
    def interaction_id(self) -> str:
        return self.interaction.interaction_id

    def record(self, topic: str) -> OutgoingRecord:
        return interaction_record(self.interaction, topic=topic)


class EncodedInteractionSubmission:
    """An interaction normalised straight to its event's bytes (``normalize_interaction_encoded``).

    What the intake needs of an ``InteractionSubmission`` (key, fingerprint, the record) for the hot
    path of ``POST /v1/interactions`` and its batch; a plain class with slots, one per interaction.
    """

    __slots__ = ("encoded", "source_id")

    def __init__(self, encoded: EncodedInteraction, source_id: str) -> None:
        self.encoded = encoded
        self.source_id = source_id

    @property
    def fingerprint(self) -> bytes | None:
        return self.encoded.fingerprint

    @property
    def key(self) -> str:
        return INTERACTION_KEY_PREFIX + self.encoded.interaction_id

    @property
    def interaction_id(self) -> str:
        return self.encoded.interaction_id

    def record(self, topic: str) -> OutgoingRecord:
        enc = self.encoded
        return _ce_record(
            topic=topic,
            rating_id=enc.interaction_id,
            received_at=enc.received_at,
            key=enc.customer_id.encode(),
            value=enc.value,
            ce_type=_CE_INTERACTION_TYPE,
        )


#: What the interaction intake takes: the event as a model, or as its bytes (the lean path).
AnyInteractionSubmission = InteractionSubmission | EncodedInteractionSubmission


@dataclass(frozen=True, slots=True)
class Verdict:
    """What became of one submitted rating; each channel only renders it (JSON, HTML page, TwiML)."""

    rating_id: str
    outcome: Outcome
    #: The answer's revision: > 0 when a survey re-click replaced an earlier answer (``answer_link``).
    revision: int = 0

    @property
    def recorded(self) -> bool:
        """The broker has this answer, from this request or an earlier one with the same content."""
        return self.outcome in (Outcome.ACCEPTED, Outcome.REPLAYED)

    @property
    def replayed(self) -> bool:
        return self.outcome is Outcome.REPLAYED

    @property
    def refusal(self) -> str:
        """Why a rating that was not recorded was refused, in words a client can act on."""
        if self.outcome is Outcome.CONFLICT:
            return f"rating_id {self.rating_id!r} was already used for a different rating"
        return f"rating_id {self.rating_id!r} is being recorded by a concurrent request; retry shortly"


def _aware_ago(reference: datetime, seconds: float) -> datetime:
    """``seconds`` before the wall clock, in ``reference``'s zone: the lease's edge."""
    return datetime.now(reference.tzinfo) - timedelta(seconds=seconds)


class IntakeUnavailable(RuntimeError):
    """The broker or the database could not take the ratings: nothing was recorded, retry later."""

    def __init__(self, what: Literal["broker", "database"]) -> None:
        super().__init__(f"the {what} is unavailable")
        self.what = what


def event_id(rating: RatingSubmitted) -> str:
    """The CloudEvent id: the rating id, and for a re-click's revision ``<rating_id>/r<revision>``.

    A revision is another event about the same rating (the subject stays the rating id), so it needs
    its own id: consumers that deduplicate by event id must not drop it as a retry.
    """
    return rating.rating_id if not rating.revision else f"{rating.rating_id}/r{rating.revision}"


def to_record(rating: RatingSubmitted, *, topic: str) -> OutgoingRecord:
    """A rating as the CloudEvent published on the ratings topic (keyed by customer for ordering)."""
    return encode(
        topic=topic,
        event_type=ev.RATING_SUBMITTED,
        source="/collector",
        event_id=event_id(rating),
        data=rating,
        key=rating.customer.id,
        subject=rating.rating_id,
        time=rating.received_at,
    )


def interaction_record(interaction: InteractionRecorded, *, topic: str) -> OutgoingRecord:
    """An interaction as the CloudEvent on ``csat.interactions.v1`` (keyed by customer, like ratings)."""
    return encode(
        topic=topic,
        event_type=ev.INTERACTION_RECORDED,
        source="/collector",
        event_id=interaction.interaction_id,
        data=interaction,
        key=interaction.customer.id,
        subject=interaction.interaction_id,
        time=interaction.received_at,
    )


_CE_TYPE = ev.RATING_SUBMITTED.encode()
_CE_INTERACTION_TYPE = ev.INTERACTION_RECORDED.encode()
_CE_SOURCE = b"/collector"
_JSON = b"application/json"
_dump_json = RatingSubmitted.__pydantic_serializer__.to_json


def to_record_fast(rating: RatingSubmitted, *, topic: str) -> OutgoingRecord:
    """``to_record`` without the CloudEvents SDK: the same headers, key and value, written directly.

    The hot path of every rating; ``to_record`` (the SDK) stays the reference, and a test checks the
    SDK decodes both alike.
    """
    return _ce_record(
        topic=topic,
        rating_id=rating.rating_id,
        received_at=rating.received_at,
        key=rating.customer.id.encode(),
        value=_dump_json(rating),
        ce_id=event_id(rating).encode() if rating.revision else None,
    )


def _ce_record(
    *,
    topic: str,
    rating_id: str,
    received_at: datetime,
    key: bytes,
    value: bytes,
    ce_id: bytes | None = None,
    ce_type: bytes = _CE_TYPE,
) -> OutgoingRecord:
    """The binary-mode CloudEvent of a rating (or, with ``ce_type``, an interaction): the SDK's headers,
    in its order, written directly; ``rating_id`` is the event's id and subject.

    A batch's ratings share their receive time and span: their two headers are written once per batch
    (the last ones are remembered), not once per rating.
    """
    global _last_time, _last_span  # one-entry memos (one event loop per process)
    if _last_time[0] is not received_at:
        stamp = received_at.isoformat()
        if stamp.endswith("+00:00"):
            stamp = stamp[:-6] + "Z"
        _last_time = (received_at, ("ce_time", stamp.encode()))
    rid = rating_id.encode()
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", ce_id or rid),  # a re-click's revision has its own event id (``event_id``)
        ("ce_type", ce_type),
        ("ce_source", _CE_SOURCE),
        _last_time[1],
        ("content-type", _JSON),
        ("ce_subject", rid),
    ]
    active = tracing.current()
    if active is not None:
        if _last_span[0] is not active:
            _last_span = (active, ("ce_" + tracing.ATTRIBUTE, active.traceparent.encode()))
        headers.append(_last_span[1])
    return OutgoingRecord(topic=topic, key=key, value=value, headers=headers)


_last_time: tuple[datetime | None, tuple[str, bytes]] = (None, ("ce_time", b""))
_last_span: tuple[tracing.SpanContext | None, tuple[str, bytes]] = (None, ("", b""))


_REFUSAL_REASONS = {Outcome.CONFLICT: "idempotency_conflict", Outcome.IN_PROGRESS: "in_progress"}


class Intake:
    """Publishes each rating_id's first submission once; retries get the first answer back.

    A client-chosen id is claimed (row 'pending') before publishing and confirmed ('accepted') after
    the broker's acknowledgement; a failed publish releases it. A claim left by a crashed replica is
    taken over after ``lease_s``; republishing then is harmless because consumers dedupe on rating_id.
    """

    def __init__(
        self,
        *,
        publisher: Publisher,
        records: IdempotencyRecords,
        topic: str,
        wait_s: float,
        lease_s: float,
        degrade: bool = True,
        max_future_skew: timedelta = timedelta(minutes=5),
        poll_s: float = 0.05,
        group_claims: bool = True,
        claim_inflight: int = 1,
        confirm_delay_s: float = 0.005,
        confirm_with_claim: bool = True,
        fast_encode: bool = True,
        lean: bool = True,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.publisher = publisher
        self.records = records
        self.topic = topic
        self.wait_s = wait_s
        self.lease_s = lease_s
        self.degrade = degrade
        self.max_future_skew = max_future_skew
        self.poll_s = poll_s
        self._sleep = sleep
        self._clock = clock
        ride = confirm_with_claim and group_claims
        self.confirmer = Confirmer(records=records, delay_s=confirm_delay_s, ride=ride)
        self.encode = to_record_fast if fast_encode else to_record
        self.lean = lean and fast_encode
        self.claims = (
            ClaimGroup(
                records=records, max_inflight=claim_inflight, confirmer=self.confirmer if ride else None
            )
            if group_claims
            else None
        )

    def prepare(
        self,
        rating: RatingIn,
        *,
        received_at: datetime,
        source: str,
        rating_id: str | None,
        keyed: bool,
        trust: Trust,
    ) -> Submission:
        """Validate one rating on its scale (raises ``RatingRejected`` naming the field).

        ``keyed``: the id came from the client (or a link), so a retry must be recognised by content.
        ``trust``: what vouches for it; a publishable key's claims are kept apart from the facts.
        """
        event = normalize(
            rating,
            received_at=received_at,
            rating_id=rating_id,
            source=source,
            max_future_skew=self.max_future_skew,
            provenance=provenance_of(rating, trust, now=received_at),
        )
        mark = fingerprint(event, client_occurred_at=rating.occurred_at) if keyed else None
        return Submission(rating=event, source_id=source, fingerprint=mark)

    def prepare_encoded(
        self,
        rating: RatingIn,
        *,
        received_at: datetime,
        source: str,
        rating_id: str | None,
        keyed: bool,
        trust: Trust,
    ) -> AnySubmission:
        """``prepare`` for the JSON API's hot path: the event's bytes without building its model.

        The same checks, refusals, bytes and fingerprint (``normalize_encoded``); ``prepare`` when the
        intake is not ``lean`` (``CSAT_LEAN_NORMALIZE=false``, or the SDK encoder asked for).
        """
        if not self.lean:
            return self.prepare(
                rating, received_at=received_at, source=source, rating_id=rating_id, keyed=keyed, trust=trust
            )
        encoded = normalize_encoded(
            rating,
            received_at=received_at,
            rating_id=rating_id,
            source=source,
            max_future_skew=self.max_future_skew,
            provenance=provenance_of(rating, trust, now=received_at),
            keyed=keyed,
        )
        return EncodedSubmission(encoded, source)

    async def submit(self, items: Sequence[AnySubmission]) -> list[Verdict]:
        """One verdict per item, counted in the metrics; raises ``IntakeUnavailable`` when nothing is safe."""
        try:
            outcomes = await self._publish_once(items)
        except (BrokerUnavailable, StoreUnavailable) as exc:
            broker = isinstance(exc, BrokerUnavailable)
            log.warning(
                "publish_failed" if broker else "idempotency_store_failed", error=str(exc), records=len(items)
            )
            what: Literal["broker", "database"] = "broker" if broker else "database"
            for source, n in Counter(item.source_id for item in items).items():
                metrics.reject(f"{what}_unavailable", source, n)
            raise IntakeUnavailable(what) from exc
        verdicts = []
        # Counted once per label pair, not per rating (a plain dict: a ``Counter`` per request cost more).
        accepted: dict[tuple[str, str], int] = {}
        for item, outcome in zip(items, outcomes, strict=True):
            if outcome is Outcome.ACCEPTED:
                pair = (item.metric, item.source_id)
                accepted[pair] = accepted.get(pair, 0) + 1
            elif outcome in _REFUSAL_REASONS:
                metrics.reject(_REFUSAL_REASONS[outcome], item.source_id)
            verdicts.append(Verdict(rating_id=item.rating_id, outcome=outcome))
        for (metric, source), n in accepted.items():
            metrics.accept(metric, source, n)
        return verdicts

    async def answer_link(self, item: Submission, *, window: timedelta, now: datetime) -> Verdict:
        """A survey link's answer: the first is published; a second is decided by ``reclick.second_answer``.

        The same answer replays; a different one within ``window`` of the first answer is published
        again under the same rating id with the next revision (claimed by compare-and-set on the
        record, so two concurrent changes cannot publish the same revision); after the window it is
        refused (``CONFLICT``). Raises ``IntakeUnavailable`` when nothing is safe.
        """
        assert item.fingerprint is not None, "a link answer is always keyed"
        try:
            outcome, revision = await self._answer_link(item, window=window, now=now)
        except (BrokerUnavailable, StoreUnavailable) as exc:
            broker = isinstance(exc, BrokerUnavailable)
            log.warning("publish_failed" if broker else "idempotency_store_failed", error=str(exc), records=1)
            what: Literal["broker", "database"] = "broker" if broker else "database"
            metrics.reject(f"{what}_unavailable", item.source_id)
            raise IntakeUnavailable(what) from exc
        if outcome is Outcome.ACCEPTED:
            metrics.ACCEPTED.labels(item.rating.metric.value, item.source_id).inc()
        elif outcome in _REFUSAL_REASONS:
            metrics.reject(_REFUSAL_REASONS[outcome], item.source_id)
        return Verdict(rating_id=item.rating.rating_id, outcome=outcome, revision=revision)

    async def _answer_link(
        self, item: Submission, *, window: timedelta, now: datetime
    ) -> tuple[Outcome, int]:
        key, source, mark = item.key, item.source_id, item.fingerprint or b""
        deadline = self._clock() + self.wait_s
        while True:
            states = await self.records.claim(
                claims=[Claim(rating_id=key, source_id=source, fingerprint=mark)], lease_s=self.lease_s
            )
            state = states.get(key, ClaimState.PENDING)
            if state is ClaimState.REPLAY:
                found = await self.records.standing(rating_id=key)
                return Outcome.REPLAYED, found.revision if found is not None else 0
            if state is ClaimState.CLAIMED:
                # A new answer (revision 0), or one taken over after a crash mid-replacement: the record
                # holds the revision it was claimed for.
                found = await self.records.standing(rating_id=key)
                revision = found.revision if found is not None else 0
                return await self._publish_answer(item, revision), revision
            if state is ClaimState.CONFLICT:
                found = await self.records.standing(rating_id=key)
                if found is not None and found.source_id != source:
                    return Outcome.CONFLICT, 0
                expired = found is not None and found.claimed_at < _aware_ago(found.claimed_at, self.lease_s)
                if found is not None and (found.state == "accepted" or expired):
                    first = Answered(
                        fingerprint=found.fingerprint,
                        revision=found.revision,
                        first_accepted_at=found.first_accepted_at or now,
                    )
                    verdict = second_answer(first=first, fingerprint=mark, now=now, window=window)
                    if verdict.kind is SecondAnswer.REFUSE:
                        return Outcome.CONFLICT, found.revision
                    if verdict.kind is SecondAnswer.REPLACE and await self.records.revise(
                        rating_id=key,
                        source_id=source,
                        from_revision=found.revision,
                        fingerprint=mark,
                        lease_s=self.lease_s,
                    ):
                        return await self._publish_answer(item, verdict.revision), verdict.revision
                # Changed meanwhile (another click won the revision) or in flight: look again.
            if self._clock() >= deadline:
                return Outcome.IN_PROGRESS, 0
            await self._sleep(self.poll_s)

    async def _publish_answer(self, item: Submission, revision: int) -> Outcome:
        rating = item.rating.model_copy(update={"revision": revision}) if revision else item.rating
        try:
            await self.publisher.publish([self.encode(rating, topic=self.topic)])
        except Exception:
            if revision == 0:
                await self._release([item.key])
            # A revision's claim is not given back (that would forget the first answer): its lease
            # expires and the same answer again takes it over with the same revision.
            raise
        self.confirmer.add([item.key])
        return Outcome.ACCEPTED

    async def _publish_once(self, items: Sequence[Pending]) -> list[Outcome]:
        """Claim the keyed ids, publish what is new in one round trip, answer the repeats."""
        outcomes: list[Outcome | None] = [None] * len(items)
        direct: list[int] = []
        keyed: list[int] = []
        first: dict[str, int] = {}
        repeats: dict[int, int] = {}  # index of a repeated id in this request -> its first index
        for i, item in enumerate(items):
            if item.fingerprint is None:
                direct.append(i)
            elif item.key in first:
                repeats[i] = first[item.key]
            else:
                first[item.key] = i
                keyed.append(i)

        try:
            claimed = await self._claim(items, keyed, outcomes)
        except StoreUnavailable as exc:
            if not self.degrade:
                raise
            # Ingestion outlives a database outage: publish without the record. Consumers dedupe on
            # rating_id, so a retry is still counted once; only a changed body goes unrefused meanwhile.
            log.warning("idempotency_unchecked", ratings=len(keyed), error=str(exc))
            metrics.UNCHECKED.inc(len(keyed))
            direct = direct + [i for i in keyed if outcomes[i] is None]
            claimed = []
        to_publish = direct + claimed
        if to_publish:
            encode, topic = self.encode, self.topic
            # Ratings take the fast encoder (hand-written CloudEvents); interactions their own record.
            records = [
                encode(item.rating, topic=topic) if isinstance(item, Submission) else item.record(topic)
                for item in (items[i] for i in to_publish)
            ]
            try:
                await self.publisher.publish(records)
            except Exception:
                await self._release([items[i].key for i in claimed])
                raise
            self.confirmer.add([items[i].key for i in claimed])
            for i in to_publish:
                outcomes[i] = Outcome.ACCEPTED
        for i, j in repeats.items():
            same = items[i].fingerprint == items[j].fingerprint and items[i].source_id == items[j].source_id
            earlier = outcomes[j]
            if not same:
                outcomes[i] = Outcome.CONFLICT
            elif earlier in (Outcome.ACCEPTED, Outcome.REPLAYED):
                outcomes[i] = Outcome.REPLAYED
            else:
                outcomes[i] = earlier
        assert all(o is not None for o in outcomes)
        return [o for o in outcomes if o is not None]

    async def _claim(
        self, items: Sequence[Pending], waiting: list[int], outcomes: list[Outcome | None]
    ) -> list[int]:
        """Claim ids; wait (up to ``wait_s``) for concurrent attempts with the same id to finish."""
        claimed: list[int] = []
        deadline = self._clock() + self.wait_s
        while waiting:
            claims = [
                Claim(
                    rating_id=items[i].key,
                    source_id=items[i].source_id,
                    fingerprint=items[i].fingerprint or b"",
                )
                for i in waiting
            ]
            try:
                if self.claims is not None:
                    states = await self.claims.claim(claims=claims, lease_s=self.lease_s)
                else:
                    started = time.perf_counter()
                    states = await self.records.claim(claims=claims, lease_s=self.lease_s)
                    metrics.CLAIM_SECONDS.observe(time.perf_counter() - started)
                    metrics.CLAIM_GROUP_SIZE.observe(len(claims))
            except StoreUnavailable:
                await self._release([items[i].key for i in claimed])
                raise
            still: list[int] = []
            for i in waiting:
                state = states.get(items[i].key, ClaimState.PENDING)
                if state is ClaimState.CLAIMED:
                    claimed.append(i)
                elif state is ClaimState.REPLAY:
                    outcomes[i] = Outcome.REPLAYED
                elif state is ClaimState.CONFLICT:
                    outcomes[i] = Outcome.CONFLICT
                else:
                    still.append(i)
            waiting = still
            if waiting:
                if self._clock() >= deadline:
                    for i in waiting:
                        outcomes[i] = Outcome.IN_PROGRESS
                    break
                await self._sleep(self.poll_s)
        return claimed

    async def close(self) -> None:
        """Land the confirmations still queued (at shutdown)."""
        await self.confirmer.close()

    async def _release(self, rating_ids: list[str]) -> None:
        """Give claims back; if the database is away the lease expiry settles them later."""
        if not rating_ids:
            return
        try:
            await self.records.release(rating_ids=rating_ids)
        except StoreUnavailable as exc:
            log.warning("idempotency_release_failed", ratings=len(rating_ids), error=str(exc))


@dataclass(slots=True)
class _Waiting:
    claims: Sequence[Claim]
    lease_s: float
    answer: asyncio.Future[dict[str, ClaimState]]


class ClaimGroup:
    """Group commit of idempotency claims: the claims of concurrent requests share one statement.

    The way PostgreSQL's WAL group commit works: a request whose claims arrive while ``max_inflight``
    statements are running waits for one of them to finish, then goes with everything that queued
    meanwhile. An idle collector pays no delay (the first claim goes at once); a busy one sends one
    statement per round trip instead of one per request. Each request still gets the states of its own
    ids, so what a claim means is unchanged: when two requests in one group bring the same id, only the
    first takes part and the other hears "pending" and looks again, as it would against a concurrent
    statement.

    With a ``confirmer``, each statement also carries the confirmations queued since the last one (the
    ids of this statement's own claims stay queued for the next): under load confirming costs no
    statement, no transaction and no WAL flush of its own.
    """

    def __init__(
        self,
        *,
        records: IdempotencyRecords,
        max_inflight: int = 1,
        max_batch: int = 5000,
        confirmer: Confirmer | None = None,
    ) -> None:
        self.records = records
        self.confirmer = confirmer
        self.max_inflight = max(1, max_inflight)
        self.max_batch = max_batch
        self._queue: list[_Waiting] = []
        self._inflight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def claim(self, *, claims: Sequence[Claim], lease_s: float) -> dict[str, ClaimState]:
        if not claims:
            return {}
        answer: asyncio.Future[dict[str, ClaimState]] = asyncio.get_running_loop().create_future()
        waiting = _Waiting(claims=claims, lease_s=lease_s, answer=answer)
        if not self._queue and self._inflight < self.max_inflight:
            # Nothing queued and a slot free: this request runs the statement itself (no task).
            self._inflight += 1
            await self._run([waiting])
        else:
            self._queue.append(waiting)
            self._start()
        return await answer

    def _start(self) -> None:
        while self._queue and self._inflight < self.max_inflight:
            group = self._take()
            self._inflight += 1
            task = asyncio.create_task(self._run(group), name="idempotency-claim-group")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _take(self) -> list[_Waiting]:
        """The queued requests with the first one's lease, up to ``max_batch`` claims (at least one)."""
        lease = self._queue[0].lease_s
        group: list[_Waiting] = []
        rest: list[_Waiting] = []
        size = 0
        for waiting in self._queue:
            if waiting.lease_s == lease and (not group or size + len(waiting.claims) <= self.max_batch):
                group.append(waiting)
                size += len(waiting.claims)
            else:
                rest.append(waiting)
        self._queue = rest
        return group

    async def _run(self, group: list[_Waiting]) -> None:
        try:
            unique: dict[str, Claim] = {}
            for waiting in group:
                for c in waiting.claims:
                    unique.setdefault(c.rating_id, c)
            confirm = self.confirmer.take(exclude=unique) if self.confirmer is not None else []
            started = time.perf_counter()
            try:
                if confirm:
                    states = await self.records.claim(
                        claims=list(unique.values()), lease_s=group[0].lease_s, confirm=confirm
                    )
                else:
                    states = await self.records.claim(claims=list(unique.values()), lease_s=group[0].lease_s)
                metrics.CLAIM_SECONDS.observe(time.perf_counter() - started)
                metrics.CLAIM_GROUP_SIZE.observe(len(unique))
            except Exception as exc:  # noqa: BLE001 - every request of the group hears the same failure
                if confirm:
                    # As a failed confirmation statement: the lease settles them (a retry republishes).
                    log.warning("idempotency_confirm_failed", ratings=len(confirm), error=str(exc))
                for waiting in group:
                    if not waiting.answer.done():
                        waiting.answer.set_exception(exc)
                return
            for waiting in group:
                mine = {
                    c.rating_id: states.get(c.rating_id, ClaimState.PENDING)
                    if unique[c.rating_id] is c
                    else ClaimState.PENDING
                    for c in waiting.claims
                }
                if not waiting.answer.done():
                    waiting.answer.set_result(mine)
        finally:
            self._inflight -= 1
            self._start()


class Confirmer:
    """Marks claimed ids accepted in the background, many per statement, off the request's path.

    Until its batch lands a retry sees the id as pending and waits for it (``Intake.wait_s``); if
    the process dies first, the claim expires and a retry republishes, which consumers dedupe.
    ``ride``: the next claim statement takes the queued ids along (``take``); a statement of their own
    goes only when none took them within ``delay_s`` of the oldest one (quiet traffic).
    """

    def __init__(
        self,
        *,
        records: IdempotencyRecords,
        delay_s: float = 0.005,
        max_batch: int = 2000,
        ride: bool = False,
    ) -> None:
        self.records = records
        self.delay_s = delay_s
        self.max_batch = max_batch
        self.ride = ride
        self._pending: list[str] = []
        self._since = 0.0  # loop time the oldest queued id was added at
        self._flushing = False  # the flush task is past its delay, in its statements
        self._task: asyncio.Task[None] | None = None

    def add(self, rating_ids: Sequence[str]) -> None:
        loop = asyncio.get_running_loop()
        if not self._pending:
            self._since = loop.time()
        self._pending.extend(rating_ids)
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._flush_soon(), name="idempotency-confirm")

    def take(self, *, exclude: Container[str]) -> list[str]:
        """The queued ids (up to ``max_batch``) for a claim statement to carry, less those it claims: a
        row is changed once per statement; those stay queued for the next one."""
        if not self._pending:
            return []
        taken: list[str] = []
        kept: list[str] = []
        for rid in self._pending:
            (kept if rid in exclude or len(taken) >= self.max_batch else taken).append(rid)
        self._pending = kept
        return taken

    async def _flush_soon(self) -> None:
        delay = self.delay_s
        while True:
            await asyncio.sleep(delay)
            if not self.ride or not self._pending:
                break
            # Claim statements took the earlier ids: wait out the delay of the oldest still queued.
            delay = self._since + self.delay_s - asyncio.get_running_loop().time()
            if delay <= 0:
                break
        self._flushing = True
        try:
            await self.flush()
        finally:
            self._flushing = False

    async def flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            try:
                await self.records.confirm(rating_ids=batch)
            except StoreUnavailable as exc:
                log.warning("idempotency_confirm_failed", ratings=len(batch), error=str(exc))

    async def close(self) -> None:
        """Land what is queued now: a flush still waiting out its delay is cut short, one under way ends."""
        if self._task is not None and not self._task.done():
            if not self._flushing:
                self._task.cancel()
            await asyncio.wait([self._task])  # its end, without raising its cancellation into close
        await self.flush()


class InteractionIntake(Intake):
    """The same claim -> publish (acks=all) -> confirm path for interactions, on their own topic.

    Interaction ids are claimed in the ratings' idempotency table under ``interaction:<id>``, so a
    retried interaction is published once and the same id with other content is refused (409).
    """

    def prepare_interaction(
        self,
        interaction: InteractionIn,
        *,
        received_at: datetime,
        source: str,
        interaction_id: str | None,
        origin: str | None = None,
    ) -> InteractionSubmission:
        """Normalise one interaction (raises ``InteractionRejected`` naming the field)."""
        event = normalize_interaction(
            interaction,
            received_at=received_at,
            interaction_id=interaction_id,
            source=origin or source,
            max_future_skew=self.max_future_skew,
        )
        keyed = bool(interaction.interaction_id or interaction_id)
        mark = interaction_fingerprint(event, client_occurred_at=interaction.occurred_at) if keyed else None
        return InteractionSubmission(interaction=event, source_id=source, fingerprint=mark)

    def prepare_interaction_encoded(
        self,
        interaction: InteractionIn,
        *,
        received_at: datetime,
        source: str,
        interaction_id: str | None,
        origin: str | None = None,
    ) -> AnyInteractionSubmission:
        """``prepare_interaction`` for the hot path: the event's bytes without building its model.

        The same check, refusal, bytes and fingerprint (``normalize_interaction_encoded``); the model
        path when the intake is not ``lean`` (``CSAT_LEAN_NORMALIZE=false`` or the SDK encoder asked
        for) or for a value the lean writer leaves to it.
        """
        if self.lean:
            encoded = normalize_interaction_encoded(
                interaction,
                received_at=received_at,
                interaction_id=interaction_id,
                source=origin or source,
                max_future_skew=self.max_future_skew,
                keyed=bool(interaction.interaction_id or interaction_id),
            )
            if encoded is not None:
                return EncodedInteractionSubmission(encoded, source)
        return self.prepare_interaction(
            interaction, received_at=received_at, source=source, interaction_id=interaction_id, origin=origin
        )

    async def submit_interactions(self, items: Sequence[AnyInteractionSubmission]) -> list[Verdict]:
        """One verdict per interaction (its ``rating_id`` is the interaction id); or ``IntakeUnavailable``."""
        try:
            outcomes = await self._publish_once(items)
        except (BrokerUnavailable, StoreUnavailable) as exc:
            broker = isinstance(exc, BrokerUnavailable)
            log.warning(
                "publish_failed" if broker else "idempotency_store_failed", error=str(exc), records=len(items)
            )
            raise IntakeUnavailable("broker" if broker else "database") from exc
        counted: Counter[tuple[str, str]] = Counter()  # one ``labels()`` lookup per pair, not per item
        for item, outcome in zip(items, outcomes, strict=True):
            counted[outcome.value, item.source_id] += 1
        for (outcome_name, source), n in counted.items():
            metrics.INTERACTIONS.labels(outcome_name, source).inc(n)
        return [
            Verdict(rating_id=item.interaction_id, outcome=outcome)
            for item, outcome in zip(items, outcomes, strict=True)
        ]
