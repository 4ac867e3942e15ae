"""The knee stage's verdict per rate and its section of docs/benchmarks.md."""

from __future__ import annotations

from typing import Any

from bench import knee, report


def _level(rate: float, *, p99: float, missing: int = 0, accepted: int | None = None) -> dict[str, Any]:
    cpu = {"collector": 900.0, "postgres": 400.0}
    return {
        "rate": rate,
        "seconds": 10.0,
        "accepted": int(rate * 10) if accepted is None else accepted,
        "to_request": {"n": 10, "p50_ms": p99 / 3, "p99_ms": p99},
        "to_outbox": {"n": 10, "p50_ms": p99 / 2, "p99_ms": p99 * 1.2},
        "missing_requests": missing,
        "missing_outbox": 0,
        "cpu_us_per_rating": cpu,
        "cpu_us_per_rating_above_idle": {k: v / 2 for k, v in cpu.items()},
        "stages": {},
    }


def test_a_rate_holds_only_under_the_p99_limit_with_nothing_missing_and_everything_accepted() -> None:
    assert knee.holds(_level(50, p99=40))
    assert not knee.holds(_level(50, p99=knee.P99_LIMIT_MS))
    assert not knee.holds(_level(50, p99=40, missing=1))
    assert not knee.holds(_level(50, p99=40, accepted=499))


def test_the_report_names_the_knee_and_the_cpu_per_rating_of_each_process() -> None:
    levels = [_level(50, p99=40), _level(100, p99=900)]
    for x in levels:
        x["holds"] = knee.holds(x)
    text = "\n".join(
        report._knee_lines(
            {
                "levels": levels,
                "knee": 50.0,
                "p99_limit_ms": knee.P99_LIMIT_MS,
                "seconds": 10.0,
                "idle_cpu_ms_per_s": {"collector": 30.0, "postgres": 12.0},
            }
        )
    )
    assert "**50 ratings/s**" in text
    assert "| 100/s | 1,000 |" in text and "**no**" in text
    assert "CPU/rating collector" in text and "900 us" in text
    assert "collector above idle" in text and "450 us" in text


def test_a_knee_only_run_replaces_only_its_section_or_inserts_it_before_the_growth_section() -> None:
    levels = [_level(50, p99=40)]
    levels[0]["holds"] = True
    k = {"levels": levels, "knee": 50.0, "p99_limit_ms": knee.P99_LIMIT_MS, "seconds": 10.0}
    page = "\n".join(
        ["# B", "", "## End to end", "", "e2e", "", report.KNEE_HEADING, "", "old knee", "", "## Growth", "g"]
    )
    out = report.splice_knee(page, k, stamp="2026-12-05 13:00 UTC").split("\n")
    assert "old knee" not in out and "e2e" in out and out[-2:] == ["## Growth", "g"]
    assert out.count(report.KNEE_HEADING) == 1
    assert any(line.startswith("Measured 2026-12-05 13:00 UTC") for line in out)
    assert out[out.index("## Growth") - 1] == "" and out[out.index("## Growth") - 2] != ""
    bare = "\n".join(["# B", "", "## How cost grows with stored ratings", "g", "", "## Reproduce", "r"])
    out = report.splice_knee(bare, k, stamp="now").split("\n")
    assert out.index(report.KNEE_HEADING) < out.index("## How cost grows with stored ratings")


def test_the_budget_prices_the_target_rate_at_the_knees_cost_per_rating(monkeypatch: Any) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    levels = [_level(50, p99=40), _level(100, p99=60), _level(150, p99=900)]
    for x in levels:
        x["holds"] = knee.holds(x)
    levels[1]["cpu_us_per_rating_above_idle"] = {
        "collector": 900.0,
        "broker": 1500.0,
        "load generator": 600.0,
    }
    idle = {"collector": 30.0, "broker": 170.0}
    text = "\n".join(report._knee_budget({"levels": levels}, idle))
    # 3.0 ms per rating at the knee (100/s) x 500/s = 1.5 cores, + 0.2 core idle = 1.7 of 2: it fits.
    assert "at 100/s (the knee) the ratings add 3.0 ms" in text
    assert "broker 1.5 ms, collector 0.9 ms, load generator 0.6 ms" in text
    assert "**1.7 cores of this machine's 2**." in text
    levels[1]["cpu_us_per_rating_above_idle"]["broker"] = 3000.0
    text = "\n".join(report._knee_budget({"levels": levels}, idle))
    assert "**2.5 cores of this machine's 2**" in text
    assert "The broker and the load generator alone would take 1.8 cores" in text
