"""The pipeline's knee: ramp the offered rate and find the highest one the pipeline holds.

At each rate (open loop, as in ``bench.e2e``) the run reports p50/p99 POST -> notification request and
what is missing after a drain, and the CPU each process spent per accepted rating over the level (each
service process, PostgreSQL's server processes, the broker, and this load generator), read from
``/proc/<pid>/stat`` (user + system) before and after. The knee is the highest rate with p99 under
``P99_LIMIT_MS`` and nothing missing; the ramp stops after the first rate that fails (a backlog would
spoil every later level).
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from bench import loadgen
from bench.common import BenchStack, say
from bench.e2e import _pipeline
from bench.scorer import _children, _cpu_s

P99_LIMIT_MS = 250.0
SERVICES = ("collector", "scorer", "actions", "notifier", "console")
IDLE_S = 5.0


def _cpu(bs: BenchStack) -> dict[str, float]:
    """CPU seconds so far per process of the stack (and of this load generator)."""
    out: dict[str, float] = {}
    for name in SERVICES:
        svc = bs.stack.services.get(name)
        pid = svc.proc.pid if svc is not None and svc.proc is not None else 0
        out[name] = _cpu_s([pid]) if pid else 0.0
    pg = bs.postgres.pid
    out["postgres"] = _cpu_s([pg, *_children(pg)]) if pg else 0.0
    out["broker"] = _cpu_s([bs.broker.pid]) if bs.broker.pid else 0.0
    out["load generator"] = _cpu_s([os.getpid()])
    return out


def holds(level: dict[str, Any]) -> bool:
    return bool(
        level["to_request"]["n"] > 0
        and level["to_request"]["p99_ms"] < P99_LIMIT_MS
        and level["missing_requests"] == 0
        and level["missing_outbox"] == 0
        and level["accepted"] == int(level["rate"] * level["seconds"])
    )


def run(bs: BenchStack, *, rates: list[float], seconds: float, drain_s: float = 60) -> dict[str, Any]:
    stack = bs.stack
    if not stack.services:
        say("knee: starting the four services")
        stack.start_services()
    say("knee: warm-up (5 s at the first rate, not counted)")
    loadgen.run_loop(
        _pipeline(bs, run=f"kwarm-{uuid.uuid4().hex[:6]}", rate=rates[0], seconds=5, drain_s=drain_s)
    )
    # What each process spends with no load at all (polling, timers, heartbeats): at low rates most of
    # the CPU per rating is this, spread over few ratings.
    say(f"knee: idle CPU over {IDLE_S:.0f} s")
    before, began = _cpu(bs), time.monotonic()
    time.sleep(IDLE_S)
    after, spent = _cpu(bs), time.monotonic() - began
    idle = {k: (after[k] - before[k]) / spent * 1e3 for k in after}  # ms of CPU per second
    say("knee: idle CPU per second: " + ", ".join(f"{k} {v:.0f} ms" for k, v in idle.items()))
    levels: list[dict[str, Any]] = []
    knee = 0.0
    for rate in rates:
        say(f"knee: {rate:.0f} ratings/s for {seconds:.0f} s")
        before, began = _cpu(bs), time.monotonic()
        res = loadgen.run_loop(
            _pipeline(
                bs, run=f"knee{rate:.0f}-{uuid.uuid4().hex[:6]}", rate=rate, seconds=seconds, drain_s=drain_s
            )
        )
        after, spent = _cpu(bs), time.monotonic() - began
        accepted = max(res["accepted"], 1)
        res["cpu_us_per_rating"] = {k: (after[k] - before[k]) / accepted * 1e6 for k in after}
        # Net of what the process would have spent idle over the same time: the cost the ratings add.
        res["cpu_us_per_rating_above_idle"] = {
            k: max(0.0, after[k] - before[k] - idle[k] / 1e3 * spent) / accepted * 1e6 for k in after
        }
        res["window_s"] = spent
        res["holds"] = holds(res)
        res["loadavg"] = os.getloadavg()
        levels.append(res)
        cpu = ", ".join(f"{k} {v:.0f} us" for k, v in res["cpu_us_per_rating"].items())
        say(
            f"knee: {rate:.0f}/s: POST->request p50 {res['to_request']['p50_ms']:.0f} ms "
            f"p99 {res['to_request']['p99_ms']:.0f} ms, missing {res['missing_requests']} requests / "
            f"{res['missing_outbox']} outbox rows, accepted {res['accepted']}: "
            f"{'holds' if res['holds'] else 'FAILS'}; POST answer p50 {res['answer']['p50_ms']:.1f} ms "
            f"p99 {res['answer']['p99_ms']:.1f} ms; CPU per rating: {cpu}; load {res['loadavg'][0]:.1f}; "
            f"load generator {res['loadgen']}"
        )
        if not res["holds"]:
            break
        knee = rate
    return {
        "levels": levels,
        "rates": rates,
        "knee": knee,
        "p99_limit_ms": P99_LIMIT_MS,
        "seconds": seconds,
        "idle_cpu_ms_per_s": idle,
    }
