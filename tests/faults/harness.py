"""Fault-suite pieces: a stack on free ports, a TCP proxy that can cut the broker, a load stream, counts.

Everything runs on loopback and is bounded in time. Each scenario prints one FIGURES line (sent,
acknowledged, counted, lost, duplicated, ...) and the suite fails on any loss or duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import asyncpg
import httpx

from devstack.broker import EmbeddedBroker
from devstack.ports import free_port
from devstack.postgres import EmbeddedPostgres
from devstack.stack import SERVICES, Stack

# ---- what the log scan looks for (seeded into every rating the suite posts) ------------------------
CANARY_EMAIL_DOMAIN = "canary-pii.example.org"
CANARY_PHONE = "+33612349876"
CANARY_TOKEN = "cnrytok_6f1d2a9b8c7e4f30a1b2c3d4e5f60718"

#: Log files and directories of every stack the suite started, scanned at the end (test_zz_logs).
LOG_PATHS: list[Path] = []
#: Each scenario's printed figures, summarised at the end.
FIGURES: list[dict[str, Any]] = []

FAULT_ENV = {
    "CSAT_ENVIRONMENT": "dev",
    "CSAT_LOG_FORMAT": "json",
    "CSAT_KAFKA_SESSION_TIMEOUT_MS": "3000",
    "CSAT_KAFKA_HEARTBEAT_MS": "500",
    "CSAT_PUBLISH_TIMEOUT_S": "3",
    "CSAT_RETRY_AFTER_S": "1",
}


def report(scenario: str, **figures: Any) -> None:
    """Print a scenario's figures on one line (kept for the summary at the end)."""
    FIGURES.append({"scenario": scenario, **figures})
    text = " ".join(f"{k}={v}" for k, v in figures.items())
    print(f"\nFIGURES {scenario}: {text}", flush=True)


