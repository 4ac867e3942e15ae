"""The health bench part's ratios, its section of docs/benchmarks.md, the splice that keeps the rest,
and the generated data (every rating names its contact's account; ids carry the set's tag)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest

from bench import health
from shared import events as ev
from shared.envelope import decode
from shared.topics import Topics


def _run(
    *, scorer: float = 1000.0, on: float = 250.0, off: float = 500.0, recomputed: int = 3000
) -> dict[str, Any]:
    cpu = {"consumer": 900.0, "postgres": 400.0, "broker": 50.0}
    return {
        "config": {
            "ratings": 6000,
            "accounts": 300,
            "contacts": 4,
            "observations": 1200,
            "scorer_ratings": 60000,
        },
        "scorer": {"records": 6000, "seconds": 6.0, "per_s": scorer, "cpu_us_per_rating": cpu},
        "actions_health": {
            "records": 7200,
            "ratings": 6000,
            "observations": 1200,
            "seconds": 24.0,
            "ratings_per_s": on,
            "recomputations": recomputed,
            "recomputations_per_s": 125.0,
            "cpu_us_per_rating": cpu,
            "cpu_us_per_recomputation": {k: 2 * v for k, v in cpu.items()},
        },
        "actions_plain": {
            "records": 7200,
            "ratings": 6000,
            "observations": 1200,
            "seconds": 12.0,
            "ratings_per_s": off,
            "recomputations": 0,
            "recomputations_per_s": None,
            "cpu_us_per_rating": cpu,
            "cpu_us_per_recomputation": None,
        },
    }


def test_ratios_compare_each_actions_run_with_the_scorer_and_health_with_no_health() -> None:
    r = health.ratios(_run())
    assert r["health_ratings_vs_scorer"] == pytest.approx(0.25)
    assert r["recomputations_vs_scorer"] == pytest.approx(0.125)
    assert r["plain_ratings_vs_scorer"] == pytest.approx(0.5)
    assert r["health_vs_plain"] == pytest.approx(0.5)
    assert r["recomputations_per_rating"] == pytest.approx(0.5)


def test_a_zero_denominator_gives_nan_not_an_error() -> None:
    r = health.ratios(_run(scorer=0.0, off=0.0))
    assert math.isnan(r["health_ratings_vs_scorer"])
    assert math.isnan(r["health_vs_plain"])


def test_the_section_has_one_row_per_run_with_its_rate_ratio_and_cpu() -> None:
    text = "\n".join(health.section(_run(), stamp="2026-12-05 07:00 UTC"))
    assert text.startswith(health.HEADING)
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split(" | ")[0] for row in rows] == [
        "| scorer",
        "| actions + health",
        "| actions, health off",
    ]
    assert "| 250 | 125 | 0.25x | 900 / 400 / 50 | 1,800 / 800 / 100 |" in rows[1]
    assert "| 500 | - | 0.50x |" in rows[2]
    assert "0.12x the scorer's events per second" in text
    assert "at 0.50x its rate without" in text
    assert "generator, 60,000:" in text


def test_splice_replaces_only_the_health_section_or_inserts_it_before_reproduce() -> None:
    doc = "# Bench\n\n## Collector\n\nkept\n\n## Reproduce\n\nmake bench\n"
    first = health.splice(doc, [health.HEADING, "", "old figures", ""])
    assert first.index("## Collector") < first.index(health.HEADING) < first.index("## Reproduce")
    second = health.splice(first, [health.HEADING, "", "new figures", ""])
    assert "new figures" in second and "old figures" not in second
    assert second.count(health.HEADING) == 1
    assert "kept" in second and "make bench" in second


def test_the_data_names_accounts_and_tags_every_id() -> None:
    topics = Topics(prefix="t.")
    now = datetime(2026, 12, 5, tzinfo=UTC)
    ratings, usage = health.records(topics, tag="x1", ratings=50, accounts=5, contacts=3, now=now)
    assert len(ratings) == 50 and len(usage) == 15
    decoded = [decode(headers=r.headers, key=r.key, value=r.value) for r in ratings]
    accounts = {
        e.data.account.id for e in decoded if isinstance(e.data, ev.RatingSubmitted) and e.data.account
    }
    assert accounts == {f"x1-a{i}" for i in range(5)}
    contacts = {e.data.customer.id for e in decoded if isinstance(e.data, ev.RatingSubmitted)}
    assert len(contacts) == 15
    assert all(r.topic == topics.ratings for r in ratings) and all(u.topic == topics.usage for u in usage)
