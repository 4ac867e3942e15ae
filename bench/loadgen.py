"""The open-loop load generator of the e2e and knee benchmarks: score-1 ratings POSTed on schedule.

Open loop: request ``i`` starts at ``i / rate`` seconds whatever earlier answers took (a slow pipeline
is not hidden by a slower client). Each rating has its own id and customer; the POST's start time
(``time.time()``) is kept per accepted rating for the POST -> notification request latency.

Two clients with the same requests and the same bookkeeping (``BENCH_LOADGEN``):

* ``lean`` (default): HTTP/1.1 over raw asyncio protocols on a pool of keep-alive connections. The
  requests are encoded to bytes before the timed window, an answer is read as its status line and the
  end of its headers and body, and a request that finds every connection busy opens a new one at
  once (it never waits for a free one, so it cannot start late for lack of a connection).
* ``httpx``: the previous generator (an ``httpx.AsyncClient``, a task per request), the reference.

The load runs in the bench's own process, on the same two cores as the pipeline: in the knee it cost
1.5 ms of CPU per rating at 150/s and 5.2 ms at 200/s once answers slowed (httpx), CPU the pipeline
then lacked. ``BENCH_LOADGEN_LOOP`` (``uvloop``, default, or ``asyncio``) picks the event loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import httpx

from bench.common import rating_body

T = TypeVar("T")

PATH = "/v1/ratings"
TIMEOUT_S = 30.0
#: A request that starts this far behind its schedule counts as late (the event loop was too busy).
LATE_MS = 10.0
#: What httpx 0.28 sends besides Host and the body's own headers: the lean client sends the same.
HTTPX_HEADERS = (
    ("Accept", "*/*"),
    ("Accept-Encoding", "gzip, deflate"),
    ("Connection", "keep-alive"),
    ("User-Agent", f"python-httpx/{httpx.__version__}"),
)


@dataclass
class LoadResult:
    """What one load level sent and got back."""

    sent: dict[str, float] = field(default_factory=dict)  # accepted rating id -> POST start, epoch s
    statuses: dict[str, int] = field(default_factory=dict)  # "202", "503", or the error's name
    answers: list[float] = field(default_factory=list)  # ms from the POST's start to its answer
    late: int = 0  # requests started more than LATE_MS behind schedule
    max_lag_ms: float = 0.0
    connections: int = 0  # connections opened (lean client)

    def count(self, code: str, rating_id: str, started: float, took_s: float) -> None:
        self.statuses[code] = self.statuses.get(code, 0) + 1
        self.answers.append(took_s * 1000)
        if code == "202":
            self.sent[rating_id] = started


def kind() -> str:
    chosen = os.environ.get("BENCH_LOADGEN", "lean")
    if chosen not in ("lean", "httpx"):
        raise SystemExit(f"BENCH_LOADGEN must be lean or httpx, not {chosen!r}")
    return chosen


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run a bench coroutine on the chosen event loop (uvloop, as the services use, unless told)."""
    if os.environ.get("BENCH_LOADGEN_LOOP", "uvloop") == "asyncio":
        return asyncio.run(main)
    import uvloop

    return uvloop.run(main)


def rating(run: str, i: int) -> tuple[str, dict[str, Any]]:
    """Rating ``i`` of a run: a score-1 rating (one CSM alert under the default rules), its own customer."""
    rating_id = f"{run}-{i}"
    body = rating_body(i, score=1, rating_id=rating_id)
    body["customer"]["id"] = f"{run}-cus-{i}"
    return rating_id, body


