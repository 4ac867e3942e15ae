"""The guarded httpx transport against a real loopback server: it connects only where the guard agreed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from ipaddress import ip_address

import pytest

from shared.security.outbound import guarded_client
from shared.security.ssrf import IPAddress, OutboundPolicy, OutboundRefused, vet_outbound_url

pytestmark = pytest.mark.integration


class Server:
    """A one-line HTTP server on 127.0.0.1 that records the Host header of each request."""

    def __init__(self) -> None:
        self.hosts: list[str] = []
        self.port = 0
        self.redirect_to: str | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        host = next(
            (
                line.split(":", 1)[1].strip()
                for line in head.split("\r\n")
                if line.lower().startswith("host:")
            ),
            "",
        )
        self.hosts.append(host)
        if self.redirect_to and "/internal" not in head.split("\r\n", 1)[0]:
            writer.write(
                f"HTTP/1.1 302 Found\r\nLocation: {self.redirect_to}\r\nContent-Length: 0\r\n\r\n".encode()
            )
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    found = Server()
    listener = await asyncio.start_server(found.handle, "127.0.0.1", 0)
    found.port = listener.sockets[0].getsockname()[1]
    try:
        yield found
    finally:
        listener.close()
        await listener.wait_closed()


class ChangingDns:
    """Answers each lookup of a name with the next address of its list (a rebinding name server)."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = answers
        self.calls = 0

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        return [ip_address(answer)]


async def test_a_loopback_address_is_refused_before_any_connection(server: Server) -> None:
    async with guarded_client(policy=OutboundPolicy(https_only=False)) as client:
        with pytest.raises(OutboundRefused, match="loopback"):
            await client.get(f"http://127.0.0.1:{server.port}/")
    assert server.hosts == []


async def test_the_connection_goes_to_the_address_the_guard_resolved(server: Server) -> None:
    policy = OutboundPolicy.build(https_only=False, allow=["127.0.0.0/8"])
    dns = ChangingDns(["127.0.0.1"])
    async with guarded_client(policy=policy, resolve=dns) as client:
        answer = await client.get(f"http://hooks.test:{server.port}/x")
    assert (answer.status_code, answer.text) == (200, "ok")
    assert server.hosts == [f"hooks.test:{server.port}"] and dns.calls == 1


async def test_dns_rebinding_after_the_check_is_refused_at_connect_time(server: Server) -> None:
    dns = ChangingDns(["93.184.216.34", "127.0.0.1"])
    policy = OutboundPolicy(https_only=False)
    url = f"http://rebind.test:{server.port}/"
    await vet_outbound_url(url, policy=policy, resolve=dns)  # saved: it looked public
    async with guarded_client(policy=policy, resolve=dns) as client:
        with pytest.raises(OutboundRefused, match="loopback"):
            await client.get(url)
    assert server.hosts == []


async def test_a_redirect_to_an_internal_address_is_refused(server: Server) -> None:
    policy = OutboundPolicy.build(https_only=False, allow=["hooks.test"])
    server.redirect_to = f"http://127.0.0.1:{server.port}/internal"
    async with guarded_client(policy=policy, resolve=ChangingDns(["127.0.0.1"])) as client:
        first = await client.get(f"http://hooks.test:{server.port}/")
        assert first.status_code == 302  # not followed by default
        with pytest.raises(OutboundRefused, match="loopback"):
            await client.get(f"http://hooks.test:{server.port}/", follow_redirects=True)
    assert len(server.hosts) == 2
