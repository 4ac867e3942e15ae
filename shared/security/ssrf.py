"""Outbound URLs set by admins (webhooks, Slack, providers) may reach only the public internet.

A URL is checked twice: its form when it is saved (``parse_outbound_url``: scheme, no credentials, no
ambiguous numeric host) and every address it resolves to when it is used (``vet_outbound_url``):
loopback, private, link-local, CGNAT, unique-local, multicast, reserved and cloud-metadata addresses
are refused, also when hidden inside IPv6 (IPv4-mapped, 6to4, NAT64, Teredo), unless allow-listed.
``shared.security.outbound`` then connects only to the addresses this module approved, so a DNS answer
that changes between the check and the connection (DNS rebinding) cannot redirect the request.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from urllib.parse import urlsplit

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]

_CGNAT = ip_network("100.64.0.0/10")
_ULA = ip_network("fc00::/7")
_NAT64 = (ip_network("64:ff9b::/96"), ip_network("64:ff9b:1::/48"))
_METADATA = frozenset(
    {
        ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack instance metadata
        ip_address("fd00:ec2::254"),  # AWS instance metadata over IPv6
        ip_address("168.63.129.16"),  # Azure host services (wireserver)
        ip_address("100.100.100.200"),  # Alibaba Cloud instance metadata
    }
)
_NUMERIC_PART = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")
_HOST_LABELS = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$")


class OutboundRefused(ValueError):
    """An outbound URL that must not be called; the message says why (never a resolved address list)."""


@dataclass(frozen=True, slots=True)
class OutboundPolicy:
    """What outbound calls may reach. ``allow_networks`` / ``allow_hosts`` open internal receivers."""

    https_only: bool = True
    allow_networks: tuple[IPNetwork, ...] = ()
    allow_hosts: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def build(cls, *, https_only: bool, allow: Iterable[str] = ()) -> OutboundPolicy:
        """From settings: each ``allow`` item is a CIDR (``10.1.2.0/24``) or an exact host name."""
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        for item in allow:
            text = item.strip().lower()
            if not text:
                continue
            try:
                networks.append(ip_network(text, strict=False))
            except ValueError:
                hosts.add(text.rstrip("."))
        return cls(https_only=https_only, allow_networks=tuple(networks), allow_hosts=frozenset(hosts))

    @classmethod
    def for_environment(cls, environment: str, allow: Iterable[str] = ()) -> OutboundPolicy:
        """https only in prod; plain http accepted in dev and test (local fakes)."""
        return cls.build(https_only=environment == "prod", allow=allow)

    def allows_address(self, address: IPAddress) -> bool:
        return any(address.version == net.version and address in net for net in self.allow_networks)


@dataclass(frozen=True, slots=True)
class OutboundTarget:
    """A URL's parts after the form checks: lower-case host (no brackets), explicit port."""

    scheme: str
    host: str
    port: int
    literal: IPAddress | None


@dataclass(frozen=True, slots=True)
class VettedUrl:
    target: OutboundTarget
    addresses: tuple[IPAddress, ...]


