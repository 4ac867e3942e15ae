"""Shared benchmark pieces: progress output, machine facts, percentiles, stacks on free ports, rating data."""

from __future__ import annotations

import asyncio
import os
import platform
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from devstack.broker import EmbeddedBroker
from devstack.ports import free_port
from devstack.postgres import EmbeddedPostgres
from devstack.stack import ROOT, SERVICES, Stack
from shared import events as ev
from shared.envelope import OutgoingRecord, encode
from shared.scales import Metric, Sentiment

_STARTED = time.monotonic()

#: Service settings every benchmark stack uses: dev environment (anonymous ingestion), JSON logs,
#: short group sessions so a restarted consumer gets its partitions quickly on the embedded broker.
STACK_ENV = {
    "CSAT_ENVIRONMENT": "dev",
    "CSAT_LOG_FORMAT": "json",
    "CSAT_KAFKA_SESSION_TIMEOUT_MS": "3000",
    "CSAT_KAFKA_HEARTBEAT_MS": "500",
}


def say(message: str) -> None:
    """Progress on the terminal: a bench run is long and should say where it is."""
    print(f"[bench {time.monotonic() - _STARTED:7.1f}s] {message}", flush=True)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of a non-empty sample."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def machine() -> dict[str, Any]:
    """CPU model, cores, RAM, kernel and load: figures mean nothing without the machine they came from."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gb = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram_gb = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count() or 0,
        "ram_gb": round(ram_gb, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg": os.getloadavg(),
    }


def commit() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 - git from PATH
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],  # noqa: S607 - git from PATH
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha}{'+dirty' if dirty else ''}"


@dataclass
class BenchStack:
    """Broker, durable PostgreSQL (fsync on, as in production) and a Stack on free ports."""

    stack: Stack
    broker: EmbeddedBroker
    postgres: EmbeddedPostgres

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    @property
    def database_url(self) -> str:
        return self.postgres.url


@contextmanager
def bench_stack(name: str, *, extra_env: dict[str, str] | None = None) -> Iterator[BenchStack]:
    """A fresh stack under var/bench/<name>: its own broker memory and database, stopped on exit."""
    var = ROOT / "var" / "bench" / name
    if var.exists():
        subprocess.run(["rm", "-rf", str(var)], check=False)  # noqa: S603, S607 - our own scratch dir
    var.mkdir(parents=True)
    broker = EmbeddedBroker(port=free_port(), log_path=var / "logs" / "broker.log")
    postgres = EmbeddedPostgres(data_dir=var / "pg", port=free_port(), durable=True)
    try:
        broker.start()
        postgres.start()
        stack = Stack(
            var_dir=var,
            kafka_bootstrap=broker.bootstrap,
            database_url=postgres.url,
            ports={svc: free_port() for svc in SERVICES},
            extra_env={**STACK_ENV, **(extra_env or {})},
            durable_postgres=True,
        )
        stack.start_infrastructure()
        yield BenchStack(stack=stack, broker=broker, postgres=postgres)
    finally:
        if "stack" in locals():
            stack.stop()
        postgres.stop()
        broker.stop()


async def pg_fetchval(url: str, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def pg_execute(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


CHANNELS = ("web", "chat", "phone")


def rating_body(
    i: int, *, stores: int = 100, score: int | None = None, rating_id: str | None = None
) -> dict[str, Any]:
    """One realistic rating as a client posts it (what both the collector and the baseline validate)."""
    body: dict[str, Any] = {
        "metric": "csat",
        "scale": "1-5",
        "score": score if score is not None else 1 + i % 5,
        "customer": {"id": f"cus-{i}", "locale": "en"},
        "segment": {"store": f"store-{i % stores}", "channel": CHANNELS[i % len(CHANNELS)]},
        "touchpoint": "checkout",
        "comment": "Delivery was late but support was helpful",
        "account": {"id": f"acc-{i % 1000}", "tier": "gold", "value": 12000},
        "consent": {"contact": False},
    }
    if rating_id is not None:
        body["rating_id"] = rating_id
    return body


def interaction_body(i: int, *, stores: int = 100) -> dict[str, Any]:
    """One realistic interaction as a shop's server posts it (no interaction_id: the Idempotency-Key is
    the client key), validated by both the collector and the baseline."""
    return {
        "type": "order.delivered",
        "customer": {
            "id": f"cus-{i}",
            "email": f"buyer{i}@example.com",
            "locale": "en",
            "timezone": "Europe/Paris",
        },
        "attributes": {"order_id": str(5000 + i), "carrier": "dhl", "items": 1 + i % 4},
        "segment": {"store": f"store-{i % stores}", "channel": CHANNELS[i % len(CHANNELS)]},
        "account": {"id": f"acc-{i % 1000}", "tier": "gold", "value": 12000},
    }


def rating_event(
    i: int, *, topic: str, run: str, stores: int, now: datetime, spread_s: int = 86_400
) -> OutgoingRecord:
    """A rating event exactly as the collector publishes it (CloudEvent, keyed by customer), occurred
    within the ``spread_s`` seconds before ``now``."""
    score = 1 + (i * 7) % 5
    sentiment = Sentiment.POSITIVE if score >= 4 else Sentiment.NEUTRAL if score == 3 else Sentiment.NEGATIVE
    occurred = now - timedelta(seconds=(i * 37) % spread_s)
    rating = ev.RatingSubmitted(
        rating_id=f"{run}-{i}",
        metric=Metric.CSAT,
        scale="1-5",
        score=score,
        normalized=(score - 1) / 4,
        sentiment=sentiment,
        positive=sentiment is Sentiment.POSITIVE,
        customer=ev.CustomerRef(id=f"cus-{i % 50_000}", locale="en"),
        segment={"store": f"store-{i % stores}", "channel": CHANNELS[i % len(CHANNELS)]},
        touchpoint="checkout",
        comment=None,
        occurred_at=occurred,
        received_at=now,
    )
    return encode(
        topic=topic,
        event_type=ev.RATING_SUBMITTED,
        source="/collector",
        event_id=rating.rating_id,
        data=rating,
        key=rating.customer.id,
        subject=rating.rating_id,
        time=now,
    )


async def preload(bootstrap: str, records: Sequence[OutgoingRecord], *, chunk: int = 5000) -> float:
    """Produce records with acks=all as fast as the broker takes them; returns records/s."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=512 * 1024
    )
    await producer.start()
    started = time.perf_counter()
    try:
        for start in range(0, len(records), chunk):
            futures = [
                await producer.send(r.topic, r.value, key=r.key, headers=r.headers)
                for r in records[start : start + chunk]
            ]
            await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return len(records) / (time.perf_counter() - started)


def run_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def now_utc() -> datetime:
    return datetime.now(UTC)
