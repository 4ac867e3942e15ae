"""Runs last: every log line the fault suite produced is free of emails, phone numbers and tokens.

Scanned: each stack's service logs and broker log, PostgreSQL's server log, and everything the tests
printed or logged (pytest's captured output). Every rating the suite posted carried a canary email, a
canary phone (also inside its comment) and a canary token in the query string, so a leak would show.
A positive control runs the same scanner over the notifier's outbox files, where the canary email must
appear (a CSM alert carries the customer's contact details by design): the scanner can see it.
"""

from __future__ import annotations

import re
from pathlib import Path

from shared import logs
from tests.faults.harness import (
    CANARY_EMAIL_DOMAIN,
    CANARY_TOKEN,
    FIGURES,
    LOG_PATHS,
    report,
)

# Phones: every phone the suite posts is the canary (E.164 in the customer, spaced inside the comment),
# and any E.164 number is flagged too. shared.logs' loose digit-run pattern is not used here: in
# broker and PostgreSQL logs it matches IP addresses and version strings ("127.0.0.1", "14.2.1
# 20250110"). Log timestamps are removed before scanning for the same reason.
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?: ?UTC|Z|[+-]\d{2}:?\d{2})?")
PATTERNS: dict[str, re.Pattern[str]] = {
    "canary email": re.compile(re.escape(CANARY_EMAIL_DOMAIN)),
    "canary phone": re.compile(r"\+?33\D?6\D?12\D?34\D?98\D?76"),
    "canary token": re.compile(re.escape(CANARY_TOKEN)),
    "email": logs._EMAIL,
    "phone (E.164)": re.compile(r"\+[1-9]\d{6,14}\b"),
    "token=": logs._TOKEN,
    "bearer": logs._BEARER,
    "long secret": logs._LONG_SECRET,
}


def _files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(p.rglob("*.log")))
        elif p.is_file():
            out.append(p)
    return out


def scan(files: list[Path]) -> tuple[int, list[tuple[str, int, str]]]:
    """(lines scanned, hits as (file, line number, pattern name)); the matched text is never echoed."""
    lines = 0
    hits: list[tuple[str, int, str]] = []
    for f in files:
        with f.open(encoding="utf-8", errors="replace") as fh:
            for n, line in enumerate(fh, 1):
                lines += 1
                text = _TIMESTAMP.sub("", line)
                for name, pattern in PATTERNS.items():
                    if pattern.search(text):
                        hits.append((str(f), n, name))
    return lines, hits


def test_no_personal_data_or_token_in_any_log_line() -> None:
    assert FIGURES, "run with the whole fault suite: nothing was posted, so there is nothing to scan"
    files = _files(LOG_PATHS)
    lines, hits = scan(files)
    outboxes = [p for d in {p.parent for p in LOG_PATHS} for p in (d / "outbox").glob("*.txt")]
    _control_lines, control = scan(outboxes)
    control_canary = sum(1 for _f, _n, name in control if name == "canary email")
    by_pattern: dict[str, int] = {}
    for _f, _n, name in hits:
        by_pattern[name] = by_pattern.get(name, 0) + 1
    report(
        "log capture",
        files=len(files),
        lines=lines,
        leaks=len(hits),
        leaks_by_pattern=by_pattern,
        control_outbox_files=len(outboxes),
        control_canary_found=control_canary,
    )
    assert control_canary > 0, "positive control failed: the canary email never reached an outbox file"
    assert lines > 1000, f"only {lines} log lines were scanned"
    assert not hits, "\n".join(f"{f}:{n}: {name}" for f, n, name in hits[:50])