# ---- a TCP proxy that can cut the broker's port ------------------------------------------------------
class TcpProxy:
    """Forwards 127.0.0.1:port to the target port on its own event loop thread; ``cut`` drops it all.

    While cut, every open connection is reset and new ones are reset on accept, as when a network
    path fails; ``restore`` lets connections through again.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.cut_now = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._transports: set[asyncio.Transport] = set()

    def start(self) -> None:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        fut.result(10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_now:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        for t in (writer.transport, up_writer.transport):
            if isinstance(t, asyncio.Transport):
                self._transports.add(t)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                transport = dst.transport
                if isinstance(transport, asyncio.Transport):
                    transport.abort()
                    self._transports.discard(transport)

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        def _cut() -> None:
            self.cut_now = True
            for t in list(self._transports):
                t.abort()
            self._transports.clear()

        self._loop.call_soon_threadsafe(_cut)

    def restore(self) -> None:
        self._loop.call_soon_threadsafe(setattr, self, "cut_now", False)

    def stop(self) -> None:
        async def _close() -> None:
            if self._server is not None:
                self._server.close()
            for t in list(self._transports):
                t.abort()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(_close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


# ---- the stack -----------------------------------------------------------------------------------------
@dataclass
class FaultStack:
    """Embedded broker (optionally behind the proxy), durable PostgreSQL, and the named services."""

    stack: Stack
    broker: EmbeddedBroker
    postgres: EmbeddedPostgres
    proxy: TcpProxy | None
    bootstrap: str

    @property
    def database_url(self) -> str:
        return self.postgres.url

    @property
    def url(self) -> dict[str, str]:
        return {name: svc.url for name, svc in self.stack.services.items()}


def _start(
    root: Path, services: tuple[str, ...], via_proxy: bool, extra_env: dict[str, str] | None
) -> FaultStack:
    root.mkdir(parents=True, exist_ok=True)
    broker_port = free_port()
    proxy = TcpProxy(broker_port) if via_proxy else None
    if proxy is not None:
        proxy.start()
    broker = EmbeddedBroker(
        port=broker_port,
        log_path=root / "logs" / "broker.log",
        advertised_port=proxy.port if proxy is not None else None,
    )
    postgres = EmbeddedPostgres(data_dir=root / "pg", port=free_port(), durable=True)
    LOG_PATHS.extend([root / "logs", root / "pg.log"])
    bootstrap = f"127.0.0.1:{proxy.port}" if proxy is not None else f"127.0.0.1:{broker_port}"
    stack = Stack(
        var_dir=root,
        kafka_bootstrap=bootstrap,
        database_url=None,
        ports={svc: free_port() for svc in SERVICES},
        extra_env={**FAULT_ENV, **(extra_env or {})},
        durable_postgres=True,
    )
    fs = FaultStack(stack=stack, broker=broker, postgres=postgres, proxy=proxy, bootstrap=bootstrap)
    try:
        broker.start()
        stack.database_url = postgres.start()
        stack.start_infrastructure()
        stack.start_services(services)
    except BaseException:
        _stop(fs)
        raise
    return fs


def _stop(fs: FaultStack) -> None:
    fs.stack.stop()
    fs.postgres.stop()
    fs.broker.stop()
    if fs.proxy is not None:
        fs.proxy.stop()


@contextlib.asynccontextmanager
async def fault_stack(
    root: Path,
    *,
    services: tuple[str, ...] = SERVICES,
    via_proxy: bool = False,
    extra_env: dict[str, str] | None = None,
) -> AsyncIterator[FaultStack]:
    """Start it all off the event loop (the launcher blocks), stop it all at the end."""
    fs = await asyncio.to_thread(_start, root, services, via_proxy, extra_env)
    try:
        yield fs
    finally:
        await asyncio.to_thread(_stop, fs)


# ---- a stream of posts ---------------------------------------------------------------------------------
@dataclass
class Post:
    rating_id: str
    customer_id: str
    started: float
    seconds: float
    status: int | str


@dataclass
class Poster:
    """Posts low ratings (one CSM alert each) at ``rate`` per second until stopped; remembers every answer."""

    collector_url: str
    rate: float
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    score: int = 1
    posts: list[Post] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    IN_FLIGHT: ClassVar[int] = 32

    def body(self, i: int) -> tuple[str, str, dict[str, Any]]:
        rating_id = f"{self.run}-{i}"
        customer = f"cus-{self.run}-{i}"
        email = f"person.{self.run}.{i}@{CANARY_EMAIL_DOMAIN}"
        return (
            rating_id,
            customer,
            {
                "rating_id": rating_id,
                "metric": "csat",
                "scale": "1-5",
                "score": self.score,
                "customer": {"id": customer, "email": email, "phone": CANARY_PHONE, "locale": "en"},
                "segment": {"store": f"store-{i % 7}", "channel": "chat"},
                "touchpoint": "support_chat",
                "comment": f"Call me on {CANARY_PHONE} (+33 6 12 34 98 76) or write to {email}",
                "account": {"id": "acc-1", "tier": "gold", "value": 1000},
            },
        )

    async def _one(self, client: httpx.AsyncClient, i: int) -> None:
        rating_id, customer, body = self.body(i)
        await self.send(client, rating_id, customer, body)

    async def send(
        self, client: httpx.AsyncClient, rating_id: str, customer: str, body: dict[str, Any]
    ) -> Post:
        started = time.monotonic()
        try:
            r = await client.post("/v1/ratings", json=body, params={"token": CANARY_TOKEN})
            status: int | str = r.status_code
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        post = Post(rating_id, customer, started, time.monotonic() - started, status)
        self.posts.append(post)
        return post

    async def _run(self) -> None:
        # At most IN_FLIGHT posts outstanding: when the collector (or this process, on a loaded machine)
        # falls behind, the stream slows down instead of queueing thousands of requests in httpx's pool,
        # whose scheduling cost grows with its queue until the client itself stalls.
        limits = httpx.Limits(max_connections=self.IN_FLIGHT, max_keepalive_connections=self.IN_FLIGHT)
        slots = asyncio.Semaphore(self.IN_FLIGHT)

        async def one(i: int) -> None:
            try:
                await self._one(client, i)
            finally:
                slots.release()

        async with httpx.AsyncClient(base_url=self.collector_url, timeout=30, limits=limits) as client:
            began = time.monotonic()
            tasks: list[asyncio.Task[None]] = []
            i = 0
            while not self._stop.is_set():
                delay = began + i / self.rate - time.monotonic()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), delay)
                    continue
                await slots.acquire()
                tasks.append(asyncio.create_task(one(i)))
                i += 1
            await asyncio.gather(*tasks)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stop.set()
        assert self._task is not None
        await asyncio.wait_for(self._task, 60)

    async def retry_refused(self, *, timeout_s: float = 60) -> int:
        """Re-send every refused rating with the same rating_id (as a client honouring 503 would)."""
        retried = 0
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(base_url=self.collector_url, timeout=30) as client:
            pending = {p.rating_id: p for p in self.posts if p.status != 202}
            accepted = {p.rating_id for p in self.posts if p.status == 202}
            for rid in list(pending):
                if rid in accepted:
                    pending.pop(rid)
            while pending and time.monotonic() < deadline:
                for rid in list(pending):
                    _rid, customer, body = self.body(int(rid.rsplit("-", 1)[1]))
                    post = await self.send(client, rid, customer, body)
                    retried += 1
                    if post.status == 202:
                        pending.pop(rid)
                if pending:
                    await asyncio.sleep(1)
        return retried

    @property
    def acknowledged(self) -> set[str]:
        return {p.rating_id for p in self.posts if p.status == 202}

    @property
    def acknowledged_customers(self) -> set[str]:
        return {p.customer_id for p in self.posts if p.status == 202}


# ---- counting ------------------------------------------------------------------------------------------
async def scorer_counts(database_url: str, ids: set[str]) -> dict[str, int]:
    """Which acknowledged ratings the scorer stored, and whether the counters count each exactly once."""
    conn = await asyncpg.connect(database_url)
    try:
        stored = await conn.fetchval(
            "SELECT count(*) FROM scorer.ratings WHERE rating_id = ANY($1::text[])", list(ids)
        )
        rows = await conn.fetchval("SELECT count(*) FROM scorer.ratings")
        counted = await conn.fetchval(
            "SELECT coalesce(sum(n), 0) FROM scorer.score_counts WHERE segment_key = '*'"
        )
        by_store = await conn.fetchval(
            "SELECT coalesce(sum(n), 0) FROM scorer.score_counts WHERE segment_key LIKE 'store=%' "
            "AND strpos(segment_key, '|') = 0"
        )
    finally:
        await conn.close()
    return {"stored": int(stored), "rows": int(rows), "counted": int(counted), "by_store": int(by_store)}


async def wait_counted(database_url: str, ids: set[str], *, timeout_s: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout_s
    counts = await scorer_counts(database_url, ids)
    while counts["stored"] < len(ids) and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        counts = await scorer_counts(database_url, ids)
    await asyncio.sleep(1)  # anything still in flight (a duplicate would show now)
    return await scorer_counts(database_url, ids)


async def alert_deliveries(database_url: str, customers: set[str]) -> dict[str, int]:
    """CSM alerts per customer in notifier.deliveries / notifier.outbox (one each, never two)."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT d.customer_id, d.status, (o.id IS NOT NULL) AS in_outbox FROM notifier.deliveries d "
            "LEFT JOIN notifier.outbox o USING (notification_id) "
            "WHERE d.rule_id = 'low-score-csm-alert' AND d.customer_id = ANY($1::text[])",
            list(customers),
        )
    finally:
        await conn.close()
    per: dict[str, int] = {}
    sent = unknown = outbox = 0
    for r in rows:
        per[r["customer_id"]] = per.get(r["customer_id"], 0) + 1
        sent += r["status"] == "sent"
        unknown += r["status"] == "unknown"
        outbox += bool(r["in_outbox"])
    return {
        "customers_alerted": len(per),
        "deliveries": len(rows),
        "sent": sent,
        "unknown": unknown,
        "outbox": outbox,
        "duplicates": sum(n - 1 for n in per.values() if n > 1),
    }


async def wait_alerts(database_url: str, customers: set[str], *, timeout_s: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout_s
    got = await alert_deliveries(database_url, customers)
    while got["sent"] < len(customers) and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        got = await alert_deliveries(database_url, customers)
    await asyncio.sleep(1)
    return await alert_deliveries(database_url, customers)
