"""Fault suite fixtures: everything a test prints or logs is kept, so the last test can scan it for PII."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from devstack.stack import ROOT
from tests.faults.harness import LOG_PATHS

#: Where the scenarios' stacks keep data and logs (kept after the run for a post-mortem).
FAULT_DIR = ROOT / "var" / "faults"
#: Captured stdout, stderr and log records of every fault test (pytest's report sections).
OUTPUT_LOG = FAULT_DIR / "test-output.log"


def pytest_sessionstart(session: pytest.Session) -> None:
    shutil.rmtree(FAULT_DIR, ignore_errors=True)
    FAULT_DIR.mkdir(parents=True)
    OUTPUT_LOG.write_text("")
    LOG_PATHS.append(OUTPUT_LOG)


@pytest.fixture
def fault_dir(request: pytest.FixtureRequest) -> Path:
    """A directory of its own for one scenario under var/faults/."""
    # Short: PostgreSQL's Unix socket path inside it must stay under 108 bytes.
    name = re.sub(r"[^A-Za-z0-9]+", "-", str(request.node.name).removeprefix("test_")).strip("-")
    path: Path = FAULT_DIR / f"{name[:24]}-{abs(hash(request.node.nodeid)) % 10_000:04d}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    with OUTPUT_LOG.open("a", encoding="utf-8") as out:
        for title, content in report.sections:
            out.write(f"--- {report.nodeid} {report.when} {title}\n{content}\n")
        if report.longrepr is not None:
            out.write(f"--- {report.nodeid} {report.when} failure\n{report.longreprtext}\n")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Every scenario's figures, whether it passed or not."""
    from tests.faults.harness import FIGURES

    if not FIGURES:
        return
    terminalreporter.section("fault scenarios: figures")
    for fig in FIGURES:
        rest = " ".join(f"{k}={v}" for k, v in fig.items() if k != "scenario")
        terminalreporter.write_line(f"{fig['scenario']}: {rest}")
