"""The consumer loop's top-up: what arrives during a transaction joins the next batch, not the one after."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.consumer import Received, TransactionalConsumer
from shared.db import make_engine
from shared.envelope import OutgoingRecord
from shared.events import Channel
from shared.kafka import make_consumer
from shared.topics import Topics
from tests.helpers import TEST_HEARTBEAT_MS, TEST_SESSION_TIMEOUT_MS
from tests.infra import Infra
from tests.integration.notifier_support import records, request

pytestmark = pytest.mark.integration


async def test_records_arriving_during_a_transaction_join_the_next_batch(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    engine = make_engine(database_url)
    producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap, acks="all")
    await producer.start()
    batches: list[list[str]] = []
    first_started = asyncio.Event()
    release = asyncio.Event()

    async def handler(_conn: AsyncConnection, batch: Sequence[Received]) -> list[OutgoingRecord]:
        batches.append([r.envelope.id for r in batch])
        if len(batches) == 1:
            first_started.set()
            await release.wait()  # a slow transaction: two waves arrive meanwhile
        return []

    loop = TransactionalConsumer(
        name="top-up-test",
        topics=[topics.notifications],
        group="top-up",
        engine=engine,
        consumer_factory=lambda: make_consumer(
            bootstrap=infra.bootstrap,
            group_id="top-up",
            client_id="t",
            heartbeat_ms=TEST_HEARTBEAT_MS,
            session_timeout_ms=TEST_SESSION_TIMEOUT_MS,
        ),
        producer=producer,
        dlq_topic=topics.dlq_notifier,
        handler=handler,
        top_up=True,
    )

    async def wave(prefix: str, n: int, partition: int) -> None:
        """``n`` records on one partition (aiokafka holds one unread fetch response per partition)."""
        notes = [
            request(f"{prefix}-{i}", channel=Channel.EMAIL, to="a@example.com", template="thank_you")
            for i in range(n)
        ]
        # One record batch, so the broker hands the wave out in one fetch response.
        batch = producer.create_batch()
        for r in records(topics, notes):
            assert batch.append(key=r.key, value=r.value, timestamp=None, headers=r.headers) is not None
        await (await producer.send_batch(batch, topics.notifications, partition=partition))

    task = asyncio.create_task(loop.run())
    try:
        await wave("first", 1, 0)
        async with asyncio.timeout(30):
            await first_started.wait()
        # The loop fetches the first wave while the transaction runs (it cannot start another before
        # this one commits); the second comes later. Both are fetched long before the release.
        await wave("a", 5, 1)
        await asyncio.sleep(1)
        await wave("b", 15, 2)
        await asyncio.sleep(2)
        release.set()
        async with asyncio.timeout(20):
            while sum(len(b) for b in batches) < 21:  # noqa: ASYNC110 - polls the handler's record
                await asyncio.sleep(0.05)
    finally:
        await loop.stop()
        await asyncio.wait_for(task, 20)
        await producer.stop()
        await engine.dispose()
    seen = [i for b in batches for i in b]
    assert len(seen) == len(set(seen)) == 21  # each once
    # Both waves were there when the slow transaction ended: one batch, no extra cycle (without the
    # top-up the loop would have started the first wave alone and left the second for a third batch).
    assert [len(b) for b in batches] == [1, 20]
