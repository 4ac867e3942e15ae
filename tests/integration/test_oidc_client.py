"""OpenID Connect sign-in against a real provider process (oidc-provider-mock, an authlib server)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from devstack.ports import free_port, wait_for_port
from shared.identity.oidc import OidcClient, OidcClientConfig, OidcError

pytestmark = pytest.mark.integration

ALICE = {"sub": "alice-0001", "email": "Alice@Example.com", "email_verified": True, "name": "Alice Martin"}


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-W",
            "ignore",
            "-m",
            "oidc_provider_mock",
            "--port",
            str(port),
            "--require-nonce",
            "true",
            "--user-claims",
            json.dumps(ALICE),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, timeout_s=20.0)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
async def client(provider: str) -> AsyncIterator[OidcClient]:
    async with httpx.AsyncClient(timeout=10) as http:
        config = OidcClientConfig(
            issuer=provider,
            client_id="csat-console",
            client_secret="console-secret",
            redirect_uri="http://127.0.0.1:8004/auth/callback",
            require_https=False,
        )
        yield OidcClient(config=config, http=http)


async def _authorise(url: str, sub: str) -> dict[str, str]:
    """What a browser does at the provider: choose the person, follow the redirect back to us."""
    async with httpx.AsyncClient(timeout=10) as browser:
        answer = await browser.post(url, data={"sub": sub})
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    assert location.startswith("http://127.0.0.1:8004/auth/callback?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def test_sign_in_returns_the_providers_person(client: OidcClient) -> None:
    start = await client.begin()
    query = parse_qs(urlsplit(start.url).query)
    assert query["code_challenge_method"] == ["S256"] and query["state"] == [start.pending.state]
    assert query["nonce"] == [start.pending.nonce] and query["scope"] == ["openid email profile"]
    back = await _authorise(start.url, ALICE["sub"])  # type: ignore[arg-type] # a str in ALICE
    identity = await client.finish(pending=start.pending, code=back["code"], state=back["state"])
    assert identity.subject == "alice-0001" and identity.issuer == (await client.metadata()).issuer
    assert (identity.email, identity.email_verified, identity.name) == (
        "alice@example.com",
        True,
        "Alice Martin",
    )


async def test_a_forged_state_is_refused_before_the_code_is_used(client: OidcClient) -> None:
    start = await client.begin()
    back = await _authorise(start.url, "mallory")
    with pytest.raises(OidcError, match="state"):
        await client.finish(pending=start.pending, code=back["code"], state="forged")
    # The untouched code still works once: nothing was spent on the refused attempt.
    assert (
        await client.finish(pending=start.pending, code=back["code"], state=back["state"])
    ).subject == "mallory"


async def test_a_code_from_another_sign_in_fails_the_nonce(client: OidcClient) -> None:
    first, second = await client.begin(), await client.begin()
    back = await _authorise(first.url, ALICE["sub"])  # type: ignore[arg-type] # a str in ALICE
    swapped = replace(second.pending, state=first.pending.state)  # an attacker's code injected into our flow
    with pytest.raises(OidcError, match="nonce"):
        await client.finish(pending=swapped, code=back["code"], state=back["state"])


async def test_a_code_is_used_once_and_a_stale_sign_in_is_refused(client: OidcClient) -> None:
    start = await client.begin()
    back = await _authorise(start.url, ALICE["sub"])  # type: ignore[arg-type] # a str in ALICE
    await client.finish(pending=start.pending, code=back["code"], state=back["state"])
    with pytest.raises(OidcError, match="token exchange failed"):
        await client.finish(pending=start.pending, code=back["code"], state=back["state"])
    old = replace(start.pending, created_at=start.pending.created_at - timedelta(minutes=11))
    with pytest.raises(OidcError, match="too long"):
        await client.finish(pending=old, code="whatever", state=old.state)


async def test_the_issuer_must_match_discovery_and_be_https_in_prod(provider: str) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        real = (await http.get(f"{provider}/.well-known/openid-configuration")).json()

    def impostor(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={**real, "issuer": "https://evil.example.com"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(impostor)) as http:
        config = OidcClientConfig(
            issuer="https://idp.example.com", client_id="c", redirect_uri="https://x/cb"
        )
        with pytest.raises(OidcError, match="another issuer"):
            await OidcClient(config=config, http=http).metadata()
        with pytest.raises(OidcError, match="https"):
            OidcClient(config=replace(config, issuer=provider), http=http)
