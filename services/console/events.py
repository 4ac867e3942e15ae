"""The console's Kafka producer (erasure requests): started on first use, acknowledged by every in-sync
replica before the route answers 202, stopped with the app."""

from __future__ import annotations

import asyncio
import contextlib

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from services.console.ports import EventsUnavailable
from shared.envelope import OutgoingRecord
from shared.kafka import make_producer, send_all


class KafkaEvents:
    """Implements ``EventSink``; a broker away answers ``EventsUnavailable`` (the route's 503)."""

    def __init__(self, *, bootstrap: str, idempotence: bool, timeout_s: float) -> None:
        self._bootstrap = bootstrap
        self._idempotence = idempotence
        self._timeout_s = timeout_s
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def _started(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                producer = make_producer(
                    bootstrap=self._bootstrap,
                    client_id="csat-console",
                    idempotence=self._idempotence,
                    request_timeout_s=self._timeout_s,
                )
                try:
                    await asyncio.wait_for(producer.start(), self._timeout_s * 2)
                except (TimeoutError, KafkaError, OSError):
                    with contextlib.suppress(KafkaError, OSError, asyncio.TimeoutError):
                        await asyncio.wait_for(producer.stop(), 5)
                    raise EventsUnavailable("broker unreachable") from None
                self._producer = producer
            return self._producer

    async def publish(self, record: OutgoingRecord) -> None:
        producer = await self._started()
        try:
            await send_all(producer, [record], timeout_s=self._timeout_s * 2)
        except (TimeoutError, KafkaError, OSError):
            raise EventsUnavailable("broker did not acknowledge") from None

    async def close(self) -> None:
        async with self._lock:
            if self._producer is not None:
                with contextlib.suppress(KafkaError, OSError, asyncio.TimeoutError):
                    await asyncio.wait_for(self._producer.stop(), 10)
                self._producer = None
