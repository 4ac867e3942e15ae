"""The collector's benchmark report: interaction rows beside the ratings' (issue 15), and a collector-only
run splices them into an existing page without touching the other parts."""

from __future__ import annotations

from typing import Any

import pytest

from bench.report import collector_section, splice_collector, summary_rows


def _wrk(per_s: float, p99_ms: float) -> dict[str, Any]:
    return {
        "per_s": per_s,
        "p50_ms": 1.0,
        "p90_ms": 2.0,
        "p99_ms": p99_ms,
        "max_ms": 9.0,
        "non_2xx": 0,
        "errors": 0,
    }


def _figures(*, interactions: bool) -> dict[str, Any]:
    c: dict[str, Any] = {"seconds": 10, "rounds": 3, "connections": 32, "batch_size": 100, "keyed": True}
    kinds = {"single": (900.0, 2000.0), "batch": (40.0, 80.0)}
    if interactions:
        kinds |= {"interactions_single": (600.0, 1500.0), "interactions_batch": (20.0, 60.0)}
    for kind, (collector, baseline) in kinds.items():
        for name, per_s in (("collector", collector), ("baseline", baseline)):
            c[f"{kind}_{name}"] = _wrk(per_s, 10.0 if name == "collector" else 4.0)
            c[f"{kind}_{name}_all_per_s"] = [per_s] * 3
            c[f"{kind}_{name}_cpu_us"] = 500.0 if name == "collector" else 250.0
    return c


def test_interaction_rows_compare_with_the_same_baseline() -> None:
    rows = summary_rows(_figures(interactions=True))
    single = next(r for r in rows if "`POST /v1/interactions`" in r)
    batch = next(r for r in rows if "`POST /v1/interactions/batch`" in r)
    assert "| 600 | 1,500 (bare FastAPI) | 0.40x |" in single
    assert "| 2,000 | 6,000 (bare FastAPI) | 0.33x |" in batch  # 100 interactions per request
    section = "\n".join(collector_section(_figures(interactions=True)))
    assert "| interactions single | collector | 600 (600, 600, 600) | 0.40x | 500 us | 2.00x |" in section
    assert "| interactions batch | baseline | 60 (60, 60, 60) | 1.00x |" in section


def test_figures_without_interactions_render_as_before() -> None:
    rows = summary_rows(_figures(interactions=False))
    assert len(rows) == 5 and not any("interactions" in r for r in rows)
    assert "interactions" not in "\n".join(collector_section(_figures(interactions=False)))


def test_a_collector_only_run_replaces_its_rows_and_keeps_the_rest() -> None:
    page = "\n".join(
        [
            "# Benchmarks",
            "## Summary",
            "| figure | ours | baseline | ratio |",
            *summary_rows(_figures(interactions=False)),
            "| scorer events/s | 1 | 2 | 0.50x |",
            "",
            "## Collector",
            "old section",
            "## Scorer",
            "kept",
        ]
    )
    out = splice_collector(page, _figures(interactions=True), stamp="now").split("\n")
    assert sum(1 for line in out if line.startswith("| collector ")) == 8
    assert "| scorer events/s | 1 | 2 | 0.50x |" in out
    assert "old section" not in out and out[-2:] == ["## Scorer", "kept"]


def test_the_control_variant_runs_only_when_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.collector import VARIANTS, _chosen_variants

    monkeypatch.setenv("BENCH_COLLECTOR_VARIANTS", "all")
    assert set(_chosen_variants()) == set(VARIANTS) and "control" not in VARIANTS
    monkeypatch.setenv("BENCH_COLLECTOR_VARIANTS", "control,confirm-20ms")
    chosen = _chosen_variants()
    assert set(chosen) == {"control", "confirm-20ms"}
    assert chosen["control"][0] == {}  # the collector as configured: nothing switched
    monkeypatch.setenv("BENCH_COLLECTOR_VARIANTS", "nonsense")
    with pytest.raises(SystemExit):
        _chosen_variants()


def test_the_machine_budget_sums_every_process_and_says_what_the_target_leaves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    c = _figures(interactions=False)
    parts = {"target": 300.0, "broker": 50.0, "postgres": 150.0, "wrk": 20.0, "bench": 0.0}
    c["single_collector_machine_us"] = parts
    c["single_baseline_machine_us"] = {**dict.fromkeys(parts, 0.0), "target": 100.0, "wrk": 20.0}
    section = "\n".join(collector_section(c))
    # 520 us per request in all; 900 req/s use 0.47 of the cores. The target, 0.6 x 2,000 = 1,200
    # req/s, leaves 2e6 / 1,200 - 220 = 1,447 us per request for the collector process itself.
    assert (
        "| single | collector | 300 us | 50 us | 150 us | 20 us | 0 us | 520 us | 0.47 | "
        "1,200 (0.60x) | 1,447 us |" in section
    )
    assert "| single | baseline | 100 us | 0 us | 0 us | 20 us | 0 us | 120 us | 0.24 | - | - |" in section
    assert "| batch |" not in section.split("The machine budget")[1].split("\n\n")[1]  # no figures, no row


def test_no_machine_figures_no_budget_table() -> None:
    assert "The machine budget" not in "\n".join(collector_section(_figures(interactions=False)))
