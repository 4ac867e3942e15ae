"""Test helpers: run an app in-process, read and write topics, wait for conditions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import httpx
import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from fastapi import FastAPI
from pydantic_settings import BaseSettings

from shared.envelope import Envelope, OutgoingRecord, decode

T = TypeVar("T")


@asynccontextmanager
async def running(app: FastAPI, *, headers: dict[str, str] | None = None) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan (consumers, producers) and give an HTTP client bound to it; ``headers``
    go with every request (a credential, e.g. ``tests.credentials.ADMIN``)."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers) as client:
            yield client


@asynccontextmanager
async def serving(app: FastAPI, *, timeout_s: float = 20.0, port: int | None = None) -> AsyncIterator[str]:
    """Serve the app with uvicorn on loopback (``port``, or a free one) in this event loop; yields its URL."""
    from devstack.ports import free_port

    port = port or free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if task.done() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"uvicorn did not start on port {port}")
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout_s)


async def wait_for(
    probe: Callable[[], Awaitable[T]],
    *,
    until: Callable[[T], bool],
    timeout_s: float = 30.0,
    every_s: float = 0.1,
) -> T:
    deadline = time.monotonic() + timeout_s
    value = await probe()
    while not until(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met after {timeout_s}s; last value: {value!r}")
        await asyncio.sleep(every_s)
        value = await probe()
    return value


async def produce(bootstrap: str, records: list[OutgoingRecord]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for r in records:
            await producer.send(r.topic, r.value, key=r.key, headers=r.headers)
        await producer.flush()
    finally:
        await producer.stop()


async def produce_raw(
    bootstrap: str, topic: str, items: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value, headers in items:
            await producer.send(topic, value, key=key, headers=headers)
        await producer.flush()
    finally:
        await producer.stop()


async def read_topic(bootstrap: str, topic: str, *, count: int, timeout_s: float = 20.0) -> list[Any]:
    """Read at least ``count`` raw records from the beginning of ``topic``.

    No consumer group: the reader takes every partition itself and commits nothing, which is what a
    fresh group reading from the earliest offset did, without Tansu's join (about 2 s per read).
    """
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=10,
    )
    await consumer.start()
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                out.extend(records)
    finally:
        await consumer.stop()
    return out


async def read_events(bootstrap: str, topic: str, *, count: int, timeout_s: float = 20.0) -> list[Envelope]:
    raw = await read_topic(bootstrap, topic, count=count, timeout_s=timeout_s)
    return [decode(headers=r.headers, key=r.key, value=r.value) for r in raw]


async def read_to_end(bootstrap: str, topic: str, *, timeout_s: float = 20.0) -> list[Any]:
    """Every raw record ``topic`` holds now: read until each partition's position reaches the high
    watermark of a fetch answered after the call (Tansu's ListOffsets answers wrong end offsets; its
    fetch responses carry the right one).

    For "nothing more was published" checks once the producer is known to be done (e.g. its stored
    offsets cover every input): exact at once, where reading ``count + 1`` with a timeout always waited
    the whole timeout and still only covered that window.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=10,
    )
    await consumer.start()
    out: list[Any] = []
    try:
        await consumer.topics()  # the metadata of every topic, this one's partitions with it
        ids = consumer.partitions_for_topic(topic)
        assert ids, f"topic {topic} has no partitions"
        partitions = [TopicPartition(topic, p) for p in sorted(ids)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + timeout_s
        while True:
            behind = []
            for tp in partitions:
                high = consumer.highwater(tp)
                if high is None or await consumer.position(tp) < high:
                    behind.append(tp)
            if not behind:
                return out
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: partitions {behind} not read to their end in {timeout_s}s")
            batch = await consumer.getmany(*behind, timeout_ms=200)
            for records in batch.values():
                out.extend(records)
    finally:
        await consumer.stop()


async def events_to_end(bootstrap: str, topic: str, *, timeout_s: float = 20.0) -> list[Envelope]:
    """Every event ``topic`` holds now (see ``read_to_end``)."""
    raw = await read_to_end(bootstrap, topic, timeout_s=timeout_s)
    return [decode(headers=r.headers, key=r.key, value=r.value) for r in raw]


#: Consumer group session for tests. Tansu answers a JoinGroup after the session timeout's half rounded
#: up to whole seconds (measured: 3000 ms -> 2.0 s, 2000/1500/1000 ms -> 1.0 s, 2500 ms -> 2.0 s), and
#: every service start joins at least one group: 2000 ms is the shortest join. Tansu did not revoke a
#: member whose event loop stalled 4 s at 2000 ms, so a loaded machine does not rebalance the tests.
TEST_SESSION_TIMEOUT_MS = 2000
TEST_HEARTBEAT_MS = 500
TEST_KAFKA_ENV: dict[str, Any] = {
    "kafka_session_timeout_ms": TEST_SESSION_TIMEOUT_MS,
    "kafka_heartbeat_ms": TEST_HEARTBEAT_MS,
}
#: The same for services started as processes (environment variables).
TEST_KAFKA_PROCESS_ENV: dict[str, str] = {
    "CSAT_KAFKA_SESSION_TIMEOUT_MS": str(TEST_SESSION_TIMEOUT_MS),
    "CSAT_KAFKA_HEARTBEAT_MS": str(TEST_HEARTBEAT_MS),
}

S = TypeVar("S", bound=BaseSettings)


def make_settings(cls: type[S], **values: Any) -> S:
    """Service settings for a test: short group sessions (fast joins on Tansu), console logs, and
    ``CSAT_ENVIRONMENT=test`` unless the test names another (no service starts without one).

    Tests of one session share a broker; a consumer group shared by all of them makes every test's
    join wait on the members other tests left behind (one CI run waited more than 30 s for its
    partitions). The group therefore follows the test's own topic prefix unless a test names one:
    distinct per test, the same for two apps of one test (a restart resumes its group's offsets).
    """
    field = cls.model_fields.get("consumer_group")
    prefix = values.get("topic_prefix")
    if field is not None and prefix and "consumer_group" not in values:
        values = {**values, "consumer_group": f"{field.default}.{str(prefix).rstrip('.')}"}
    return cls.model_validate({**TEST_KAFKA_ENV, "environment": "test", "log_format": "console", **values})
