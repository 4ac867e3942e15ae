"""Auth fuzzing: schemathesis against the OpenAPI documents of the five services (collector, scorer,
actions, notifier, console identity API), each twice on one stack:

- without a credential: no 5xx, and no data answered: every operation that is not public answers 401
  (or is refused before the credential is read by a 4xx problem carrying no data: 400, 405, 413,
  415, 422;
  the check and what it allows are in ``tests/faults/auth_fuzz_hooks.py``);
- with the dev admin's API token (every admin scope): no 5xx.

The services' logs are in the stack's directory, which ``fault_stack`` registers for the log scan
(``test_zz_logs.py``). Schemathesis' own output holds generated inputs, so it stays beside its report,
outside the scanned logs; only counts are printed.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from devstack.stack import ROOT
from tests.faults.harness import fault_stack, report

pytestmark = pytest.mark.timeout(600)

SERVICES = ("collector", "scorer", "actions", "notifier", "console")
MAX_EXAMPLES = os.environ.get("CSAT_AUTH_FUZZ_EXAMPLES", "10")
#: The coverage phase (every boundary value, every unsupported method) multiplies the cases by about
#: six: with it, the ten runs took 7 minutes on 2 shared cores. CSAT_AUTH_FUZZ_PHASES adds it back.
PHASES = os.environ.get("CSAT_AUTH_FUZZ_PHASES", "examples,fuzzing")
RUNS = {
    "anonymous": "not_a_server_error,refused_without_credential",
    "admin": "not_a_server_error",
}


def _schemathesis(
    url: str, out_dir: Path, checks: str, service: str, token: str | None
) -> subprocess.CompletedProcess[str]:
    st = Path(sys.executable).with_name("st")
    auth = ["--header", f"Authorization: Bearer {token}"] if token else []
    return subprocess.run(
        [
            str(st),
            "run",
            f"{url}/openapi.json",
            *auth,
            "--checks",
            checks,
            "--phases",
            PHASES,
            "--max-examples",
            MAX_EXAMPLES,
            "--workers",
            "1",  # see test_schemathesis.py (CPython 3.11 AST recursion with two threads)
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
        timeout=300,
        cwd=out_dir,
        check=False,
        env={
            **os.environ,
            "SCHEMATHESIS_TELEMETRY": "false",
            "SCHEMATHESIS_HOOKS": "tests.faults.auth_fuzz_hooks",
            "PYTHONPATH": str(ROOT),
            "CSAT_FUZZ_SERVICE": service,
            "CSAT_FUZZ_TALLY": str(out_dir / "tally.ndjson"),
        },
    )


def _tally(path: Path) -> Counter[str]:
    if not path.is_file():
        return Counter()
    return Counter(json.loads(line)["kind"] for line in path.read_text().splitlines() if line)


async def test_every_service_refuses_without_a_credential_and_never_answers_5xx(fault_dir: Path) -> None:
    results: dict[tuple[str, str], subprocess.CompletedProcess[str]] = {}
    # Source keys required, as in prod: in dev the collector takes anonymous ratings for the `dev` source.
    env = {"CSAT_REQUIRE_API_KEY": "true"}
    async with fault_stack(fault_dir / "authfuzz", services=SERVICES, extra_env=env) as fs:
        admin = fs.stack.dev_admin
        assert admin is not None, "the fault stack runs in dev: it provisions the dev admin and its token"
        for service in SERVICES:
            for run, checks in RUNS.items():
                out = fault_dir / "schemathesis" / service / run
                out.mkdir(parents=True, exist_ok=True)
                token = admin.api_token if run == "admin" else None
                results[(service, run)] = result = await asyncio.to_thread(
                    _schemathesis, fs.url[service], out, checks, service, token
                )
                (out / "output.txt").write_text(result.stdout + result.stderr)
    problems: list[str] = []
    for (service, run), result in results.items():
        cases = re.search(r"(\d+) generated(?:, (\d+) found)?", result.stdout)
        operations = re.search(r"(\d+) (?:selected|operations?)", result.stdout)
        tally = _tally(fault_dir / "schemathesis" / service / run / "tally.ndjson")
        figures: dict[str, object] = {
            "exit": result.returncode,
            "operations": operations.group(1) if operations else "?",
            "cases": cases.group(1) if cases else "?",
            "failures": (cases.group(2) or "0") if cases else "?",
            "checks": RUNS[run],
        }
        if run == "anonymous":
            figures |= {
                "refused_401": tally["401"],
                "refused_before_auth_4xx": tally["early"],
                "session_pages_refused": tally["session"],
                "public_answers": tally["public"],
                "answered_without_credential": tally["answered"],
            }
            if tally["answered"] or not tally["401"]:
                problems.append(f"{service} {run}: {dict(tally)}")
        report(f"auth fuzz {service} {run}", **figures)
        if result.returncode != 0 or cases is None:
            failures = result.stdout.split("FAILURES", 1)[-1].split("WARNINGS", 1)[0]
            problems.append(f"{service} {run}:\n{failures[-3000:]}\n{result.stderr[-1000:]}")
    assert not problems, "\n".join(problems)
