"""An httpx transport that connects only to addresses ``shared.security.ssrf`` approved.

The address check happens inside the connection step: the host is resolved once, every address is
checked, and the socket is opened to one of those very addresses. No second resolution happens
between check and connect, so DNS rebinding cannot slip an internal address in; TLS still verifies
the certificate against the host name. Proxies from the environment are ignored (a proxy would do
the connecting, out of the guard's sight), and each redirect hop passes through the same checks.
"""

from __future__ import annotations

from collections.abc import Iterable

import httpcore
import httpx

from shared.security.ssrf import (
    OutboundPolicy,
    OutboundRefused,
    Resolver,
    parse_outbound_url,
    system_resolve,
    vet_host,
)

DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """Resolves and checks the host itself, then connects the inner backend to an approved address."""

    def __init__(
        self, *, policy: OutboundPolicy, resolve: Resolver, inner: httpcore.AsyncNetworkBackend
    ) -> None:
        self.policy = policy
        self.resolve = resolve
        self.inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's backend interface passes it
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await vet_host(host, port, policy=self.policy, resolve=self.resolve)
        last: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None  # vet_host never returns an empty list
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's backend interface passes it
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise OutboundRefused("outbound calls do not use Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """``httpx.AsyncHTTPTransport`` whose every request passes the form checks and the address guard."""

    def __init__(
        self,
        *,
        policy: OutboundPolicy,
        resolve: Resolver = system_resolve,
        limits: httpx.Limits = DEFAULT_LIMITS,
        http2: bool = False,
    ) -> None:
        super().__init__(trust_env=False, limits=limits, http2=http2)
        self.policy = policy
        # httpx builds its connection pool without a network-backend parameter; the pool is rebuilt
        # with the same limits and TLS context and our backend (httpcore's documented extension point).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=http2,
            network_backend=GuardedNetworkBackend(
                policy=policy, resolve=resolve, inner=httpcore.AnyIOBackend()
            ),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        parse_outbound_url(str(request.url), policy=self.policy)
        return await super().handle_async_request(request)


def guarded_client(
    *, policy: OutboundPolicy, resolve: Resolver = system_resolve, timeout_s: float = 10.0
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` for admin-set URLs: guarded transport, no redirects followed."""
    return httpx.AsyncClient(
        transport=GuardedTransport(policy=policy, resolve=resolve),
        timeout=timeout_s,
        follow_redirects=False,
        trust_env=False,
    )
