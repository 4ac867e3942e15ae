"""End-to-end latency: POST -> notification request on the topic -> row in notifier.outbox.

An open-loop load (requests start on schedule whatever the answers' speed, so a slow pipeline is not
hidden by a slower client) of low ratings: each triggers exactly one CSM alert under the default rules.
The baseline is the bare broker hop at the same rate: a producer (acks=all) to a consumer.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench import loadgen
from bench.common import BenchStack, percentile, say
from shared.envelope import DecodeError, decode
from shared.events import NotificationRequested


def _consumer_sums(urls: dict[str, str]) -> dict[str, dict[str, float]]:
    """Each consumer's batch time and size sums from its own /metrics (stage breakdown of a run)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, dict[str, float]] = {}
    for name, url in urls.items():
        try:
            text = httpx.get(f"{url}/metrics", timeout=10).text
        except httpx.HTTPError:
            continue
        sums: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            if family.name not in ("csat_consumer_batch_duration_seconds", "csat_consumer_batch_records"):
                continue
            for sample in family.samples:
                if sample.name.endswith(("_sum", "_count")):
                    sums[sample.name] = sums.get(sample.name, 0.0) + sample.value
        out[name] = sums
    return out


def _stages(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Per consumer over one load level: batches, mean records per batch, mean and total batch time."""
    out: dict[str, Any] = {}
    for name, a in after.items():
        b = before.get(name, {})

        def d(key: str, a: dict[str, float] = a, b: dict[str, float] = b) -> float:
            return a.get(key, 0.0) - b.get(key, 0.0)

        batches = d("csat_consumer_batch_duration_seconds_count")
        if not batches:
            continue
        busy = d("csat_consumer_batch_duration_seconds_sum")
        records = d("csat_consumer_batch_records_sum")
        out[name] = {
            "batches": int(batches),
            "records_per_batch": records / batches,
            "batch_ms": busy / batches * 1000,
            "busy_s": busy,
            "records_per_busy_s": records / busy if busy else 0.0,
        }
    return out


def _stats(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50_ms": percentile(values, 50), "p99_ms": percentile(values, 99)}


class NotificationWatch:
    """Reads the notifications topic from the start; first arrival time per rating id."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.arrived: dict[str, float] = {}
        self.notification_rating: dict[str, str] = {}
        self._consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=f"bench-watch-{uuid.uuid4().hex[:6]}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=10,
            session_timeout_ms=3000,
            heartbeat_interval_ms=500,
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=100)
            now = time.time()
            for records in batch.values():
                for r in records:
                    try:
                        env = decode(headers=r.headers, key=r.key, value=r.value)
                    except DecodeError:
                        continue
                    data = env.data
                    if isinstance(data, NotificationRequested) and data.rating_id:
                        self.arrived.setdefault(data.rating_id, now)
                        self.notification_rating[data.notification_id] = data.rating_id

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await asyncio.wait_for(self._consumer.stop(), 10)


async def _outbox_times(database_url: str, ids: list[str]) -> dict[str, float]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT notification_id, extract(epoch FROM created_at) AS t FROM notifier.outbox "
            "WHERE notification_id = ANY($1::text[])",
            ids,
        )
    finally:
        await conn.close()
    return {r["notification_id"]: float(r["t"]) for r in rows}


async def _pipeline(
    bs: BenchStack, *, run: str, rate: float, seconds: float, drain_s: float
) -> dict[str, Any]:
    stack = bs.stack
    topics = stack.topic_prefix
    from shared.topics import Topics

    watch = NotificationWatch(bs.bootstrap, Topics(topics).notifications)
    consumers: dict[str, str] = {
        n: stack.services[n].url for n in ("actions", "notifier", "scorer") if n in stack.services
    }
    before = await asyncio.to_thread(_consumer_sums, consumers)
    await watch.start()
    try:
        loaded = await loadgen.load(stack.services["collector"].url, run=run, rate=rate, seconds=seconds)
        sent = loaded.sent
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline and not set(sent) <= set(watch.arrived):  # noqa: ASYNC110 - polls a dict
            await asyncio.sleep(0.2)
        wanted = [n for n, rid in watch.notification_rating.items() if rid in sent]
        outbox: dict[str, float] = {}
        while time.monotonic() < deadline:
            outbox = await _outbox_times(bs.database_url, wanted)
            if len(outbox) >= len(wanted):
                break
            await asyncio.sleep(0.5)
    finally:
        await watch.stop()
    to_request = [(watch.arrived[rid] - t) * 1000 for rid, t in sent.items() if rid in watch.arrived]
    to_outbox = [
        (outbox[n] - sent[watch.notification_rating[n]]) * 1000
        for n in outbox
        if watch.notification_rating[n] in sent
    ]
    stages = _stages(before, await asyncio.to_thread(_consumer_sums, consumers))
    done = [outbox[n] for n in outbox]
    span = (max(done) - min(sent.values())) if done and sent else 0.0
    return {
        "rate": rate,
        "seconds": seconds,
        "statuses": loaded.statuses,
        "accepted": len(sent),
        "answer": _stats(loaded.answers),
        # The load generator: which one, requests it started over LATE_MS behind schedule, connections.
        "loadgen": {
            "kind": loadgen.kind(),
            "late": loaded.late,
            "max_lag_ms": loaded.max_lag_ms,
            "connections": loaded.connections,
        },
        # Alerts in the outbox per second, from the first POST to the last row: below the offered rate
        # when the pipeline cannot keep up (then latencies grow with the backlog).
        "delivered_per_s": len(done) / span if span > 0 else 0.0,
        "stages": stages,
        "to_request": _stats(to_request),
        "to_outbox": _stats(to_outbox),
        "missing_requests": len(set(sent) - set(watch.arrived)),
        "missing_outbox": len(wanted) - len(outbox),
    }


