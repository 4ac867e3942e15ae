"""The consumer loop's pacing: batches start at most once per interval, so under load they grow."""

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
from tests.infra import Infra
from tests.integration.notifier_support import records, request

pytestmark = pytest.mark.integration


async def test_records_within_the_interval_share_one_batch_and_a_lone_record_waits_for_none(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    engine = make_engine(database_url)
    producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap, acks="all")
    await producer.start()
    batches: list[list[str]] = []
    first_done = asyncio.Event()

    async def handler(_conn: AsyncConnection, batch: Sequence[Received]) -> list[OutgoingRecord]:
        batches.append([r.envelope.id for r in batch])
        first_done.set()
        return []

    loop = TransactionalConsumer(
        name="pacing-test",
        topics=[topics.notifications],
        group="pacing",
        engine=engine,
        consumer_factory=lambda: make_consumer(
            bootstrap=infra.bootstrap,
            group_id="pacing",
            client_id="t",
            heartbeat_ms=500,
            session_timeout_ms=3000,
        ),
        producer=producer,
        dlq_topic=topics.dlq_notifier,
        handler=handler,
        # Far longer than the waves below take to arrive: they all land within one interval.
        min_batch_interval_s=4.0,
    )

    async def wave(prefix: str, n: int, partition: int) -> None:
        notes = [
            request(f"{prefix}-{i}", channel=Channel.EMAIL, to="a@example.com", template="thank_you")
            for i in range(n)
        ]
        batch = producer.create_batch()
        for r in records(topics, notes):
            assert batch.append(key=r.key, value=r.value, timestamp=None, headers=r.headers) is not None
        await (await producer.send_batch(batch, topics.notifications, partition=partition))

    task = asyncio.create_task(loop.run())
    try:
        await wave("first", 1, 0)
        async with asyncio.timeout(30):
            await first_done.wait()  # the first batch did not wait: nothing had started before it
        await wave("a", 5, 1)
        await asyncio.sleep(0.5)
        await wave("b", 15, 2)
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
    # Without pacing the loop would have started the first of the two waves alone as soon as it came.
    assert [len(b) for b in batches] == [1, 20]
