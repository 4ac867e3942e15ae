"""Schemathesis against the collector's own OpenAPI document: no 5xx, and invalid input always gets a 4xx.

``POST /v1/ratings/batch`` and ``POST /v1/interactions/batch`` answer 202 with one result per item,
by contract: an invalid *item* is reported as rejected in its result rather than failing the batch,
so those operations run
with the no-5xx check only (its envelope errors, e.g. an empty or oversized list, are 422 and covered
by the unit tests). Every other operation runs with both checks.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults.harness import fault_stack, report

pytestmark = pytest.mark.timeout(600)

MAX_EXAMPLES = os.environ.get("CSAT_FAULT_FUZZ_EXAMPLES", "250")


BATCH = "^/v1/(ratings|interactions)/batch$"
RUNS = {
    "operations": (["--exclude-path-regex", BATCH], "not_a_server_error,negative_data_rejection"),
    "batch": (["--include-path-regex", BATCH], "not_a_server_error"),
}


def _schemathesis(
    url: str, out_dir: Path, select: list[str], checks: str
) -> subprocess.CompletedProcess[str]:
    st = Path(sys.executable).with_name("st")
    return subprocess.run(
        [
            str(st),
            "run",
            f"{url}/openapi.json",
            *select,
            "--checks",
            checks,
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            MAX_EXAMPLES,
            # One worker: with two threads, hypothesis' ast.parse of its filter lambdas hit CPython 3.11's
            # "AST constructor recursion depth mismatch" (python/cpython#106905) and the tool crashed mid-run.
            "--workers",
            "1",
            "--request-timeout",
            "15",
            "--continue-on-failure",
            "--no-color",
            "--report",
            "junit",
            "--report-dir",
            str(out_dir),
        ],
        capture_output=True,
        text=True,
        timeout=540,
        cwd=out_dir,  # its example cache (.schemathesis/) stays with the run, not in the repository
        check=False,
        env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false"},
    )


async def test_collector_openapi_fuzzing(fault_dir: Path) -> None:
    results: dict[str, subprocess.CompletedProcess[str]] = {}
    async with fault_stack(fault_dir / "fuzz", services=("collector",)) as fs:
        for name, (select, checks) in RUNS.items():
            out = fault_dir / "schemathesis" / name
            out.mkdir(parents=True, exist_ok=True)
            results[name] = await asyncio.to_thread(_schemathesis, fs.url["collector"], out, select, checks)
            # The tool's output holds the generated inputs (made-up emails and phones by design): it is
            # kept beside its report, outside the logs the PII scan reads; only counts are printed.
            (out / "output.txt").write_text(results[name].stdout + results[name].stderr)
    figures: dict[str, object] = {}
    problems: list[str] = []
    for name, result in results.items():
        cases = re.search(r"(\d+) generated(?:, (\d+) found)?", result.stdout)
        figures[f"{name}_exit"] = result.returncode
        figures[f"{name}_cases"] = cases.group(1) if cases else "?"
        figures[f"{name}_failures"] = (cases.group(2) or "0") if cases else "?"
        figures[f"{name}_checks"] = RUNS[name][1]
        if result.returncode != 0:
            failures = result.stdout.split("FAILURES", 1)[-1].split("WARNINGS", 1)[0]
            problems.append(f"{name}:\n{failures[-3000:]}")
    report("schemathesis collector", **figures)
    assert not problems, "\n".join(problems)
