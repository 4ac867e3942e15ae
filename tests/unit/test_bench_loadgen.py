"""The lean load generator of the e2e and knee benchmarks: its requests are byte for byte httpx's, its
parser reads the collector's real answers, and its pool opens a connection rather than wait for one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from bench import loadgen

# Answers of the real collector (uvicorn + httptools), captured from the wire on 2026-12-06.
ACCEPTED = (
    b"HTTP/1.1 202 Accepted\r\ndate: Sun, 06 Dec 2026 04:30:07 GMT\r\nserver: uvicorn\r\n"
    b"content-length: 41\r\ncontent-type: application/json\r\n"
    b"traceresponse: 00-7053caf32f18cc107b69aed43ac5d479-53471b11651b5014-01\r\n\r\n"
    b'{"rating_id":"cap-0","status":"accepted"}'
)
INVALID = (
    b"HTTP/1.1 422 Unprocessable Entity\r\ndate: Sun, 06 Dec 2026 04:30:07 GMT\r\nserver: uvicorn\r\n"
    b"content-length: 191\r\ncontent-type: application/problem+json\r\n"
    b"traceresponse: 00-d730ec74107a6d323b792d145b0e2a0f-1a8b9f71a8feae35-01\r\n\r\n"
    b'{"type":"https://csat.dev/problems/validation","title":"Invalid request","status":422,'
    b'"detail":"[9]: JSON decode error","errors":[{"field":"[9]","message":"JSON decode error"}],'
    b'"field":"[9]"}'
)
# uvicorn's framing of a streamed body, and of an answer to a request that asked to close.
CHUNKED = (
    b"HTTP/1.1 200 OK\r\nserver: uvicorn\r\ntransfer-encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n"
)
CLOSING = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 2\r\n\r\n{}"


@pytest.mark.parametrize(
    ("raw", "status", "body", "close"),
    [
        (ACCEPTED, 202, b'{"rating_id":"cap-0","status":"accepted"}', False),
        (INVALID, 422, INVALID[INVALID.index(b"{") :], False),
        (CHUNKED, 200, b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n", False),
        (CLOSING, 503, b"{}", True),
    ],
)
def test_a_whole_answer_is_read_to_its_last_byte_and_no_prefix_looks_whole(
    raw: bytes, status: int, body: bytes, close: bool
) -> None:
    head = loadgen.parse_head(raw)
    assert head is not None and (head.status, head.close) == (status, close)
    assert loadgen.message_end(raw, head) == len(raw)
    assert raw[head.end :] == body
    for cut in range(len(raw)):
        part = raw[:cut]
        h = loadgen.parse_head(part)
        assert h is None or loadgen.message_end(part, h) is None, cut


def test_the_first_of_two_answers_ends_where_the_second_begins() -> None:
    both = ACCEPTED + CHUNKED
    head = loadgen.parse_head(both)
    assert head is not None and loadgen.message_end(both, head) == len(ACCEPTED)


def test_chunked_trailers_are_part_of_the_answer() -> None:
    raw = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nx-t: 1\r\n\r\n"
    head = loadgen.parse_head(raw)
    assert head is not None and loadgen.message_end(raw, head) == len(raw)
    assert loadgen.message_end(raw[:-2], head) is None


def test_what_is_not_http_is_refused() -> None:
    with pytest.raises(ValueError, match=r"not an HTTP/1\.x response"):
        loadgen.parse_head(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")


def test_a_pre_encoded_post_is_byte_for_byte_what_httpx_sends() -> None:
    rid, body = loadgen.rating("run1", 7)
    assert rid == "run1-7" and body["customer"]["id"] == "run1-cus-7" and body["score"] == 1
    body["comment"] = "Livré en retard"  # non-ASCII text goes as UTF-8, as httpx sends it
    with httpx.Client(base_url="http://127.0.0.1:8123") as client:  # what the previous generator sent
        ref = client.build_request("POST", "/v1/ratings", json=body)
    head = b"".join(k + b": " + v + b"\r\n" for k, v in ref.headers.raw)
    expected = b"POST /v1/ratings HTTP/1.1\r\n" + head + b"\r\n" + ref.read()
    assert loadgen.encode_post("127.0.0.1:8123", loadgen.PATH, loadgen.json_bytes(body)) == expected


def test_extra_headers_follow_httpxs_defaults() -> None:
    extra = (("Authorization", "Bearer pk_x"), ("Idempotency-Key", "k1"))
    raw = loadgen.encode_post("h:1", "/p", b"{}", extra)
    assert b"\r\nUser-Agent: python-httpx/" in raw
    assert raw.index(b"User-Agent") < raw.index(b"Authorization: Bearer pk_x\r\nIdempotency-Key: k1\r\n")


class _Server:
    """A loopback server that answers each request with ``answer(n)`` once ``release`` is set."""

    def __init__(self, answer: Callable[[int], bytes], *, close: bool = False) -> None:
        self.answer = answer
        self.close = close  # close each connection after its first answer
        self.requests: list[bytes] = []
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                self.requests.append(head + await reader.readexactly(length))
                self.arrived.set()
                await self.release.wait()
                writer.write(self.answer(len(self.requests) - 1))
                await writer.drain()
                if self.close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def _served(server: _Server) -> AsyncIterator[str]:
    srv = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.close()


def _requests(n: int) -> list[tuple[str, bytes]]:
    return [(f"r-{i}", loadgen.encode_post("h", loadgen.PATH, b'{"i":%d}' % i)) for i in range(n)]


async def test_a_request_that_finds_every_connection_busy_opens_another_and_idle_ones_are_reused() -> None:
    server = _Server(lambda n: ACCEPTED)
    async with _served(server) as url:
        gen = loadgen.LeanLoad(url, _requests(3))
        gen.start(0)
        await server.arrived.wait()  # request 0 is in flight, unanswered
        server.arrived.clear()
        gen.start(1)
        await server.arrived.wait()  # on a second connection: the first is still busy
        assert gen.result.connections == 2 == server.connections
        server.release.set()
        await gen.all_done.wait()
        gen.all_done.clear()
        gen.start(2)
        await gen.all_done.wait()
        gen.close()
    assert gen.result.connections == 2 and server.connections == 2
    assert gen.result.statuses == {"202": 3} and sorted(gen.result.sent) == ["r-0", "r-1", "r-2"]
    assert [r.split(b"\r\n\r\n")[1] for r in server.requests] == [b'{"i":0}', b'{"i":1}', b'{"i":2}']


async def test_a_closing_answer_counts_and_its_connection_is_not_reused() -> None:
    server = _Server(lambda n: CLOSING, close=True)
    server.release.set()
    async with _served(server) as url:
        gen = loadgen.LeanLoad(url, _requests(2))
        for i in range(2):
            gen.all_done.clear()
            gen.start(i)
            await gen.all_done.wait()
        gen.close()
    assert gen.result.statuses == {"503": 2} and gen.result.sent == {}
    assert gen.result.connections == 2


async def test_a_cut_answer_refused_connection_and_timeout_are_counted_by_name() -> None:
    server = _Server(lambda n: ACCEPTED[:50], close=True)  # the answer is cut short
    server.release.set()
    async with _served(server) as url:
        gen = loadgen.LeanLoad(url, _requests(1))
        gen.start(0)
        await gen.all_done.wait()
    assert gen.result.statuses == {"RemoteProtocolError": 1}

    silent = _Server(lambda n: ACCEPTED)  # never released: no answer
    async with _served(silent) as url:
        gen = loadgen.LeanLoad(url, _requests(1), timeout_s=0.05)
        gen.start(0)
        await gen.all_done.wait()
        silent.release.set()
    assert gen.result.statuses == {"ReadTimeout": 1}

    async with _served(_Server(lambda n: ACCEPTED)) as url:
        pass  # closed: its port now refuses
    gen = loadgen.LeanLoad(url, _requests(1))
    gen.start(0)
    await gen.all_done.wait()
    assert gen.result.statuses == {"ConnectError": 1}


def test_the_load_runs_on_uvloop_as_on_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    """uvloop's transports are not ``asyncio.Transport`` subclasses: the same requests must get through."""

    async def load() -> loadgen.LoadResult:
        server = _Server(lambda n: ACCEPTED)
        server.release.set()
        async with _served(server) as url:
            gen = loadgen.LeanLoad(url, _requests(3))
            for i in range(3):
                gen.all_done.clear()
                gen.start(i)
                await gen.all_done.wait()
            gen.close()
        return gen.result

    for loop in ("uvloop", "asyncio"):
        monkeypatch.setenv("BENCH_LOADGEN_LOOP", loop)
        result = loadgen.run_loop(load())
        assert result.statuses == {"202": 3} and result.connections == 1, loop


async def test_the_schedule_starts_every_request_once_in_order() -> None:
    started: list[int] = []
    result = loadgen.LoadResult()
    await loadgen.on_schedule(2000.0, 6, started.append, result)
    assert started == list(range(6))
