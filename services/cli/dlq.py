"""Dead-letter tooling for operators: list a consumer's dead letters and re-drive them to their topic."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from shared.envelope import DecodeError, decode
from shared.events import DeadLetter


@dataclass(frozen=True, slots=True)
class Letter:
    """One dead letter and where it sits in the dead-letter topic."""

    partition: int
    offset: int
    kind: str
    letter: DeadLetter

    @property
    def ref(self) -> str:
        return f"{self.partition}:{self.offset}"


async def read_letters(
    *, bootstrap: str, topic: str, idle_s: float = 0.5, timeout_s: float = 60
) -> list[Letter]:
    """Every dead letter in ``topic``, read past its end offsets and until it stays quiet."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=10)
    await asyncio.wait_for(consumer.start(), 15)
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            raise LookupError(f"topic {topic} does not exist")
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        letters: list[Letter] = []
        quiet_since = time.monotonic()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=100)
            for records in batch.values():
                for r in records:
                    letters.append(_letter(r))
            behind = [await consumer.position(tp) < ends[tp] for tp in tps]
            if batch or any(behind):
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= idle_s:
                break
        return sorted(letters, key=lambda x: (x.partition, x.offset))
    finally:
        await asyncio.wait_for(consumer.stop(), 15)


def _letter(record: object) -> Letter:
    headers = list(getattr(record, "headers", ()))
    env = decode(headers=headers, key=getattr(record, "key", None), value=getattr(record, "value", None))
    if not isinstance(env.data, DeadLetter):
        raise DecodeError(f"{env.type} is not a dead letter")
    return Letter(
        partition=int(getattr(record, "partition", -1)),
        offset=int(getattr(record, "offset", -1)),
        kind=str(env.extensions.get("dlqreason", "")),
        letter=env.data,
    )


def select(
    letters: Iterable[Letter], *, refs: set[str] | None = None, kind: str | None = None
) -> list[Letter]:
    """The letters to re-drive: all, those at ``partition:offset`` refs, and/or of one reason kind."""
    return [x for x in letters if (not refs or x.ref in refs) and (kind is None or x.kind == kind)]


async def redrive(*, bootstrap: str, letters: Iterable[Letter]) -> int:
    """Produce each letter's original key, value and headers to its original topic (acks=all)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await asyncio.wait_for(producer.start(), 15)
    sent = 0
    try:
        for item in letters:
            dead = item.letter
            headers = [(k, v.encode()) for k, v in dead.headers.items()]
            key = dead.key.encode() if dead.key is not None else None
            value = base64.b64decode(dead.value_b64)
            await asyncio.wait_for(producer.send_and_wait(dead.topic, value, key=key, headers=headers), 30)
            sent += 1
    finally:
        await asyncio.wait_for(producer.stop(), 15)
    return sent
