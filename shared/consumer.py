"""The consumer loop every service uses: micro-batches, results and offsets in one DB transaction.

Per batch: lock this group's stored offsets (fencing) and move them past the batch in the same
statement, skip records already applied (against the offsets from before the move), decode the rest
(undecodable ones go to the dead-letter topic with their reason), let the handler write its results
in the same transaction and return the events to publish, publish them (acks=all), commit. A crash
anywhere before the commit leaves nothing behind; a crash after leaves results and offsets together.
Published events are at-least-once with deterministic ids, so consumers downstream dedupe them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import msgspec
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared import events as ev
from shared import metrics as m
from shared import tracing
from shared.db import OffsetStore
from shared.envelope import DecodeError, Envelope, OutgoingRecord, decode, encode
from shared.kafka import send_all

log = structlog.get_logger(__name__)

#: Records fetched or decoded between two yields to the event loop (under a millisecond of work: each
#: statement of the running transaction waits for the slice in progress before its answer is read).
_SLICE = 100

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    KafkaError,
    OSError,
    asyncio.TimeoutError,
    ConnectionError,
)


class Received(msgspec.Struct, frozen=True, kw_only=True):
    """One decoded record with its position (a msgspec struct: cheap to make, one per record)."""

    envelope: Envelope
    topic: str
    partition: int
    offset: int


Handler = Callable[[AsyncConnection, Sequence[Received]], Awaitable[list[OutgoingRecord]]]


@dataclass(slots=True)
class _Batch:
    """One micro-batch sorted against the stored offsets (the handler may add to ``dead``)."""

    fresh: list[Received]
    dead: list[OutgoingRecord]
    skipped: int
    next_offsets: dict[str, dict[int, int]]


class RawRecord(Protocol):
    """What the loop reads from an aiokafka ConsumerRecord (aiokafka ships no type hints)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


#: A record's envelope, or the reason it goes to the dead-letter topic. Runs outside the transaction,
#: overlapping the previous batch's; the default is ``shared.envelope.decode``.
Decoder = Callable[[RawRecord], Envelope | str]


# SQLSTATE classes that say "the database is away or busy, try again": connection exceptions (08, e.g.
# 08003 "connection was closed in the middle of operation"), transaction rollbacks such as deadlocks
# and serialisation failures (40), insufficient resources (53) and operator intervention (57P01 admin
# shutdown, 57P03 "the database system is shutting down / starting up").
TRANSIENT_SQLSTATES = ("08", "40", "53", "57P")


def _sqlstate(exc: DBAPIError) -> str | None:
    """The SQLSTATE of a driver error (SQLAlchemy's asyncpg adapter copies it onto ``orig``)."""
    for err in (exc.orig, getattr(exc.orig, "__cause__", None)):
        code = getattr(err, "sqlstate", None) or getattr(err, "pgcode", None)
        if isinstance(code, str):
            return code
    return None


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        code = _sqlstate(exc)
        if code is not None and code.startswith(TRANSIENT_SQLSTATES):
            return True
    return isinstance(exc, TRANSIENT_ERRORS)


def is_transient(exc: BaseException) -> bool:
    """A database or broker error worth retrying (connection lost, timeout), as opposed to a bug."""
    return _is_transient(exc)


#: Every value ``_reason_kind`` can return; the DLQ counter starts at 0 for each so that alerts on its
#: increase also see the first dead letter.
DLQ_REASON_KINDS = (
    "missing_ce_type",
    "invalid_cloudevent",
    "unknown_event_type",
    "not_a_json_object",
    "invalid_data",
    "handler_error",
)


def _reason_kind(reason: str) -> str:
    """Bounded label for the DLQ metric: the first words of a reason, never its data."""
    if reason.startswith("event data is not a JSON object"):
        return "not_a_json_object"  # the wording DecodeError uses
    for kind in ("missing ce_type", "invalid CloudEvent", "unknown event type", "not a JSON object"):
        if reason.startswith(kind):
            return kind.replace(" ", "_").lower()
    if reason.startswith("invalid "):
        return "invalid_data"
    return "handler_error"


