"""A consumer service's running parts: engine, producer and consumer loop, started and stopped together."""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.consumer import Decoder, Handler, TransactionalConsumer
from shared.db import make_engine, ping
from shared.kafka import make_consumer, make_producer
from shared.settings import CommonSettings

log = structlog.get_logger(__name__)


class ConsumerRuntime:
    """Connects in the background (the API answers /healthz even while Kafka or Postgres are away)."""

    def __init__(
        self,
        *,
        name: str,
        settings: CommonSettings,
        topics: list[str],
        group: str,
        dlq_topic: str,
        handler: Handler,
        max_batch: int = 1000,
        min_batch_interval_ms: int = 0,
        engine: AsyncEngine | None = None,
        decoder: Decoder | None = None,
        top_up: bool = False,
        fetch_max_wait_ms: int = 10,
        max_partition_fetch_bytes: int = 1_048_576,
    ) -> None:
        self.name = name
        #: How long the broker may hold an empty fetch: short for the pipeline's latency; a rare topic's
        #: side consumer (erasure) waits longer and so does not poll the broker a hundred times a second.
        self._fetch_max_wait_ms = fetch_max_wait_ms
        #: What one fetch may bring per partition: a batch can only be as big as what the fetcher holds,
        #: so a consumer with big catch-up batches (the scorer) needs more than aiokafka's 1 MiB.
        self._max_partition_fetch_bytes = max_partition_fetch_bytes
        self.settings = settings
        self.engine = engine or make_engine(
            settings.database_url,
            pool_size=settings.db_pool_size,
            application_name=f"csat-{name}",
            # A busy consumer reuses its connection every batch: checking it each time cost three
            # round trips per transaction.
            ping_idle_s=settings.db_ping_idle_s,
        )
        self.producer: AIOKafkaProducer | None = None
        self._topics = topics
        self._group = group
        self._dlq_topic = dlq_topic
        self._handler = handler
        self._max_batch = max_batch
        self._decoder = decoder
        self._top_up = top_up
        self._min_batch_interval_ms = min_batch_interval_ms
        self.consumer: TransactionalConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"{self.name}-runtime")

    async def _connect_producer(self) -> AIOKafkaProducer | None:
        backoff = 0.25
        while not self._closing.is_set():
            producer = make_producer(
                bootstrap=self.settings.kafka_bootstrap,
                client_id=f"csat-{self.name}",
                idempotence=self.settings.kafka_idempotence,
                request_timeout_s=self.settings.kafka_request_timeout_s,
            )
            try:
                await asyncio.wait_for(producer.start(), 10)
                return producer
            except (TimeoutError, KafkaError, OSError) as exc:
                log.warning("producer_connect_failed", service=self.name, error=type(exc).__name__)
                with contextlib.suppress(KafkaError, OSError, asyncio.TimeoutError):
                    await asyncio.wait_for(producer.stop(), 5)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), backoff)
                backoff = min(backoff * 2, 5)
        return None

    async def _run(self) -> None:
        producer = await self._connect_producer()
        if producer is None:
            return
        self.producer = producer
        s = self.settings
        self.consumer = TransactionalConsumer(
            name=self.name,
            topics=self._topics,
            group=self._group,
            engine=self.engine,
            consumer_factory=lambda: make_consumer(
                bootstrap=s.kafka_bootstrap,
                group_id=self._group,
                client_id=f"csat-{self.name}",
                max_poll_records=self._max_batch,
                # A consumer that starts a batch at most once per interval need not ask the broker
                # for records more often (each empty fetch costs the broker and this process CPU).
                fetch_max_wait_ms=max(self._fetch_max_wait_ms, self._min_batch_interval_ms),
                session_timeout_ms=s.kafka_session_timeout_ms,
                heartbeat_ms=s.kafka_heartbeat_ms,
                max_partition_fetch_bytes=self._max_partition_fetch_bytes,
            ),
            producer=producer,
            dlq_topic=self._dlq_topic,
            handler=self._handler,
            max_batch=self._max_batch,
            decoder=self._decoder,
            top_up=self._top_up,
            min_batch_interval_s=self._min_batch_interval_ms / 1000,
        )
        if self._closing.is_set():  # stopped while the producer connected: stop() had no consumer to tell
            await self.consumer.stop()
        try:
            await self.consumer.run()
        except Exception:
            log.exception("consumer_crashed", service=self.name)
            raise

    async def stop(self) -> None:
        self._closing.set()
        if self.consumer is not None:
            await self.consumer.stop()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 15)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
            except Exception as exc:  # noqa: BLE001 - already logged by _run; shutting down anyway
                log.warning("runtime_stopped_with_error", service=self.name, error=type(exc).__name__)
        if self.producer is not None:
            with contextlib.suppress(KafkaError, OSError, asyncio.TimeoutError):
                await asyncio.wait_for(self.producer.stop(), 10)
        await self.engine.dispose()

    async def check_database(self) -> None:
        await ping(self.engine)

    def alive(self) -> bool:
        """False once the consumer loop has ended while nobody asked it to stop (liveness)."""
        task = self._task
        return task is None or not task.done() or self._closing.is_set()

    async def check_consumer(self) -> None:
        if self._task is not None and self._task.done():
            raise RuntimeError("consumer loop ended")
        if self.consumer is None or not self.consumer.running:
            raise RuntimeError("consumer not running yet")
