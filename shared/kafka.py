"""Kafka helpers with durable defaults: acks=all, no auto-commit, earliest reset, bounded waits."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from shared.envelope import OutgoingRecord

# 7 days; Tansu only reports configs that were set explicitly, so every topic gets them.
DEFAULT_RETENTION_MS = 7 * 24 * 3600 * 1000
TOPIC_EXISTS = 36


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int = 6
    replication: int = 1
    configs: dict[str, str] = field(default_factory=lambda: {"retention.ms": str(DEFAULT_RETENTION_MS)})


def make_producer(
    *, bootstrap: str, client_id: str, idempotence: bool, request_timeout_s: float = 5.0, linger_ms: int = 2
) -> AIOKafkaProducer:
    """A producer whose acknowledgement means every in-sync replica has the record."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=idempotence,
        linger_ms=linger_ms,
        request_timeout_ms=int(request_timeout_s * 1000),
        max_batch_size=256 * 1024,
    )


def make_consumer(
    *,
    bootstrap: str,
    group_id: str,
    client_id: str,
    max_poll_records: int = 1000,
    fetch_max_wait_ms: int = 10,
    session_timeout_ms: int = 10_000,
    heartbeat_ms: int = 3_000,
    max_partition_fetch_bytes: int = 1_048_576,
) -> AIOKafkaConsumer:
    """A consumer that never commits on its own and starts from the beginning of a new partition."""
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group_id,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=fetch_max_wait_ms,
        max_poll_records=max_poll_records,
        isolation_level="read_committed",
        session_timeout_ms=session_timeout_ms,
        heartbeat_interval_ms=heartbeat_ms,
        max_partition_fetch_bytes=max_partition_fetch_bytes,
    )


async def ensure_topics(*, bootstrap: str, specs: Iterable[TopicSpec], timeout_s: float = 20.0) -> list[str]:
    """Create the topics that do not exist yet, with explicit configs; return the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    await asyncio.wait_for(admin.start(), timeout_s)
    try:
        existing = set(await asyncio.wait_for(admin.list_topics(), timeout_s))
        wanted = [s for s in specs if s.name not in existing]
        if not wanted:
            return []
        new = [NewTopic(s.name, s.partitions, s.replication, topic_configs=s.configs) for s in wanted]
        response = await asyncio.wait_for(admin.create_topics(new), timeout_s)
        for name, code, message in response.topic_errors:
            if code not in (0, TOPIC_EXISTS):
                raise KafkaError(f"creating topic {name} failed: {code} {message}")
        return [s.name for s in wanted]
    finally:
        await asyncio.wait_for(admin.close(), timeout_s)


class Acked(NamedTuple):
    """Where the broker stored one record it acknowledged."""

    partition: int
    offset: int


async def send_all(
    producer: AIOKafkaProducer, records: Sequence[OutgoingRecord], *, timeout_s: float
) -> list[Acked]:
    """Send records and wait for every acknowledgement; returns where each record was stored."""
    if not records:
        return []

    async def _send() -> list[Acked]:
        futures = [await producer.send(r.topic, r.value, key=r.key, headers=r.headers) for r in records]
        results = await asyncio.gather(*futures)
        return [Acked(partition=md.partition, offset=md.offset) for md in results]

    return await asyncio.wait_for(_send(), timeout_s)
