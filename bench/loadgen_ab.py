"""Same-run A/B of the knee's load generator: ``bench.knee.run`` once per variant, each on a fresh stack,
back to back. Run it under the bench lock, e.g.::

    flock /work/wt/bench.lock env BENCH_OUTPUT=/tmp/x.md AB_RATES=100,150,200 AB_SECONDS=12 \\
        AB_VARIANTS=httpx:asyncio,lean:uvloop AB_OUT=/tmp/ab.json .venv/bin/python -m bench.loadgen_ab

A variant is ``generator:loop`` (``BENCH_LOADGEN`` and ``BENCH_LOADGEN_LOOP``); each variant's ramp stops
at its first failing rate, as the knee's does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from bench import knee
from bench.common import bench_stack, say


def _line(variant: str, lv: dict[str, Any]) -> str:
    cpu, above = lv["cpu_us_per_rating"], lv["cpu_us_per_rating_above_idle"]
    return (
        f"{variant:14s} {lv['rate']:4.0f}/s holds={lv['holds']} accepted={lv['accepted']} "
        f"POST->request p50/p99 {lv['to_request']['p50_ms']:.1f}/{lv['to_request']['p99_ms']:.1f} ms "
        f"answer p50/p99 {lv['answer']['p50_ms']:.1f}/{lv['answer']['p99_ms']:.1f} ms "
        f"load generator CPU {cpu['load generator']:.0f} us/rating "
        f"(above idle {above['load generator']:.0f}) "
        f"all processes {sum(cpu.values()):.0f} us; load {lv['loadavg'][0]:.1f}; {lv['loadgen']}; "
        f"statuses {lv['statuses']}"
    )


def main() -> None:
    rates = [float(x) for x in os.environ.get("AB_RATES", "100,150,200").split(",")]
    seconds = float(os.environ.get("AB_SECONDS", "12"))
    variants = os.environ.get("AB_VARIANTS", "httpx:asyncio,lean:uvloop").split(",")
    out: dict[str, Any] = {}
    for variant in variants:
        gen, loop = variant.split(":")
        os.environ["BENCH_LOADGEN"], os.environ["BENCH_LOADGEN_LOOP"] = gen, loop
        say(f"A/B: variant {variant}")
        with bench_stack("knee-ab") as bs:
            out[variant] = knee.run(bs, rates=rates, seconds=seconds, drain_s=45)
        Path(os.environ.get("AB_OUT", "/tmp/loadgen-ab.json")).write_text(json.dumps(out, default=str))  # noqa: S108 - a scratch result, named by AB_OUT
    for variant, res in out.items():
        for lv in res["levels"]:
            print(_line(variant, lv))


if __name__ == "__main__":
    main()
