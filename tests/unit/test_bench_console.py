"""The console bench part's section of docs/benchmarks.md (one row per view, the ratio console/API)
and the splice that rewrites only that section; the views' calls name the pages the console serves."""

from __future__ import annotations

from typing import Any

from bench import console


def _run() -> dict[str, Any]:
    view = {
        "path": "/scores?metric=csat&window=30d",
        "calls": ["scorer /v1/scores"] * 4,
        "n": 100,
        "console_p50_ms": 110.0,
        "console_p95_ms": 150.0,
        "api_p50_ms": 100.0,
        "api_p95_ms": 120.0,
    }
    return {
        "config": {"ratings": 10_000_000, "stores": 10_000, "requests": 100},
        "seeded": {
            "ratings": 10_000_000,
            "customers": 500_000,
            "alerts": 5000,
            "counter_rows_day": 1,
            "counter_rows_hour": 2,
            "counter_rows_minute": 3,
            "seed_s": 600.0,
        },
        "views": {"scores": view},
    }


def test_the_section_has_a_row_per_view_with_its_ratio() -> None:
    lines = console.section(_run(), stamp="2026-12-05 09:00 UTC, commit `abc`, load 3.0")
    assert lines[0] == "## Console"
    row = next(x for x in lines if x.startswith("| scores"))
    assert "| 150.0 |" in row and "| 120.0 |" in row and "| 1.25x |" in row and "| 30.0 |" in row
    assert "10,000,000 stored ratings" in lines[2]


def test_a_failing_view_keeps_its_row_with_the_reason_and_no_figures() -> None:
    run = _run()
    run["views"]["segments"] = {
        "path": "/segments?by=store&metric=csat&window=30d",
        "calls": ["scorer /v1/scores", "scorer /v1/scores/breakdown", "scorer /v1/scores/heatmap"],
        "n": 5,
        "console_failed": 5,
        "api_failed": 0,
        "failure": "console answered 503",
        "console_p50_ms": None,
        "console_p95_ms": None,
        "api_p50_ms": 900.0,
        "api_p95_ms": 1200.0,
        "calls_p95_ms": {"scorer /v1/scores/breakdown": 1100.0, "scorer /v1/scores": 40.0},
    }
    lines = console.section(run, stamp="s")
    row = next(x for x in lines if x.startswith("| segments"))
    assert "| 5 / 0: console answered 503 |" in row
    assert "| - | - | 900.0 | 1,200.0 | - | - |" in row
    assert "`scorer /v1/scores/breakdown` 1,100.0" in row
    detail = next(x for x in lines if x.startswith("Each API call's own p95"))
    assert "segments: `scorer /v1/scores` 40.0, `scorer /v1/scores/breakdown` 1,100.0" in detail
    assert any(x.startswith("| scores") for x in lines)


def test_the_splice_replaces_only_its_section_or_goes_before_reproduce() -> None:
    lines = console.section(_run(), stamp="s")
    doc = "# Benchmarks\n\n## Account health\n\nkept\n\n## Reproduce\n\nhow"
    once = console.splice(doc, lines)
    assert once.index("## Account health") < once.index("## Console") < once.index("## Reproduce")
    assert "kept" in once and once.endswith("how")
    again = console.splice(once, lines)
    assert again == once


def test_each_view_is_a_console_page_with_its_api_calls() -> None:
    views = console.views()
    assert [v.name for v in views] == [
        "scores",
        "segments",
        "heat map",
        "verbatims",
        "alerts",
        "customer",
        "rules",
    ]
    for v in views:
        assert v.path.startswith("/") and v.steps and all(step for step in v.steps)
        assert all(c.service in ("scorer", "actions", "notifier") for step in v.steps for c in step)
