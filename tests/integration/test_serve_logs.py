"""`csat serve`, the container entrypoint, as a real process: every line it writes to stderr is the
app's scrubbed JSON, uvicorn's own records included. An unhandled exception (here the database is
unreachable) used to reach stderr as uvicorn's plain-text traceback, past the scrubbing that keeps a
driver's quoted values (customer data) out of the logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx
import pytest

from devstack.ports import free_port
from shared.settings import DEV_ADMIN_KEY

pytestmark = pytest.mark.integration


def test_an_unhandled_exception_reaches_stderr_as_one_scrubbed_json_line() -> None:
    port, nowhere = free_port(), free_port()  # nothing listens on ``nowhere``
    env = {
        **os.environ,
        "CSAT_ENVIRONMENT": "dev",
        "DATABASE_URL": f"postgresql://csat@127.0.0.1:{nowhere}/csat",
        "KAFKA_BOOTSTRAP": f"127.0.0.1:{nowhere}",
        "CSAT_LOG_FORMAT": "json",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "serve", "scorer", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        status = 0
        deadline = time.monotonic() + 60
        with httpx.Client(timeout=5, headers={"Authorization": f"Bearer {DEV_ADMIN_KEY}"}) as client:
            while status == 0 and time.monotonic() < deadline:
                try:  # the credential is the dev key, so the route itself runs and fails on the database
                    status = client.get(f"http://127.0.0.1:{port}/v1/scores?window=7d").status_code
                except httpx.TransportError:
                    time.sleep(0.2)
        assert status == 500
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    lines = [line for line in err.splitlines() if line.strip()]
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"a line of csat serve's stderr is not the app's JSON: {line[:200]!r}")
    failed = [r for r in records if r.get("event") == "Exception in ASGI application"]
    assert len(failed) == 1 and failed[0]["service"] == "scorer" and failed[0]["level"] == "error"
    trace = failed[0]["exception"]  # the formatted traceback, inside the JSON record
    assert trace.startswith("Traceback (most recent call last):") and "ConnectionRefusedError" in trace