def address_refusal(address: IPAddress) -> str | None:
    """Why a connection to ``address`` is refused, or None for a public unicast address."""
    if isinstance(address, IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None:
            why = address_refusal(inner[1])
            return f"{inner[0]} of {inner[1]}: {why}" if why else None
        if address.teredo is not None:
            return "a Teredo tunnel address"
        if address.scope_id:
            return "an address with a zone id"
    return _plain_refusal(address)


def _embedded_ipv4(address: IPv6Address) -> tuple[str, IPv4Address] | None:
    if address.ipv4_mapped is not None:
        return "an IPv4-mapped address", address.ipv4_mapped
    if address.sixtofour is not None:
        return "a 6to4 address", address.sixtofour
    if any(address in net for net in _NAT64):
        return "a NAT64 address", IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _plain_refusal(address: IPAddress) -> str | None:
    checks: list[tuple[bool, str]] = [
        (address in _METADATA, "a cloud metadata address"),
        (address.is_unspecified, "the unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (isinstance(address, IPv4Address) and address in _CGNAT, "a shared (CGNAT, 100.64.0.0/10) address"),
        (isinstance(address, IPv6Address) and address in _ULA, "a unique-local (fc00::/7) address"),
        (address.is_multicast, "a multicast address"),
        (address.is_private, "a private address"),
        (address.is_reserved, "a reserved address"),
        (not address.is_global, "not a globally routable address"),
    ]
    return next((why for refused, why in checks if refused), None)


def _numeric_ipv4_form(host: str) -> bool:
    """Whether ``inet_aton`` would read ``host`` as a number (``2130706433``, ``0x7f.1``, ``0177.0.0.1``)."""
    parts = host.split(".")
    return 1 <= len(parts) <= 4 and all(_NUMERIC_PART.match(p) for p in parts)


def _literal(host: str) -> IPAddress | None:
    if ":" in host:
        try:
            return IPv6Address(host)
        except ValueError:
            raise OutboundRefused(f"{host!r} is not a valid IPv6 address") from None
    if _numeric_ipv4_form(host):
        try:
            return IPv4Address(host)
        except ValueError:
            raise OutboundRefused(
                f"host {host!r} is a non-canonical IPv4 form (decimal, octal, hex or short); "
                "write the address as four decimal numbers"
            ) from None
    return None


def _hostname(raw: str) -> str:
    host = raw.rstrip(".")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise OutboundRefused("the host name is not a valid internationalised name") from None
    if not _HOST_LABELS.match(host) or len(host) > 253:
        raise OutboundRefused(f"{raw!r} is not a valid host name")
    return host


def parse_outbound_url(url: str, *, policy: OutboundPolicy) -> OutboundTarget:
    """The form checks, without DNS: what a rule or setting is validated with when it is saved."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise OutboundRefused(f"not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    allowed = ("https",) if policy.https_only else ("https", "http")
    if scheme not in allowed:
        raise OutboundRefused(f"the URL must start with {' or '.join(s + '://' for s in allowed)}")
    if "@" in parts.netloc:
        raise OutboundRefused("the URL must not carry credentials (user:password@)")
    raw = (parts.hostname or "").lower()
    if not raw:
        raise OutboundRefused("the URL has no host")
    if "%" in raw:
        raise OutboundRefused("the host must not carry an IPv6 zone id")
    literal = _literal(raw)
    host = str(literal) if literal is not None else _hostname(raw)
    is_localhost = literal is None and (host == "localhost" or host.endswith(".localhost"))
    if is_localhost and host not in policy.allow_hosts:
        raise OutboundRefused(f"host {host!r} is this machine")
    if port == 0:
        raise OutboundRefused("port 0 is not a destination")
    return OutboundTarget(
        scheme=scheme, host=host, port=port or (443 if scheme == "https" else 80), literal=literal
    )


def check_addresses(host: str, addresses: Sequence[IPAddress], *, policy: OutboundPolicy) -> None:
    """Refuse when ANY address of ``host`` is forbidden: a client could pick any of them."""
    if not addresses:
        raise OutboundRefused(f"host {host!r} did not resolve")
    if host in policy.allow_hosts:
        return
    for address in addresses:
        if policy.allows_address(address):
            continue
        why = address_refusal(address)
        if why:
            raise OutboundRefused(
                f"host {host!r} resolves to {why}; add it to the outbound allow-list if intended"
            )


async def system_resolve(host: str, port: int, *, timeout_s: float = 5.0) -> list[IPAddress]:
    """Every address the system resolver gives for ``host`` (TCP), in its order, without duplicates."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout_s)
    except (OSError, TimeoutError) as exc:
        raise OutboundRefused(f"host {host!r} did not resolve ({type(exc).__name__})") from None
    out: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in out:
            out.append(address)
    return out


async def vet_host(host: str, port: int, *, policy: OutboundPolicy, resolve: Resolver) -> list[IPAddress]:
    """The addresses of ``host`` a connection may use (all of them checked), resolving names once."""
    literal = _literal(host.strip("[]").lower())
    addresses = [literal] if literal is not None else await resolve(host, port)
    check_addresses(host, addresses, policy=policy)
    return addresses


async def vet_outbound_url(
    url: str, *, policy: OutboundPolicy, resolve: Resolver = system_resolve
) -> VettedUrl:
    """Form and address checks of ``url`` now; connect with ``outbound.guarded_transport`` to keep them."""
    target = parse_outbound_url(url, policy=policy)
    addresses = await vet_host(target.host, target.port, policy=policy, resolve=resolve)
    return VettedUrl(target=target, addresses=tuple(addresses))
