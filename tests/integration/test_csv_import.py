"""``csat import``: the real command against a served collector on the real broker and PostgreSQL."""

from __future__ import annotations

import asyncio
import csv
import sys
from pathlib import Path

import pytest

from devstack.stack import ROOT
from services.collector.bootstrap import create_app
from services.collector.settings import CollectorSettings
from shared.topics import Topics
from tests.helpers import make_settings, read_to_end, serving
from tests.infra import Infra

pytestmark = pytest.mark.integration

HEADER = ["rating_id", "metric", "scale", "score", "customer_id", "segment.store", "occurred_at", "comment"]
ROWS = [
    ["", "csat", "1-5", "5", "c-1", "paris-1", "2026-01-05T10:00:00Z", "great"],
    ["", "csat", "1-5", "5", "c-1", "paris-1", "2026-01-05T10:00:00Z", "great"],  # same answer twice
    ["h-3", "nps", "0-10", "9", "c-2", "lyon-2", "2026-01-06T11:00:00Z", ""],
    ["", "csat", "1-5", "7", "c-3", "lyon-2", "2026-01-07T09:00:00Z", ""],  # line 5: out of scale
    ["", "csat", "stars", "satisfied", "", "lyon-2", "2026-01-07T09:00:00Z", ""],  # line 6: no customer
    ["", "ces", "1-5", "2", "c-4", "lyon-2", "2026-01-08 09:00", "naive time, fixed by --timezone"],
]


def write_csv(path: Path, rows: list[list[str]], delimiter: str = ",") -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter=delimiter)
        writer.writerow(HEADER)
        writer.writerows(rows)


async def csat(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_import_reports_rejects_and_is_idempotent_on_rerun(
    infra: Infra, topics: Topics, database_url: str, tmp_path: Path
) -> None:
    source = tmp_path / "export.csv"
    write_csv(source, ROWS, delimiter=";")
    rejects = tmp_path / "rejects.csv"
    cfg = make_settings(
        CollectorSettings,
        kafka_bootstrap=infra.bootstrap,
        topic_prefix=topics.prefix,
        database_url=database_url,
    )
    async with serving(create_app(cfg)) as url:
        code, out, err = await csat(
            "import",
            str(source),
            "--url",
            url,
            "--timezone",
            "Europe/Paris",
            "--rejects",
            str(rejects),
            "--batch-size",
            "2",
        )
        assert code == 1, err
        assert "6 row(s): 4 imported, 0 already there, 2 rejected" in out
        assert "line 5: score: score 7 is outside scale 1-5" in out
        assert "line 6: customer" in out
        assert "6/6" in err  # the progress bar, on stderr
        with rejects.open() as fh:
            assert [r["line"] for r in csv.DictReader(fh)] == ["5", "6"]

        again, out2, _ = await csat(
            "import", str(source), "--url", url, "--no-progress", "--timezone", "Europe/Paris"
        )
        assert again == 1 and "0 imported, 4 already there, 2 rejected" in out2

        dry, out3, _ = await csat("import", str(source), "--url", url, "--dry-run", "--no-progress")
        assert dry == 1 and "checked (dry run)" in out3 and "line 7: occurred_at" in out3

    records = await read_to_end(infra.bootstrap, topics.ratings)  # each batch answered after the broker's ack
    ids = sorted(dict(r.headers)["ce_id"].decode() for r in records)
    assert len(ids) == 4 and "h-3" in ids and len(set(ids)) == 4


async def test_import_refuses_unknown_columns_and_an_unreachable_collector(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("score,customer_id,agent_name\n4,c1,Bob\n", encoding="utf-8")
    code, _, err = await csat("import", str(bad), "--url", "http://127.0.0.1:9", "--no-progress")
    assert code == 2 and "unknown column(s): agent_name" in err
    good = tmp_path / "good.csv"
    good.write_text("metric,score,customer_id\ncsat,4,c1\n", encoding="utf-8")
    code, _, err = await csat(
        "import", str(good), "--url", "http://127.0.0.1:9", "--no-progress", "--retries", "1"
    )
    assert code == 2 and "unreachable" in err
