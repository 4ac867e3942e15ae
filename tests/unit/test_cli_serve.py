"""`csat serve <service>` is the container entrypoint the manifests and the Dockerfile use."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from services.cli.commands import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("service", ["collector", "scorer", "actions", "notifier", "console"])
def test_serve_runs_one_service_with_uvicorn(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    monkeypatch.setenv("CSAT_HOST", "0.0.0.0")
    monkeypatch.setenv("CSAT_PORT", "8123")
    assert main(["serve", service]) == 0
    ((app, kwargs),) = calls
    assert app == f"services.{service}.main:app"
    assert (kwargs["host"], kwargs["port"], kwargs["loop"], kwargs["access_log"]) == (
        "0.0.0.0",
        8123,
        "uvloop",
        False,
    )
    assert kwargs["log_config"] is None  # uvicorn's records go through the app's scrubbing pipeline


def test_dockerfile_copies_what_exists_and_uses_the_cli_entrypoint() -> None:
    text = (ROOT / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (?!--from)(\S+(?: \S+)*) \S+$", text, flags=re.MULTILINE):
        for path in source.split():
            assert (ROOT / path).exists(), path
    assert 'ENTRYPOINT ["csat"]' in text and "USER 10001:10001" in text
