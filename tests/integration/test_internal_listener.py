"""`csat serve` with an internal port, as the manifests run it: one process, two listeners; probes and
Prometheus reach health, readiness and metrics on the internal one, the API answers only on the public
one, and in prod the OpenAPI documents are internal only."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from devstack.ports import free_port
from shared.topics import Topics
from tests.helpers import wait_for
from tests.infra import Infra
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
