"""`csat serve` with an internal port, as the manifests run it: one process, two listeners; probes and
Prometheus reach health, readiness and metrics on the internal one, the API answers only on the public
one, and in prod the OpenAPI documents are internal only. The collector's admin routes (sources, keys,
identity secrets, survey minting, GDPR export) are internal only as well."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from devstack.ports import free_port
from shared.db import make_engine
from shared.identity.scopes import Scope
from shared.topics import Topics
from tests.helpers import wait_for
from tests.infra import Infra
from tests.integration.test_collector_trust import _token
from tests.unit.test_prod_settings import keygen_env_file

pytestmark = pytest.mark.integration


@contextmanager
def served(env: dict[str, str], *args: str) -> Iterator[None]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "serve", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


async def test_one_process_two_listeners_in_prod(infra: Infra, database_url: str, topics: Topics) -> None:
    public, internal = free_port(), free_port()
    secrets = {f"CSAT_{k.upper()}": v for k, v in keygen_env_file().items()}
    env = {
        **os.environ,
        **secrets,
        "CSAT_ENVIRONMENT": "prod",
        "KAFKA_BOOTSTRAP": infra.bootstrap,
        "DATABASE_URL": database_url,
        "CSAT_TOPIC_PREFIX": topics.prefix,
        "CSAT_INTERNAL_PORT": str(internal),
    }
    with served(env, "scorer", "--port", str(public)):
        async with httpx.AsyncClient(timeout=5) as client:

            async def ready() -> int:
                try:
                    return (await client.get(f"http://127.0.0.1:{internal}/readyz")).status_code
                except httpx.TransportError:
                    return 0

            await wait_for(ready, until=lambda s: s == 200, timeout_s=60, every_s=0.25)
            inside, outside = f"http://127.0.0.1:{internal}", f"http://127.0.0.1:{public}"
            for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"):
                assert (await client.get(inside + path)).status_code == 200, path
                assert (await client.get(outside + path)).status_code == 404, path
            scores = "/v1/scores?metric=csat&window=30d"
            assert (await client.get(outside + scores)).status_code == 401  # the API, with its credential
            assert (await client.get(inside + scores)).status_code == 404  # not on the internal listener
            assert "csat_http_requests_total" in (await client.get(inside + "/metrics")).text


async def test_the_collectors_admin_routes_are_internal_only(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    public, internal = free_port(), free_port()
    secrets = {f"CSAT_{k.upper()}": v for k, v in keygen_env_file().items()}
    env = {
        **os.environ,
        **secrets,
        "CSAT_ENVIRONMENT": "prod",
        "KAFKA_BOOTSTRAP": infra.bootstrap,
        "DATABASE_URL": database_url,
        "CSAT_TOPIC_PREFIX": topics.prefix,
        "CSAT_INTERNAL_PORT": str(internal),
    }
    engine = make_engine(database_url)
    try:
        token = await _token(engine, frozenset({Scope.SOURCES_ADMIN, Scope.GDPR_ADMIN}))
    finally:
        await engine.dispose()
    bearer = {"Authorization": f"Bearer {token}"}
    with served(env, "collector", "--port", str(public)):
        async with httpx.AsyncClient(timeout=5) as client:

            async def ready() -> int:
                try:
                    return (await client.get(f"http://127.0.0.1:{internal}/readyz")).status_code
                except httpx.TransportError:
                    return 0

            await wait_for(ready, until=lambda s: s == 200, timeout_s=60, every_s=0.25)
            inside, outside = f"http://127.0.0.1:{internal}", f"http://127.0.0.1:{public}"
            admin = [
                ("GET", "/v1/sources"),
                ("GET", "/v1/sources/shop-web/keys"),
                ("POST", "/v1/sources/shop-web/identity-secret"),
                ("POST", "/v1/email-links"),
                ("POST", "/v1/sms-surveys"),
                ("GET", "/v1/gdpr/customers/c-1/export"),
            ]
            for method, path in admin:
                # Not there at all on the public listener, even with a valid credential ...
                answer = await client.request(method, outside + path, headers=bearer, json={})
                assert answer.status_code == 404, path
                # ... and still behind the credential on the internal one.
                assert (await client.request(method, inside + path, json={})).status_code == 401, path
            assert (await client.get(inside + "/v1/sources", headers=bearer)).status_code == 200
            exported = await client.get(inside + "/v1/gdpr/customers/c-1/export", headers=bearer)
            assert exported.status_code == 200
            # The ingestion API stays public (its own credential), and is not on the internal listener.
            assert (await client.post(outside + "/v1/ratings", json={})).status_code == 401
            assert (await client.post(inside + "/v1/ratings", json={})).status_code == 404