def encode_post(host: str, path: str, body: bytes, headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """One HTTP/1.1 POST of a JSON body, headers in httpx's order (``headers`` after its defaults)."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in HTTPX_HEADERS]
    lines += [f"{k}: {v}" for k, v in headers]
    lines += [f"Content-Length: {len(body)}", "Content-Type: application/json"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def json_bytes(body: dict[str, Any]) -> bytes:
    """A body encoded as httpx 0.28 encodes ``json=``."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


@dataclass(frozen=True)
class Head:
    """A response's status line and the headers the client needs."""

    status: int
    end: int  # index just past the blank line
    length: int | None  # Content-Length; None: chunked, or (if not chunked) until the connection closes
    chunked: bool
    close: bool


def parse_head(buf: bytes | bytearray) -> Head | None:
    """The response head at the start of ``buf``, or None while it is incomplete."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    block = bytes(buf[:end]).lower()
    if not block.startswith(b"http/1.") or len(block) < 12:
        raise ValueError(f"not an HTTP/1.x response: {bytes(buf[:40])!r}")
    status = int(block[9:12])
    length: int | None = None
    chunked = close = False
    for line in block.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip(), value.strip()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value
        elif name == b"connection":
            close = b"close" in value
    if status in (204, 304) or 100 <= status < 200:
        length = 0
    return Head(status=status, end=end + 4, length=None if chunked else length, chunked=chunked, close=close)


def message_end(buf: bytes | bytearray, head: Head) -> int | None:
    """Index just past the whole response in ``buf``, or None while its body is incomplete (or runs
    until the connection closes)."""
    if head.length is not None:
        end = head.end + head.length
        return end if len(buf) >= end else None
    if not head.chunked:
        return None
    pos = head.end
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
        if size == 0:  # last chunk, then optional trailers and a blank line
            trailers = buf.find(b"\r\n\r\n", eol)
            if buf[eol : eol + 4] == b"\r\n\r\n":
                return eol + 4
            return trailers + 4 if trailers >= 0 else None
        pos = eol + 2 + size + 2
        if len(buf) < pos:
            return None


@dataclass
class _Pending:
    rating_id: str
    payload: bytes
    started: float  # epoch s, what the latencies are measured from
    began: float  # monotonic s, for the answer time
    timer: asyncio.TimerHandle | None = None
    conn: _Conn | None = None


class _Conn(asyncio.Protocol):
    """One keep-alive connection: at most one request in flight, answered through ``pool.finished``."""

    def __init__(self, pool: LeanLoad) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.head: Head | None = None
        self.pending: _Pending | None = None
        self.open = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is no asyncio.Transport subclass (an isinstance check fails under it).
        self.transport = cast(asyncio.Transport, transport)

    def send(self, p: _Pending) -> None:
        assert self.transport is not None
        self.pending, p.conn = p, self
        self.transport.write(p.payload)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        try:
            if self.head is None:
                self.head = parse_head(self.buf)
                if self.head is None:
                    return
            end = message_end(self.buf, self.head)
        except ValueError:
            self.abort()
            return
        if end is None:
            return
        head, p = self.head, self.pending
        del self.buf[:end]
        self.head, self.pending = None, None
        if head.close or self.buf:
            self.abort()  # the server will close it (or sent more than was asked): never reused
        if p is not None:
            self.pool.finished(p, str(head.status), self if self.open else None)

    def abort(self) -> None:
        self.open = False
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        p, self.pending = self.pending, None
        if p is not None:
            # A body that runs until the close is complete now; anything else was cut short.
            head = self.head
            ok = head is not None and head.length is None and not head.chunked
            self.pool.finished(p, str(head.status) if ok and head else "RemoteProtocolError", None)


class LeanLoad:
    """Pre-encoded POSTs over raw asyncio connections: a free keep-alive one, else a new one at once."""

    def __init__(self, url: str, requests: list[tuple[str, bytes]], *, timeout_s: float = TIMEOUT_S) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"the lean load generator speaks plain http only: {url}")
        self.host, self.port = parts.hostname, parts.port or 80
        self.requests = requests
        self.timeout_s = timeout_s
        self.result = LoadResult()
        self.idle: list[_Conn] = []
        self.outstanding = 0
        self.all_done = asyncio.Event()
        self._connecting: set[asyncio.Task[None]] = set()
        self._loop = asyncio.get_running_loop()

    def start(self, i: int) -> None:
        rating_id, payload = self.requests[i]
        p = _Pending(rating_id, payload, time.time(), time.monotonic())
        self.outstanding += 1
        p.timer = self._loop.call_later(self.timeout_s, self._timed_out, p)
        while self.idle:
            conn = self.idle.pop()  # the most recently used: warm, and far from the server's idle timeout
            if conn.open:
                conn.send(p)
                return
        self.result.connections += 1
        task = self._loop.create_task(self._connect(p))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def _connect(self, p: _Pending) -> None:
        try:
            _, conn = await self._loop.create_connection(lambda: _Conn(self), self.host, self.port)
        except OSError:
            self.finished(p, "ConnectError", None)
            return
        if p.timer is None:  # timed out while connecting
            conn.abort()
            return
        conn.send(p)

    def _timed_out(self, p: _Pending) -> None:
        p.timer = None
        conn = p.conn
        if conn is not None and conn.pending is p:
            conn.pending = None  # it reports nothing more once aborted
            conn.abort()
        self.finished(p, "ReadTimeout", None)

    def finished(self, p: _Pending, code: str, conn: _Conn | None) -> None:
        if p.timer is None and code != "ReadTimeout":
            return  # already counted as timed out
        if p.timer is not None:
            p.timer.cancel()
            p.timer = None
        self.result.count(code, p.rating_id, p.started, time.monotonic() - p.began)
        self.outstanding -= 1
        if conn is not None and conn.open:
            self.idle.append(conn)
        if self.outstanding == 0:
            self.all_done.set()

    def close(self) -> None:
        for conn in self.idle:
            conn.abort()
        self.idle.clear()


async def on_schedule(rate: float, total: int, start: Callable[[int], None], result: LoadResult) -> None:
    """Call ``start(i)`` at ``i / rate`` s from now for each ``i``, whatever it takes; count late starts."""
    began = time.monotonic()
    i = 0
    while i < total:
        now = time.monotonic()
        due = began + i / rate
        if due - now > 0.0005:
            await asyncio.sleep(due - now)
            continue
        lag_ms = max(0.0, now - due) * 1000
        if lag_ms > LATE_MS:
            result.late += 1
        result.max_lag_ms = max(result.max_lag_ms, lag_ms)
        start(i)
        i += 1


async def lean_load(url: str, *, run: str, rate: float, seconds: float) -> LoadResult:
    total = int(rate * seconds)
    host = urlsplit(url).netloc
    requests = [
        (rid, encode_post(host, PATH, json_bytes(body)))
        for rid, body in (rating(run, i) for i in range(total))
    ]
    gen = LeanLoad(url, requests)
    try:
        await on_schedule(rate, total, gen.start, gen.result)
        if gen.outstanding:
            gen.all_done.clear()  # set whenever nothing was in flight, e.g. between requests at low rates
            await gen.all_done.wait()
    finally:
        gen.close()
    return gen.result


async def httpx_load(url: str, *, run: str, rate: float, seconds: float) -> LoadResult:
    """The previous generator: an httpx client, a task per request (the reference for the lean one)."""
    result = LoadResult()
    total = int(rate * seconds)
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT_S, limits=limits) as client:

        async def one(i: int) -> None:
            rating_id, body = rating(run, i)
            started, began = time.time(), time.monotonic()
            try:
                r = await client.post(PATH, json=body)
                code = str(r.status_code)
            except httpx.HTTPError as exc:
                code = type(exc).__name__
            result.count(code, rating_id, started, time.monotonic() - began)

        tasks: list[asyncio.Task[None]] = []
        await on_schedule(rate, total, lambda i: tasks.append(asyncio.create_task(one(i))), result)
        await asyncio.gather(*tasks)
    return result


async def load(url: str, *, run: str, rate: float, seconds: float, which: str | None = None) -> LoadResult:
    """POST ``rate * seconds`` score-1 ratings on schedule with the chosen generator."""
    chosen = which or kind()
    gen = lean_load if chosen == "lean" else httpx_load
    return await gen(url, run=run, rate=rate, seconds=seconds)
