"""Liveness follows the consumer loop: a loop that died for good makes /healthz answer 503."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.consumer import Received
from shared.envelope import OutgoingRecord
from shared.http import install_common
from shared.runtime import ConsumerRuntime
from shared.settings import CommonSettings


async def _crash(_conn: AsyncConnection, _batch: Sequence[Received]) -> list[OutgoingRecord]:
    raise AssertionError("never called")


def test_healthz_reports_a_dead_consumer_loop() -> None:
    runtime = ConsumerRuntime(
        name="t",
        settings=CommonSettings(environment="test"),
        topics=["x"],
        group="g",
        dlq_topic="d",
        handler=_crash,
    )
    app = FastAPI()
    app.state.runtime = runtime
    install_common(app, service="t", checks={})
    client = TestClient(app)
    assert client.get("/healthz").status_code == 200  # not started yet: alive

    async def die() -> None:
        raise RuntimeError("loop crashed")

    loop = asyncio.new_event_loop()
    try:
        task = loop.create_task(die())
        loop.run_until_complete(asyncio.wait([task]))
    finally:
        loop.close()
    assert isinstance(task.exception(), RuntimeError)
    runtime._task = task  # the test plays the part of a loop that crashed
    dead = client.get("/healthz")
    assert dead.status_code == 503
    assert dead.json()["status"] == "dead"


def test_healthz_without_a_runtime_is_ok() -> None:
    app = FastAPI()
    install_common(app, service="plain", checks={})
    assert TestClient(app).get("/healthz").json() == {"status": "ok", "service": "plain"}
