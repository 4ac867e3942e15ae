"""Collector vs a bare FastAPI endpoint: single-rating req/s and latency, batch ratings/s."""

from __future__ import annotations

import json
import statistics
from typing import Any

from bench.common import bench_stack, rating_body, say
from bench.wrk import WrkResult, run_wrk
from devstack.ports import free_port
from devstack.stack import ServiceProcess


def _median(results: list[WrkResult]) -> WrkResult:
    """The round with the median throughput (its own latencies stay with it)."""
    ordered = sorted(results, key=lambda r: r.per_s)
    return ordered[len(ordered) // 2]


def run(*, seconds: float, rounds: int, connections: int, batch_size: int) -> dict[str, Any]:
    single = json.dumps(rating_body(1))
    batch = json.dumps({"ratings": [rating_body(i) for i in range(batch_size)]})
    with bench_stack("collector") as bs:
        stack = bs.stack
        say("collector: starting the collector and the bare baseline (uvloop + httptools, one process)")
        collector = stack.start_service("collector")
        collector.wait_ready()
        baseline = ServiceProcess(
            name="baseline",
            port=free_port(),
            env=stack.service_env("collector"),
            log_path=stack.var_dir / "logs" / "baseline.log",
            app="bench.baseline_app:app",
        )
        baseline.start()
        try:
            baseline.wait_ready()
            targets = {"collector": collector.url, "baseline": baseline.url}
            runs: dict[str, dict[str, list[WrkResult]]] = {
                kind: {name: [] for name in targets} for kind in ("single", "batch")
            }
            for url in targets.values():  # warm-up: first-request paths, connections
                run_wrk(f"{url}/v1/ratings", body=single, seconds=2, connections=connections)
            for r in range(rounds):
                for name, url in targets.items():
                    res = run_wrk(f"{url}/v1/ratings", body=single, seconds=seconds, connections=connections)
                    runs["single"][name].append(res)
                    say(
                        f"collector: round {r + 1}/{rounds} single {name:9} {res.per_s:8.0f} req/s "
                        f"p50 {res.p50_ms:.2f} ms p99 {res.p99_ms:.2f} ms non-2xx {res.non_2xx}"
                    )
                for name, url in targets.items():
                    res = run_wrk(
                        f"{url}/v1/ratings/batch",
                        body=batch,
                        seconds=seconds,
                        connections=max(2, connections // 4),
                    )
                    runs["batch"][name].append(res)
                    say(
                        f"collector: round {r + 1}/{rounds} batch  {name:9} {res.per_s * batch_size:8.0f} "
                        f"ratings/s p50 {res.p50_ms:.1f} ms p99 {res.p99_ms:.1f} ms non-2xx {res.non_2xx}"
                    )
        finally:
            baseline.stop()
    out: dict[str, Any] = {
        "seconds": seconds,
        "rounds": rounds,
        "connections": connections,
        "batch_size": batch_size,
    }
    for kind, by_name in runs.items():
        for name, results in by_name.items():
            med = _median(results)
            out[f"{kind}_{name}"] = med.as_dict()
            out[f"{kind}_{name}_all_per_s"] = [round(x.per_s, 1) for x in results]
            out[f"{kind}_{name}_spread"] = (
                round(statistics.pstdev([x.per_s for x in results]) / med.per_s, 3) if med.per_s else None
            )
    return out
