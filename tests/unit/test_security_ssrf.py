"""The outbound URL guard: form checks at save time, address checks at use time, every disguise refused."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from shared.security.ssrf import (
    IPAddress,
    OutboundPolicy,
    OutboundRefused,
    address_refusal,
    parse_outbound_url,
    vet_outbound_url,
)

PROD = OutboundPolicy(https_only=True)
DEV = OutboundPolicy(https_only=False)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "metadata"),
        ("169.254.10.10", "link-local"),
        ("100.64.0.1", "CGNAT"),
        ("100.127.255.254", "CGNAT"),
        ("100.100.100.200", "metadata"),
        ("168.63.129.16", "metadata"),
        ("192.0.2.10", "private"),  # documentation range
        ("198.18.0.1", "private"),  # benchmarking range
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "private"),
        ("255.255.255.255", "private"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "unique-local"),
        ("fd12:3456::1", "unique-local"),
        ("fd00:ec2::254", "metadata"),
        ("ff02::1", "multicast"),
        ("2001:db8::1", "private"),  # documentation range
        ("::ffff:127.0.0.1", "IPv4-mapped address of 127.0.0.1: a loopback"),
        ("::ffff:169.254.169.254", "IPv4-mapped address of 169.254.169.254: a cloud metadata"),
        ("::ffff:10.0.0.1", "IPv4-mapped address of 10.0.0.1: a private"),
        ("2002:7f00:1::1", "6to4 address of 127.0.0.1"),
        ("64:ff9b::a9fe:a9fe", "NAT64 address of 169.254.169.254"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
        ("::7f00:1", "reserved"),  # IPv4-compatible (deprecated) form of 127.0.0.1
        ("fe80::1%eth0", "zone id"),
    ],
)
def test_internal_addresses_are_refused(address: str, reason: str) -> None:
    why = address_refusal(ip_address(address))
    assert why is not None and reason in why


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]
)
def test_public_addresses_pass(address: str) -> None:
    assert address_refusal(ip_address(address)) is None


@pytest.mark.parametrize(
    ("url", "policy", "message"),
    [
        ("http://hooks.example.com/x", PROD, "must start with https://"),
        ("ftp://hooks.example.com/x", DEV, "must start with https:// or http://"),
        ("file:///etc/passwd", DEV, "must start with"),
        ("gopher://127.0.0.1:6379/_", DEV, "must start with"),
        ("https://user:pw@hooks.example.com/", PROD, "credentials"),
        ("https://hooks.example.com@127.0.0.1/", PROD, "credentials"),
        ("https:///path", PROD, "no host"),
        ("https://localhost/x", PROD, "this machine"),
        ("https://api.localhost./x", PROD, "this machine"),
        ("https://2130706433/", PROD, "non-canonical IPv4"),  # decimal 127.0.0.1
        ("https://0x7f000001/", PROD, "non-canonical IPv4"),  # hex
        ("https://0177.0.0.1/", PROD, "non-canonical IPv4"),  # octal
        ("https://0x7f.0.0.1/", PROD, "non-canonical IPv4"),
        ("https://127.1/", PROD, "non-canonical IPv4"),  # short form
        ("https://10.1/", PROD, "non-canonical IPv4"),
        ("https://[fe80::1%25eth0]/", PROD, "zone id"),
        ("https://[::1/", PROD, "not a valid URL"),
        ("https://hooks.example.com:99999/", PROD, "not a valid URL"),
        ("https://hooks.example.com:0/", PROD, "port 0"),
        ("https://bad_host!.example.com/", PROD, "not a valid host name"),
    ],
)
def test_form_checks(url: str, policy: OutboundPolicy, message: str) -> None:
    with pytest.raises(OutboundRefused, match=message):
        parse_outbound_url(url, policy=policy)


@pytest.mark.parametrize(
    ("url", "policy", "host", "port"),
    [
        ("https://Hooks.Example.com/x?y=1", PROD, "hooks.example.com", 443),
        ("http://hooks.example.com:8080/", DEV, "hooks.example.com", 8080),
        ("https://93.184.216.34/", PROD, "93.184.216.34", 443),
        ("https://[2606:4700::1111]:8443/", PROD, "2606:4700::1111", 8443),
        ("https://café.example/", PROD, "xn--caf-dma.example", 443),
        ("https://cafe.be/", PROD, "cafe.be", 443),  # hex letters only, still a name
        ("https://0x10.com/", PROD, "0x10.com", 443),
    ],
)
def test_accepted_forms(url: str, policy: OutboundPolicy, host: str, port: int) -> None:
    target = parse_outbound_url(url, policy=policy)
    assert (target.host, target.port) == (host, port)


class FakeDns:
    """A resolver with a fixed table; records which names were asked."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.calls.append(host)
        return [ip_address(a) for a in self.table.get(host, [])]


@pytest.mark.parametrize(
    ("url", "answers", "message"),
    [
        ("https://hooks.example.com/", ["127.0.0.1"], "loopback"),
        ("https://hooks.example.com/", ["93.184.216.34", "10.0.0.5"], "private"),  # any bad address
        ("https://hooks.example.com/", ["::ffff:169.254.169.254"], "metadata"),
        ("https://hooks.example.com/", [], "did not resolve"),
        ("https://169.254.169.254/latest/meta-data/", [], "metadata"),
        ("https://[::ffff:7f00:1]/", [], "loopback"),
    ],
)
async def test_resolved_addresses_are_all_checked(url: str, answers: list[str], message: str) -> None:
    resolve = FakeDns({"hooks.example.com": answers})
    with pytest.raises(OutboundRefused, match=message):
        await vet_outbound_url(url, policy=PROD, resolve=resolve)


async def test_literal_addresses_are_not_resolved_and_public_names_pass() -> None:
    resolve = FakeDns({"hooks.example.com": ["93.184.216.34", "2606:4700::1111"]})
    vetted = await vet_outbound_url("https://hooks.example.com/x", policy=PROD, resolve=resolve)
    assert [str(a) for a in vetted.addresses] == ["93.184.216.34", "2606:4700::1111"]
    await vet_outbound_url("https://8.8.8.8/", policy=PROD, resolve=resolve)
    assert resolve.calls == ["hooks.example.com"]


async def test_allow_lists_open_internal_receivers_only() -> None:
    policy = OutboundPolicy.build(https_only=True, allow=["10.1.2.0/24", "hooks.internal.example", " "])
    resolve = FakeDns(
        {"hooks.internal.example": ["10.9.9.9"], "other.internal": ["10.1.2.7"], "x": ["10.1.3.1"]}
    )
    await vet_outbound_url("https://hooks.internal.example/", policy=policy, resolve=resolve)
    await vet_outbound_url("https://other.internal/", policy=policy, resolve=resolve)
    await vet_outbound_url("https://10.1.2.200/", policy=policy, resolve=resolve)
    with pytest.raises(OutboundRefused, match="private"):
        await vet_outbound_url("https://x/", policy=policy, resolve=resolve)
    assert OutboundPolicy.for_environment("prod").https_only
    assert not OutboundPolicy.for_environment("dev").https_only
