"""``csat import FILE.csv``: streams a CSV export to the collector's batch endpoint, with a progress bar.

Rows are checked locally with the API's own validation (line, column, reason), then posted in
batches; the server validates again and deduplicates on rating_id, so an interrupted import can
simply be run again. 429 and 503 answers are retried after their Retry-After.
"""

from __future__ import annotations

import asyncio
import csv
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path
from typing import IO, Any

import httpx
from tqdm import tqdm

from services.collector.csvimport import (
    Row,
    RowError,
    check,
    column_for,
    derive_ids,
    plan_columns,
    to_payload,
)
from services.collector.domain import RatingRejected


class ImportFailed(RuntimeError):
    """The import cannot go on (bad file, refused key, collector unreachable); says why."""


@dataclass
class ImportReport:
    rows: int = 0
    accepted: int = 0
    replayed: int = 0
    rejected: list[RowError] = field(default_factory=list)

    def summary(self, *, limit: int = 20) -> str:
        lines = [
            f"{self.rows} row(s): {self.accepted} imported, {self.replayed} already there, "
            f"{len(self.rejected)} rejected"
        ]
        for err in self.rejected[:limit]:
            lines.append(f"  line {err.line}: {err.field}: {err.reason}")
        if len(self.rejected) > limit:
            lines.append(f"  ... and {len(self.rejected) - limit} more (use --rejects FILE for all)")
        return "\n".join(lines)

    def write_rejects(self, path: Path) -> None:
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["line", "field", "reason"])
            for err in self.rejected:
                writer.writerow([err.line, err.field, err.reason])


def _open(path: Path) -> IO[str]:
    return path.open(newline="", encoding="utf-8-sig")


def _dialect(path: Path) -> type[csv.Dialect] | csv.Dialect:
    with _open(path) as fh:
        sample = fh.read(64 * 1024)
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        return csv.excel


def _count_rows(path: Path) -> int:
    with _open(path) as fh:
        return max(0, sum(1 for _ in fh) - 1)


def _rows(path: Path, *, renames: dict[str, str], default_tz: tzinfo | None) -> Iterator[Row | RowError]:
    with _open(path) as fh:
        reader = csv.DictReader(fh, dialect=_dialect(path))
        mapping, unknown = plan_columns(reader.fieldnames or [], renames)
        if unknown:
            raise ImportFailed(
                f"unknown column(s): {', '.join(unknown)}; rename them with --column OLD=NEW "
                "(segment attributes are named segment.<name>)"
            )
        if "customer_id" not in mapping.values() or "score" not in mapping.values():
            raise ImportFailed(
                "the CSV needs at least the columns score and customer_id (and usually metric)"
            )
        start = 2
        for record in reader:
            line = start
            start = reader.line_num + 1
            try:
                yield Row(line=line, payload=to_payload(record, mapping, default_tz=default_tz))
            except RatingRejected as exc:
                yield RowError(line, exc.field, exc.message)


Sleep = Callable[[float], Awaitable[None]]


async def _post(
    client: httpx.AsyncClient, body: dict[str, Any], *, headers: dict[str, str], attempts: int, sleep: Sleep
) -> dict[str, Any]:
    """One batch, retried while the collector says 429/503 or cannot be reached."""
    last = ""
    for attempt in range(attempts):
        try:
            response = await client.post("/v1/ratings/batch", json=body, headers=headers)
        except httpx.TransportError as exc:
            last = f"collector unreachable: {type(exc).__name__}"
            await sleep(min(2**attempt * 0.5, 10))
            continue
        if response.status_code == 202:
            result: dict[str, Any] = response.json()
            return result
        if response.status_code in (429, 503):
            last = f"{response.status_code} {response.json().get('detail', '')}"
            await sleep(min(float(response.headers.get("retry-after", "1")), 30))
            continue
        detail = response.json().get("detail", response.text) if response.content else ""
        raise ImportFailed(f"the collector refused the batch: {response.status_code} {detail}")
    raise ImportFailed(f"gave up after {attempts} attempts: {last}")


async def import_csv(
    path: Path,
    *,
    client: httpx.AsyncClient,
    key: str | None = None,
    batch_size: int = 500,
    renames: dict[str, str] | None = None,
    default_tz: tzinfo | None = None,
    dry_run: bool = False,
    progress: bool = True,
    attempts: int = 8,
    sleep: Sleep = asyncio.sleep,
) -> ImportReport:
    """Import (or with ``dry_run`` only check) every row; returns what happened to each."""
    if not path.is_file():  # noqa: ASYNC240 - the CLI owns this loop; nothing else waits on it
        raise ImportFailed(f"no such file: {path}")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    report = ImportReport()
    seen: Counter[bytes] = Counter()
    bar = tqdm(total=_count_rows(path), unit="row", disable=not progress, file=sys.stderr, mininterval=0.5)
    pending: list[Row] = []

    async def flush() -> None:
        if not pending:
            return
        if not dry_run:
            result = await _post(
                client,
                {"ratings": [r.payload for r in pending]},
                headers=headers,
                attempts=attempts,
                sleep=sleep,
            )
            for item in result["results"]:
                row = pending[item["index"]]
                if item["status"] == "accepted":
                    if item.get("replayed"):
                        report.replayed += 1
                    else:
                        report.accepted += 1
                else:
                    for err in item.get("errors", []):
                        report.rejected.append(RowError(row.line, column_for(err["field"]), err["message"]))
        else:
            report.accepted += len(pending)
        bar.update(len(pending))
        pending.clear()

    try:
        for item in _rows(path, renames=renames or {}, default_tz=default_tz):
            report.rows += 1
            if isinstance(item, RowError):
                report.rejected.append(item)
                bar.update(1)
                continue
            derive_ids([item], seen=seen)
            errors = check(item)
            if errors:
                report.rejected.extend(errors)
                bar.update(1)
                continue
            pending.append(item)
            if len(pending) >= batch_size:
                await flush()
        await flush()
    finally:
        bar.close()
    report.rejected.sort(key=lambda e: e.line)
    return report