class _SeekFromDatabase(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    """On assignment, position each partition at the offset stored with the results."""

    def __init__(self, loop: TransactionalConsumer) -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        log.info("partitions_revoked", consumer=self._loop.name, count=len(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._loop.seek_to_stored(assigned)


class TransactionalConsumer:
    """Consume ``topics`` in micro-batches with exactly-once effects in PostgreSQL."""

    def __init__(
        self,
        *,
        name: str,
        topics: Sequence[str],
        group: str,
        engine: AsyncEngine,
        consumer_factory: Callable[[], AIOKafkaConsumer],
        producer: AIOKafkaProducer,
        dlq_topic: str,
        handler: Handler,
        max_batch: int = 1000,
        publish_timeout_s: float = 10.0,
        kafka_commit_interval_s: float = 1.0,
        decoder: Decoder | None = None,
        top_up: bool = False,
        min_batch_interval_s: float = 0.0,
    ) -> None:
        self.name = name
        self.topics = list(topics)
        self.group = group
        self._engine = engine
        self._consumer_factory = consumer_factory
        self._consumer: AIOKafkaConsumer | None = None
        self._producer = producer
        self._dlq_topic = dlq_topic
        self._handler = handler
        self._decoder: Decoder = decoder or self._decode
        self._max_batch = max_batch
        self._publish_timeout_s = publish_timeout_s
        self._offsets = OffsetStore(group=group)
        self._kafka_commit_interval_s = kafka_commit_interval_s
        self._top_up = top_up
        self._min_batch_interval_s = min_batch_interval_s
        self._batch_started = 0.0
        self._kafka_progress: dict[TopicPartition, int] = {}
        self._kafka_committed_at = 0.0
        self._stopping = asyncio.Event()
        self.running = False
        self.last_batch_at: float | None = None
        self.processed = 0
        for kind in DLQ_REASON_KINDS:
            m.DLQ_RECORDS.labels(name, kind)
        for outcome in ("processed", "skipped", "dead_lettered"):
            m.CONSUMER_RECORDS.labels(name, outcome)
        for error in ("database", "broker", "handler"):
            m.CONSUMER_ERRORS.labels(name, error)

    # ---- lifecycle -------------------------------------------------------------------------------
    async def run(self) -> None:
        """Start the Kafka consumer (retrying while the broker is away) and process until stopped."""
        backoff = 0.5
        while not self._stopping.is_set():
            consumer = self._consumer_factory()
            try:
                await asyncio.wait_for(consumer.start(), 15)
            except (TimeoutError, KafkaError, OSError) as exc:
                m.CONSUMER_ERRORS.labels(self.name, "broker").inc()
                log.warning("consumer_start_failed", consumer=self.name, error=type(exc).__name__)
                await _stop_quietly(consumer)
                await self._sleep(backoff)
                backoff = min(backoff * 2, 10)
                continue
            self._consumer = consumer
            consumer.subscribe(self.topics, listener=_SeekFromDatabase(self))
            self.running = True
            log.info("consumer_started", consumer=self.name, topics=self.topics, group=self.group)
            try:
                await self._loop(consumer)
            finally:
                self.running = False
                self._consumer = None
                await _stop_quietly(consumer)
            return

    async def stop(self) -> None:
        self._stopping.set()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def seek_to_stored(self, assigned: Sequence[TopicPartition]) -> None:
        consumer = self._consumer
        if consumer is None or not assigned:
            return
        by_topic: dict[str, list[int]] = defaultdict(list)
        for tp in assigned:
            by_topic[tp.topic].append(tp.partition)
        backoff = 0.5
        while True:
            try:
                ends = await asyncio.wait_for(consumer.end_offsets(list(assigned)), 15)
                # An explicit position, not seek_to_beginning(): that one resets lazily, after the
                # fetcher may already have handed out records, which then came back a second time.
                starts = await asyncio.wait_for(consumer.beginning_offsets(list(assigned)), 15)
                async with self._engine.begin() as conn:
                    for topic, parts in by_topic.items():
                        await self._seek_topic(
                            conn, consumer, topic=topic, partitions=parts, ends=ends, starts=starts
                        )
                log.info("partitions_assigned", consumer=self.name, count=len(assigned))
                return
            except Exception as exc:
                if not _is_transient(exc) or self._stopping.is_set():
                    raise
                m.CONSUMER_ERRORS.labels(self.name, "database").inc()
                log.warning("offset_load_failed", consumer=self.name, error=type(exc).__name__)
                await self._sleep(backoff)
                backoff = min(backoff * 2, 10)

    async def _seek_topic(
        self,
        conn: AsyncConnection,
        consumer: AIOKafkaConsumer,
        *,
        topic: str,
        partitions: Sequence[int],
        ends: Mapping[TopicPartition, int],
        starts: Mapping[TopicPartition, int],
    ) -> None:
        """Position each partition at its stored next offset, kept within the log's current bounds."""
        stored = await self._offsets.load(conn, topic=topic, partitions=partitions)
        for p in partitions:
            tp = TopicPartition(topic, p)
            end = ends.get(tp)
            if p in stored and end is not None and stored[p] > end:
                # The log is shorter than what we applied: the topic was recreated.
                log.warning(
                    "stored_offset_beyond_log_end",
                    consumer=self.name,
                    topic=topic,
                    partition=p,
                    stored=stored[p],
                    end=end,
                )
                await self._offsets.reset(conn, topic=topic, partition=p)
                stored.pop(p)
            begin = starts.get(tp, 0)
            if stored.get(p, begin) < begin:
                log.warning(
                    "stored_offset_before_log_start",
                    consumer=self.name,
                    topic=topic,
                    partition=p,
                    stored=stored[p],
                    start=begin,
                )
            consumer.seek(tp, max(stored.get(p, begin), begin))

    # ---- the loop --------------------------------------------------------------------------------
    async def _loop(self, consumer: AIOKafkaConsumer) -> None:
        """Fetch and decode the next batch while the previous one's transaction runs (two cores busy).

        Transactions stay strictly sequential: batch k+1 starts only after batch k committed.
        Fetching (aiokafka unpacks records on the event loop) and decoding are pure CPU work, done
        in slices that yield to the event loop between them: in one piece they held up the running
        transaction's statements for as long, and the database sat idle meanwhile.
        """
        inflight: asyncio.Task[None] | None = None
        inflight_records: Sequence[RawRecord] = ()
        try:
            while not self._stopping.is_set():
                try:
                    batch = await consumer.getmany(timeout_ms=200, max_records=min(self._max_batch, _SLICE))
                except KafkaError as exc:
                    m.CONSUMER_ERRORS.labels(self.name, "broker").inc()
                    log.warning("fetch_failed", consumer=self.name, error=type(exc).__name__)
                    await self._sleep(1)
                    continue
                records = [r for rs in batch.values() for r in rs]
                await self._fetch_more(consumer, records)
                decoded: list[Envelope | str] = []
                for start in range(0, len(records), _SLICE):
                    if start:
                        await asyncio.sleep(0)
                    decoded += [self._decoder(r) for r in records[start : start + _SLICE]]
                if inflight is not None:
                    await inflight
                    inflight = None
                    await self._after_batch(consumer, inflight_records)
                    if self._top_up and len(records) < self._max_batch:
                        # What arrived while the previous transaction ran joins this batch now instead
                        # of waiting a whole cycle: bigger batches under load, lower latency, no wait.
                        more = await self._fetch_now(consumer, self._max_batch - len(records))
                        records += more
                        decoded += [self._decoder(r) for r in more]
                if records:
                    await self._pace(consumer, records, decoded)
                    self._batch_started = time.monotonic()
                    inflight = asyncio.create_task(self._process_with_retry(records, decoded))
                    inflight_records = records
                self.last_batch_at = time.monotonic()
        finally:
            if inflight is not None:
                await inflight
                await self._after_batch(consumer, inflight_records)
            if self._kafka_progress:
                await self._commit_to_kafka(consumer)

    async def _fetch_more(self, consumer: AIOKafkaConsumer, records: list[RawRecord]) -> None:
        """Top ``records`` up to a full batch from what the fetcher already holds, a slice at a time."""
        while records and len(records) < self._max_batch:
            await asyncio.sleep(0)
            try:
                more = await consumer.getmany(
                    timeout_ms=0, max_records=min(_SLICE, self._max_batch - len(records))
                )
            except KafkaError as exc:
                # The records taken so far are processed; the next fetch retries the partition.
                log.warning("fetch_failed", consumer=self.name, error=type(exc).__name__)
                return
            if not more:
                return
            records.extend(r for rs in more.values() for r in rs)

    async def _pace(
        self, consumer: AIOKafkaConsumer, records: list[RawRecord], decoded: list[Envelope | str]
    ) -> None:
        """Start batches at most once per ``min_batch_interval_s``; what arrives meanwhile joins this one.

        A record after a quiet spell starts its batch at once (the last one started long ago); under
        load the transactions per second are capped, so each batch holds ``rate x interval`` records
        or more and what a batch costs (its round trips, its commit) is shared by more records.
        """
        wait = self._batch_started + self._min_batch_interval_s - time.monotonic()
        if wait <= 0 or len(records) >= self._max_batch:
            return
        await self._sleep(wait)
        more = await self._fetch_now(consumer, self._max_batch - len(records))
        records += more
        decoded += [self._decoder(r) for r in more]

    async def _fetch_now(self, consumer: AIOKafkaConsumer, limit: int) -> list[RawRecord]:
        """Records already fetched, without waiting (empty if the broker is away)."""
        try:
            batch = await consumer.getmany(timeout_ms=0, max_records=limit)
        except KafkaError:
            return []
        return [r for rs in batch.values() for r in rs]

    async def _after_batch(self, consumer: AIOKafkaConsumer, records: Sequence[RawRecord]) -> None:
        done = _next_offsets(records)
        self._update_lag(consumer, done)
        for tp, next_offset in done.items():
            self._kafka_progress[tp] = max(self._kafka_progress.get(tp, 0), next_offset)
        if time.monotonic() - self._kafka_committed_at >= self._kafka_commit_interval_s:
            await self._commit_to_kafka(consumer)

    @staticmethod
    def _decode(record: RawRecord) -> Envelope | str:
        """The envelope, or the reason it cannot be used (pure CPU: done outside the transaction)."""
        try:
            return decode(headers=record.headers, key=record.key, value=record.value)
        except DecodeError as exc:
            return str(exc)

    async def _process_with_retry(
        self, records: Sequence[RawRecord], decoded: Sequence[Envelope | str] | None = None
    ) -> None:
        decoded = decoded if decoded is not None else [self._decoder(r) for r in records]
        backoff = 0.2
        isolate = False
        while True:
            try:
                await self._process(records, decoded, isolate=isolate)
                return
            except Exception as exc:
                if self._stopping.is_set():
                    raise
                if _is_transient(exc):
                    kind = "broker" if isinstance(exc, KafkaError) else "database"
                    m.CONSUMER_ERRORS.labels(self.name, kind).inc()
                    log.warning("batch_retry", consumer=self.name, error=type(exc).__name__, backoff=backoff)
                    await self._sleep(backoff)
                    backoff = min(backoff * 2, 10)
                    continue
                if isolate:
                    raise
                m.CONSUMER_ERRORS.labels(self.name, "handler").inc()
                log.error("batch_failed_isolating", consumer=self.name, error=type(exc).__name__)
                isolate = True

    async def _process(
        self, records: Sequence[RawRecord], decoded: Sequence[Envelope | str], *, isolate: bool
    ) -> None:
        started = time.perf_counter()
        async with self._engine.begin() as conn:
            stored = await self._lock_offsets(conn, records)
            batch = self._triage(records, decoded, stored)
            outgoing = await self._handle(conn, records, batch, isolate=isolate)
            await send_all(self._producer, [*batch.dead, *outgoing], timeout_s=self._publish_timeout_s)
        self._observe(batch, size=len(records), elapsed=time.perf_counter() - started)
        self.processed += len(batch.fresh)

    async def _lock_offsets(
        self, conn: AsyncConnection, records: Sequence[RawRecord]
    ) -> dict[tuple[str, int], int]:
        """Stored next offsets of the batch's partitions, row-locked until commit (fences a stale member)
        and moved past the batch's last record in the same statement, whatever its topics (the actions
        consumer's batches mix five): the move commits with the effects or not at all. The value moved to
        is what ``_triage``'s ``next_offsets`` gives (the last record not applied already, + 1)."""
        ends: dict[str, dict[int, int]] = defaultdict(dict)
        for r in records:
            held = ends[r.topic].get(r.partition, 0)
            ends[r.topic][r.partition] = max(held, r.offset + 1)
        return await self._offsets.lock_and_advance(conn, next_offsets=ends)

    def _triage(
        self,
        records: Sequence[RawRecord],
        decoded: Sequence[Envelope | str],
        stored: Mapping[tuple[str, int], int],
    ) -> _Batch:
        """Sort a batch against the stored offsets: applied already, undecodable, or to handle.

        A record the batch holds twice is handled once: aiokafka can hand a partition's records a second
        time from a fetch answered while they were being taken (seen with Tansu when a batch waited out
        its pacing interval: one wave of records twice in the same batch), and the stored offsets only
        fence what earlier transactions applied, not a repeat inside this one.
        """
        fresh: list[Received] = []
        dead: list[OutgoingRecord] = []
        skipped = 0
        last: dict[tuple[str, int], int] = {}
        taken: set[tuple[str, int, int]] = set()
        for r, env in zip(records, decoded, strict=True):
            topic, part, offset = r.topic, r.partition, r.offset
            if offset < stored.get((topic, part), 0) or (topic, part, offset) in taken:
                skipped += 1
                continue
            taken.add((topic, part, offset))
            tp = (topic, part)
            last[tp] = max(last.get(tp, -1), offset)
            if isinstance(env, str):
                dead.append(self._dead_letter(r, env))
                continue
            fresh.append(Received(envelope=env, topic=topic, partition=part, offset=offset))
        next_offsets: dict[str, dict[int, int]] = defaultdict(dict)
        for (topic, part), offset in last.items():
            next_offsets[topic][part] = offset + 1
        return _Batch(fresh=fresh, dead=dead, skipped=skipped, next_offsets=next_offsets)

    async def _handle(
        self, conn: AsyncConnection, records: Sequence[RawRecord], batch: _Batch, *, isolate: bool
    ) -> list[OutgoingRecord]:
        """The handler's output for the fresh records: one call, or one savepoint each to isolate a failure.

        While isolating, a record whose handler fails (not transiently) goes to ``batch.dead``.
        """
        fresh = batch.fresh
        traces = {
            id(item.envelope.data): item.envelope.extensions for item in fresh if item.envelope.extensions
        }
        if fresh and not isolate:
            with tracing.batch(traces):
                return await self._handler(conn, fresh)
        outgoing: list[OutgoingRecord] = []
        for item in fresh:
            savepoint = await conn.begin_nested()
            try:
                with tracing.batch(traces):
                    outgoing.extend(await self._handler(conn, [item]))
                await savepoint.commit()
            except Exception as exc:
                await savepoint.rollback()
                if _is_transient(exc):
                    raise
                raw = _raw_for(records, item)
                batch.dead.append(self._dead_letter(raw, f"handler error: {type(exc).__name__}: {exc}"))
        return outgoing

    def _observe(self, batch: _Batch, *, size: int, elapsed: float) -> None:
        m.CONSUMER_BATCH_SECONDS.labels(self.name).observe(elapsed)
        m.CONSUMER_BATCH_SIZE.labels(self.name).observe(size)
        m.CONSUMER_RECORDS.labels(self.name, "processed").inc(len(batch.fresh))
        if batch.skipped:
            m.CONSUMER_RECORDS.labels(self.name, "skipped").inc(batch.skipped)
        if batch.dead:
            m.CONSUMER_RECORDS.labels(self.name, "dead_lettered").inc(len(batch.dead))
        now = datetime.now(UTC)
        for item in batch.fresh[:: max(1, len(batch.fresh) // 20)]:
            if item.envelope.time is not None:
                m.EVENT_PROCESSING_LATENCY.labels(self.name).observe(
                    max(0.0, (now - item.envelope.time).total_seconds())
                )

    def _dead_letter(self, record: RawRecord, reason: str) -> OutgoingRecord:
        topic, part, offset = record.topic, record.partition, record.offset
        key: bytes | None = record.key
        value: bytes | None = record.value
        headers = {k: v.decode("utf-8", "replace") for k, v in record.headers}
        m.DLQ_RECORDS.labels(self.name, _reason_kind(reason)).inc()
        letter = ev.DeadLetter(
            consumer=self.name,
            reason=reason[:2000],
            topic=topic,
            partition=part,
            offset=offset,
            key=key.decode("utf-8", "replace") if key is not None else None,
            value_b64=base64.b64encode(value or b"").decode(),
            headers=headers,
            failed_at=datetime.now(UTC),
        )
        # The dead letter (and its log line) stays in the trace of the record that failed.
        with tracing.span(tracing.continue_from(headers.get(f"ce_{tracing.ATTRIBUTE}"))):
            log.warning(
                "dead_lettered",
                consumer=self.name,
                topic=topic,
                partition=part,
                offset=offset,
                reason=reason[:200],
            )
            return encode(
                topic=self._dlq_topic,
                event_type=ev.DEAD_LETTER,
                source=f"/{self.name}",
                event_id=f"{self.name}:{topic}:{part}:{offset}",
                data=letter,
                key=f"{topic}:{part}",
                extensions={"dlqreason": _reason_kind(reason)},
            )

    def _update_lag(self, consumer: AIOKafkaConsumer, done: dict[TopicPartition, int]) -> None:
        for tp, next_offset in done.items():
            high = consumer.highwater(tp)
            if high is not None:
                m.CONSUMER_LAG.labels(self.name, tp.topic, str(tp.partition)).set(max(0, high - next_offset))

    async def _commit_to_kafka(self, consumer: AIOKafkaConsumer) -> None:
        """Mirror progress to Kafka so standard lag tools (and KEDA) see it; the database stays the truth.

        At most once per ``kafka_commit_interval_s``: a broker round trip per micro-batch would cost
        more than the batch itself at high rates.
        """
        owned = consumer.assignment()
        offsets = {tp: o for tp, o in self._kafka_progress.items() if tp in owned}
        self._kafka_progress.clear()
        self._kafka_committed_at = time.monotonic()
        if not offsets:
            return
        try:
            await asyncio.wait_for(consumer.commit(offsets), 5)
        except (TimeoutError, KafkaError) as exc:
            log.info("kafka_commit_skipped", consumer=self.name, error=type(exc).__name__)


def _next_offsets(records: Sequence[RawRecord]) -> dict[TopicPartition, int]:
    """Next offset per partition after ``records`` (each partition's records arrive in offset order)."""
    last: dict[tuple[str, int], int] = {}
    for r in records:
        last[(r.topic, r.partition)] = r.offset
    return {TopicPartition(t, p): o + 1 for (t, p), o in last.items()}


def _raw_for(records: Sequence[RawRecord], item: Received) -> RawRecord:
    for r in records:
        if (r.topic, r.partition, r.offset) == (item.topic, item.partition, item.offset):
            return r
    raise LookupError("record vanished from its batch")


async def _stop_quietly(client: AIOKafkaConsumer | AIOKafkaProducer) -> None:
    try:
        await asyncio.wait_for(client.stop(), 10)
    except Exception as exc:  # noqa: BLE001 - stopping a client that never started raises varied errors
        log.debug("client_stop_failed", error=type(exc).__name__)
