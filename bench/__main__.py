"""``python -m bench``: run the benchmark parts and regenerate docs/benchmarks.md."""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import collector, console, e2e, health, knee, report, scorer
from bench.common import bench_stack, commit, machine, say
from devstack.stack import ROOT
from services.scorer.settings import ScorerSettings

PARTS = ("collector", "segments", "e2e", "knee", "growth", "health", "console")
# Parts whose sections carry their own "Measured ..." stamp, so they can be kept across full runs.
STAMPED_PARTS = {"health", "console"}


def _ints(text: str) -> list[int]:
    return [int(float(x)) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument(
        "--parts", default=env("BENCH_PARTS", ",".join(PARTS)), help="comma list of " + ", ".join(PARTS)
    )
    p.add_argument("--http-seconds", type=float, default=float(env("BENCH_HTTP_SECONDS", "10")))
    p.add_argument("--http-rounds", type=int, default=int(env("BENCH_HTTP_ROUNDS", "3")))
    p.add_argument("--http-connections", type=int, default=int(env("BENCH_HTTP_CONNECTIONS", "16")))
    p.add_argument("--batch-size", type=int, default=int(env("BENCH_BATCH_SIZE", "100")))
    p.add_argument("--scorer-events", type=int, default=int(float(env("BENCH_SCORER_EVENTS", "100000"))))
    p.add_argument("--segment-levels", default=env("BENCH_SEGMENT_LEVELS", "10,100,1000,10000"))
    p.add_argument(
        "--scorer-spread-s",
        type=int,
        default=int(env("BENCH_SCORER_SPREAD_S", "86400")),
        help="the scorer's events occurred within this many seconds before the run (86400: a day, "
        "a backfill-like spread over minute buckets; 60: live traffic)",
    )
    p.add_argument(
        "--scorer-live-spread-s",
        type=int,
        default=int(env("BENCH_SCORER_LIVE_SPREAD_S", "300")),
        help="a second scorer run at the headline level whose events occurred within this many seconds "
        "(a live stream: ratings share the current minute buckets); 0 skips it",
    )
    p.add_argument(
        "--scorer-live-rounds",
        type=int,
        default=int(env("BENCH_SCORER_LIVE_ROUNDS", "3")),
        help="live-stream runs, each on a fresh topic with its own bare runs; the median is the headline",
    )
    p.add_argument(
        "--scorer-counter-writes",
        default=env("BENCH_SCORER_COUNTER_WRITES", "composite,copy"),
        help="at each level, also run the scorer with each of these CSAT_COUNTER_WRITE values on the same "
        "topic (A/B against the default in the same run); empty skips them",
    )
    p.add_argument("--headline-stores", type=int, default=int(env("BENCH_HEADLINE_STORES", "100")))
    p.add_argument("--e2e-rate", type=float, default=float(env("BENCH_E2E_RATE", "50")))
    p.add_argument("--e2e-seconds", type=float, default=float(env("BENCH_E2E_SECONDS", "30")))
    p.add_argument(
        "--knee-rates",
        default=env("BENCH_KNEE_RATES", "50,100,150,200,250,300,400,500"),
        help="offered ratings/s of the knee's ramp, lowest first (it stops after the first that fails)",
    )
    p.add_argument("--knee-seconds", type=float, default=float(env("BENCH_KNEE_SECONDS", "15")))
    p.add_argument("--growth-levels", default=env("BENCH_GROWTH_LEVELS", "1e4,1e5,1e6,1e7"))
    p.add_argument("--growth-events", type=int, default=int(float(env("BENCH_GROWTH_EVENTS", "20000"))))
    p.add_argument("--growth-budget-s", type=float, default=float(env("BENCH_GROWTH_BUDGET_S", "600")))
    p.add_argument("--health-ratings", type=int, default=int(float(env("BENCH_HEALTH_RATINGS", "10000"))))
    p.add_argument(
        "--health-scorer-ratings", type=int, default=int(float(env("BENCH_HEALTH_SCORER_RATINGS", "60000")))
    )
    p.add_argument("--health-accounts", type=int, default=int(env("BENCH_HEALTH_ACCOUNTS", "300")))
    p.add_argument(
        "--health-contacts",
        type=int,
        default=int(env("BENCH_HEALTH_CONTACTS", "4")),
        help="contacts per account (one usage observation each)",
    )
    p.add_argument(
        "--console-ratings", type=int, default=int(float(env("BENCH_CONSOLE_RATINGS", "10000000")))
    )
    p.add_argument("--console-stores", type=int, default=int(float(env("BENCH_CONSOLE_STORES", "10000"))))
    p.add_argument(
        "--console-requests",
        type=int,
        default=int(env("BENCH_CONSOLE_REQUESTS", "100")),
        help="rounds per view (one console page, then the API calls it makes)",
    )
    p.add_argument(
        "--console-budget-s",
        type=float,
        default=float(env("BENCH_CONSOLE_BUDGET_S", "120")),
        help="seconds per view after which it stops (at least 10 rounds)",
    )
    p.add_argument(
        "--console-views",
        default=env("BENCH_CONSOLE_VIEWS", ""),
        help="comma list of the console views to time (default: all; names as in bench/console.py)",
    )
    p.add_argument("--query-count", type=int, default=int(env("BENCH_QUERY_COUNT", "200")))
    p.add_argument("--query-budget-s", type=float, default=float(env("BENCH_QUERY_BUDGET_S", "10")))
    p.add_argument("--output", default=env("BENCH_OUTPUT", str(ROOT / "docs" / "benchmarks.md")))
    p.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite the report from the last run's var/bench/results.json",
    )
    args = p.parse_args(argv)
    raw = ROOT / "var" / "bench" / "results.json"
    if args.render_only:
        last = json.loads(raw.read_text())
        text = report.render(last)
        stamp = f"{last['date']}, commit `{last['commit']}`, load {last['machine']['loadavg'][0]:.1f}"
        if "health" in last:
            text = health.splice(text, health.section(last["health"], stamp=stamp))
        if "console" in last:
            text = console.splice(text, console.section(last["console"], stamp=stamp))
        Path(args.output).write_text(text)
        say(f"wrote {args.output} from {raw}")
        return 0
    parts = [x.strip() for x in args.parts.split(",") if x.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown:
        p.error(f"unknown parts: {', '.join(sorted(unknown))}")

    began = time.monotonic()
    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit(),
        "machine": machine(),
        "config": {k: v for k, v in vars(args).items() if k != "output"},
    }
    say(f"machine: {results['machine']}; parts: {', '.join(parts)}")
    if "collector" in parts:
        results["collector"] = collector.run(
            seconds=args.http_seconds,
            rounds=args.http_rounds,
            connections=args.http_connections,
            batch_size=args.batch_size,
        )
    if "segments" in parts:
        # The cap of distinct values per dimension is raised above the largest level, so 10,000 stores
        # are 10,000 segments with counters rather than 1,000 and "other" (the default cap).
        cap = max([*_ints(args.segment_levels), args.headline_stores]) * 2
        with bench_stack("segments", extra_env={"CSAT_MAX_VALUES_PER_DIMENSION": str(cap)}) as bs:
            results["segments"] = scorer.segments_levels(
                bs,
                levels=_ints(args.segment_levels),
                events=args.scorer_events,
                # The bare consumer takes as many records per poll as the scorer's consumer does.
                max_batch=ScorerSettings.model_fields["max_batch"].default,
                query_count=args.query_count,
                query_budget_s=args.query_budget_s,
                spread_s=args.scorer_spread_s,
                counter_writes=[x.strip() for x in args.scorer_counter_writes.split(",") if x.strip()],
            )
            if args.scorer_live_spread_s:
                results["segments_live"] = scorer.segments_levels(
                    bs,
                    levels=[args.headline_stores] * max(1, args.scorer_live_rounds),
                    events=args.scorer_events,
                    max_batch=ScorerSettings.model_fields["max_batch"].default,
                    query_count=args.query_count,
                    query_budget_s=args.query_budget_s,
                    spread_s=args.scorer_live_spread_s,
                )
    if "e2e" in parts:
        with bench_stack("e2e") as bs:
            results["e2e"] = e2e.run(bs, rate=args.e2e_rate, seconds=args.e2e_seconds)
    if "knee" in parts:
        with bench_stack("knee") as bs:
            results["knee"] = knee.run(
                bs,
                rates=[float(x) for x in args.knee_rates.split(",") if x.strip()],
                seconds=args.knee_seconds,
            )
    if "growth" in parts:
        with bench_stack("growth") as bs:
            levels, stopped = scorer.ratings_levels(
                bs,
                levels=_ints(args.growth_levels),
                events=args.growth_events,
                query_count=args.query_count,
                query_budget_s=args.query_budget_s,
                max_seconds=args.growth_budget_s,
            )
            results["growth"] = {"levels": levels, "stopped": stopped, "events": args.growth_events}
    if "health" in parts:
        with bench_stack("health") as bs:
            results["health"] = health.run(
                bs,
                ratings=args.health_ratings,
                accounts=args.health_accounts,
                contacts=args.health_contacts,
                scorer_ratings=args.health_scorer_ratings,
            )
    if "console" in parts:
        # Raise the per-dimension cap above the stores, as the segments part does: 10,000 stores are
        # 10,000 segments.
        cap = str(max(args.console_stores * 2, 1000))
        with bench_stack("console", extra_env={"CSAT_MAX_VALUES_PER_DIMENSION": cap}) as bs:
            results["console"] = console.run(
                bs,
                ratings=args.console_ratings,
                stores=args.console_stores,
                requests=args.console_requests,
                budget_s=args.console_budget_s,
                only=[v.strip() for v in args.console_views.split(",") if v.strip()] or None,
            )
    results["elapsed_s"] = time.monotonic() - began
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps(results, indent=1, default=str))
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    stamp = f"{results['date']}, commit `{results['commit']}`, load {results['machine']['loadavg'][0]:.1f}"
    if parts == ["collector"] and out.exists():
        # A collector-only run rewrites the collector's rows and section, and keeps the rest.
        out.write_text(report.splice_collector(out.read_text(), results["collector"], stamp=stamp))
    elif parts == ["knee"] and out.exists():
        # A knee-only run rewrites "The pipeline's knee" section, and keeps the rest.
        out.write_text(report.splice_knee(out.read_text(), results["knee"], stamp=stamp))
    elif parts == ["health"] and out.exists():
        # A health-only run rewrites the "Account health" section, and keeps the rest.
        out.write_text(health.splice(out.read_text(), health.section(results["health"], stamp=stamp)))
    elif parts == ["console"] and out.exists():
        # A console-only run rewrites the "Console" section, and keeps the rest.
        out.write_text(console.splice(out.read_text(), console.section(results["console"], stamp=stamp)))
    else:
        text = report.render(results)
        if "health" in results:
            text = health.splice(text, health.section(results["health"], stamp=stamp))
        if "console" in results:
            text = console.splice(text, console.section(results["console"], stamp=stamp))
        skipped = [x for x in PARTS if x not in parts]
        if skipped and out.exists():
            if set(skipped) <= STAMPED_PARTS:
                # Everything but the separately stamped sections (health, console: their own long runs):
                # a new page that keeps those sections, each still saying when it was measured.
                text = report.splice_parts(text, out.read_text(), skipped, stamp=stamp)
            else:
                # Any other subset (e.g. BENCH_PARTS=e2e or collector,e2e) rewrites only its own summary
                # rows and sections, and keeps the figures of the parts it did not run.
                text = report.splice_parts(out.read_text(), text, parts, stamp=stamp)
        out.write_text(text)
    say(f"wrote {out} (raw figures in {raw}) after {results['elapsed_s'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
