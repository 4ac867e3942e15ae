"""The Kafka adapter of the ``Publisher`` port: an aiokafka producer with acks=all, time-bounded."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence

import structlog
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Histogram

from services.collector.ports import BrokerUnavailable
from shared.envelope import OutgoingRecord
from shared.kafka import make_producer, send_all

log = structlog.get_logger(__name__)

PUBLISH_SECONDS = Histogram(
    "csat_collector_publish_duration_seconds",
    "Time from handing records to the producer to the broker's acks=all acknowledgement",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BROKER_ERRORS = Counter(
    "csat_collector_broker_errors_total",
    "Publishes that failed because the broker was unreachable or too slow, by kind",
    ["kind"],
)


#: What ``_send_many`` uses of aiokafka's internals (0.14, pinned in uv.lock): if a release moves any of
#: it, the collector sends through the public ``send`` instead (tests/integration/test_collector_broker.py
#: fails meanwhile, so the change is seen).
_INTERNALS = ("_message_accumulator", "_metadata", "_partitioner", "_request_timeout_ms", "_serialize")


def lean_send_possible(producer: AIOKafkaProducer) -> bool:
    return all(hasattr(producer, name) for name in _INTERNALS) and hasattr(
        producer._message_accumulator, "add_message"
    )


async def _send_many(producer: AIOKafkaProducer, records: Sequence[OutgoingRecord]) -> None:
    """``send_all`` for a batch's records: what ``producer.send`` does per record, minus what repeats.

    The topic's metadata is awaited and its partition lists read once, each record goes to the
    accumulator with the partition the producer's own partitioner chooses from them (same keys, same
    partitions as ``send``) after the size check ``send`` makes, and the acknowledgements are awaited in
    turn instead of through ``gather``: about a quarter of aiokafka's CPU per record. Every record's
    acks=all acknowledgement is still awaited.
    """
    metadata = producer._metadata  # private: see _INTERNALS
    partitions: dict[str, tuple[list[int], list[int]]] = {}
    for topic in {r.topic for r in records}:
        await producer.client._wait_on_metadata(topic)  # private: see _INTERNALS
        partitions[topic] = (
            list(metadata.partitions_for_topic(topic)),
            list(metadata.available_partitions_for_topic(topic)),
        )
    accumulate = producer._message_accumulator.add_message  # private: see _INTERNALS
    choose = producer._partitioner  # private: see _INTERNALS
    serialize = producer._serialize  # private: see _INTERNALS
    wait_s = producer._request_timeout_ms / 1000  # private: see _INTERNALS
    tps: dict[tuple[str, int], TopicPartition] = {}
    futures: list[asyncio.Future[object]] = []
    try:
        for r in records:
            key, value = serialize(r.key, r.value, r.headers)
            every, available = partitions[r.topic]
            where = (r.topic, choose(key, every, available))
            tp = tps.get(where)
            if tp is None:
                tp = tps[where] = TopicPartition(*where)
            futures.append(await accumulate(tp, key, value, wait_s, headers=r.headers))
        for future in futures:
            await future
    finally:
        for future in futures:  # after a failure, the others' outcomes are read (no "never retrieved")
            if future.done() and not future.cancelled():
                future.exception()
            elif not future.done():
                future.add_done_callback(_read_outcome)


def _read_outcome(future: asyncio.Future[object]) -> None:
    if not future.cancelled():
        future.exception()


class KafkaPublisher:
    """Owns the producer; connects in the background so the API starts even while the broker is away."""

    def __init__(
        self,
        *,
        bootstrap: str,
        idempotence: bool,
        timeout_s: float,
        request_timeout_s: float = 5.0,
        linger_ms: int = 2,
    ) -> None:
        self._bootstrap = bootstrap
        self._idempotence = idempotence
        self._timeout_s = timeout_s
        self._request_timeout_s = request_timeout_s
        self._linger_ms = linger_ms
        self._producer: AIOKafkaProducer | None = None
        self._lean = False  # ``_send_many``, once the connected producer is known to allow it
        self._connector: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        self._connector = asyncio.create_task(self._connect_loop(), name="producer-connect")
        # Give a healthy broker a moment so the first requests do not see 503.
        await asyncio.wait([self._connector], timeout=5)

    async def _connect_loop(self) -> None:
        backoff = 0.25
        while not self._closing:
            producer = make_producer(
                bootstrap=self._bootstrap,
                client_id="csat-collector",
                idempotence=self._idempotence,
                request_timeout_s=self._request_timeout_s,
                linger_ms=self._linger_ms,
            )
            try:
                await asyncio.wait_for(producer.start(), 10)
            except (TimeoutError, KafkaError, OSError) as exc:
                BROKER_ERRORS.labels("connect").inc()
                log.warning("producer_connect_failed", error=type(exc).__name__, retry_in_s=backoff)
                with contextlib.suppress(TimeoutError, KafkaError, OSError):
                    await asyncio.wait_for(producer.stop(), 5)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5)
                continue
            self._producer = producer
            self._lean = lean_send_possible(producer)
            log.info("producer_connected", lean_send=self._lean)
            return

    async def stop(self) -> None:
        self._closing = True
        if self._connector is not None:
            self._connector.cancel()
        if self._producer is not None:
            try:
                await asyncio.wait_for(self._producer.stop(), 10)
            except (TimeoutError, KafkaError, OSError) as exc:
                log.warning("producer_stop_failed", error=type(exc).__name__)

    async def publish(self, records: Sequence[OutgoingRecord]) -> None:
        producer = self._producer
        if producer is None:
            BROKER_ERRORS.labels("not_connected").inc()
            raise BrokerUnavailable("not connected to the broker yet")
        started = time.perf_counter()
        try:
            if self._lean:
                # In the request's own task (``asyncio.timeout``): ``wait_for`` and ``send_all``'s
                # ``gather`` each added a task or a future per publish, for one record as for many.
                async with asyncio.timeout(self._timeout_s):
                    await _send_many(producer, records)
            else:
                await send_all(producer, records, timeout_s=self._timeout_s)
        except TimeoutError as exc:
            BROKER_ERRORS.labels("timeout").inc()
            raise BrokerUnavailable("the broker did not acknowledge in time") from exc
        except (KafkaError, OSError) as exc:
            BROKER_ERRORS.labels("error").inc()
            raise BrokerUnavailable(f"the broker refused the records: {type(exc).__name__}") from exc
        PUBLISH_SECONDS.observe(time.perf_counter() - started)

    async def check(self) -> None:
        producer = self._producer
        if producer is None:
            raise BrokerUnavailable("not connected")
        await producer.client.fetch_all_metadata()