async def _broker_hop(bs: BenchStack, *, topic: str, rate: float, seconds: float) -> dict[str, Any]:
    """The floor: one producer (acks=all) to consumer hop on the same broker at the same rate."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bs.bootstrap,
        group_id=f"bench-hop-{uuid.uuid4().hex[:6]}",
        enable_auto_commit=False,
        auto_offset_reset="latest",
        fetch_max_wait_ms=10,
        session_timeout_ms=3000,
        heartbeat_interval_ms=500,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bs.bootstrap, acks="all", linger_ms=2)
    await consumer.start()
    await producer.start()
    latencies: list[float] = []
    total = int(rate * seconds)
    try:
        await asyncio.sleep(4)  # joined and positioned at the end before anything is sent
        while not consumer.assignment():  # noqa: ASYNC110 - aiokafka offers no assignment event
            await asyncio.sleep(0.1)

        async def reader() -> None:
            while len(latencies) < total:
                batch = await consumer.getmany(timeout_ms=100)
                now = time.time()
                for records in batch.values():
                    for r in records:
                        latencies.append((now - float(r.value.decode())) * 1000)

        task = asyncio.create_task(reader())
        began = time.monotonic()
        for i in range(total):
            delay = began + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await producer.send(topic, str(time.time()).encode(), key=f"k{i}".encode())
        await asyncio.wait_for(task, 30)
    finally:
        await producer.stop()
        await consumer.stop()
    return {"rate": rate, **_stats(latencies)}


def run(bs: BenchStack, *, rate: float, seconds: float, drain_s: float = 120) -> dict[str, Any]:
    stack = bs.stack
    say("e2e: starting the four services")
    stack.start_services()
    out: dict[str, Any] = {}
    say("e2e: warm-up (5 s, not counted)")
    loadgen.run_loop(_pipeline(bs, run=f"warm-{uuid.uuid4().hex[:6]}", rate=rate, seconds=5, drain_s=60))
    for label, r in (("steady", rate), ("double", 2 * rate)):
        say(f"e2e: {label} load, {r:.0f} ratings/s for {seconds:.0f} s")
        out[label] = loadgen.run_loop(
            _pipeline(bs, run=f"{label}-{uuid.uuid4().hex[:6]}", rate=r, seconds=seconds, drain_s=drain_s)
        )
        res = out[label]
        say(
            f"e2e: {label}: POST->request p50 {res['to_request']['p50_ms']:.0f} ms "
            f"p99 {res['to_request']['p99_ms']:.0f} ms; "
            f"POST->outbox p50 {res['to_outbox']['p50_ms']:.0f} ms p99 {res['to_outbox']['p99_ms']:.0f} ms "
            f"(accepted {res['accepted']}, statuses {res['statuses']})"
        )
        hop_topic = f"bench-hop-{uuid.uuid4().hex[:6]}"
        from shared.provisioning import create_topics
        from shared.topics import Topics

        create_topics(bs.bootstrap, Topics(prefix=hop_topic + "."))
        out[f"{label}_hop"] = asyncio.run(
            _broker_hop(bs, topic=Topics(prefix=hop_topic + ".").ratings, rate=r, seconds=min(seconds, 10))
        )
        hop = out[f"{label}_hop"]
        say(f"e2e: {label}: bare broker hop p50 {hop['p50_ms']:.1f} ms p99 {hop['p99_ms']:.1f} ms")
    return out
