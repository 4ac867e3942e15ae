"""Collector vs a bare FastAPI endpoint: single-rating req/s and latency, batch ratings/s, and the same
for interactions (``POST /v1/interactions`` and its batch, issue 15) against the same baseline process.

Every request carries its own ``Idempotency-Key`` (so every rating is claimed, as a client that
retries safely posts them) and the stack's publishable demo key (so the key lookup, its cache and the
claims marking are on the path). Besides the collector as configured, variants of it run in the same
rounds with one optimisation switched off each (``VARIANTS``): the A/B of each change, same run.
Interactions need a secret key (a publishable one is refused: they start surveys), so they carry a
secret key of the demo source made for the run; they are measured on the collector and the baseline.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import statistics
import urllib.request
import uuid
from typing import Any

from bench.common import bench_stack, interaction_body, rating_body, say
from bench.scorer import _children, _cpu_s
from bench.wrk import WrkResult, run_wrk
from devstack.ports import free_port
from devstack.stack import ServiceProcess
from services.collector.provision import DEMO_SOURCE
from services.collector.repository import PgStore
from shared.db import make_engine
from shared.events import KeyKind
from shared.identity.sourcekeys import SourceKeyKind, generate_source_key

#: Collector variants measured beside the collector as configured: name -> (settings, what it shows).
#: ``BENCH_COLLECTOR_VARIANTS=none`` skips them, or a comma list picks some.
VARIANTS: dict[str, tuple[dict[str, str], str]] = {
    "before": (
        {
            "CSAT_CLAIM_GROUP": "false",
            "CSAT_FAST_ENCODE": "false",
            "CSAT_FAST_PATH": "false",
            "CSAT_PUBLISH_LINGER_MS": "2",
            "CSAT_GC_FREEZE": "false",
            "CSAT_DB_RESET_SESSIONS": "true",
            "CSAT_LEAN_NORMALIZE": "false",
            "CSAT_CONFIRM_WITH_CLAIM": "false",
        },
        "every change with a setting switched off (the collector before issue 17, less the unflagged "
        'changes: see docs/collector.md, "The hot path")',
    ),
    "no-lean": (
        {"CSAT_LEAN_NORMALIZE": "false"},
        "each rating normalised into the event model, then serialised (event, fingerprint) from it",
    ),
    "no-fast-path": ({"CSAT_FAST_PATH": "false"}, "FastAPI solves the dependencies of every request"),
    "no-gc-freeze": (
        {"CSAT_GC_FREEZE": "false"},
        "full garbage collections walk every object built at startup",
    ),
    "pool-reset": (
        {"CSAT_DB_RESET_SESSIONS": "true"},
        "asyncpg resets the session (one more statement) each time a claim connection is released",
    ),
    "linger-2ms": ({"CSAT_PUBLISH_LINGER_MS": "2"}, "the producer lingers 2 ms (the former default)"),
    "no-group": ({"CSAT_CLAIM_GROUP": "false"}, "one claim statement per request instead of group commit"),
    "sdk-encode": ({"CSAT_FAST_ENCODE": "false"}, "the CloudEvents SDK encodes each record"),
    "generic-plans": (
        {"CSAT_DB_CUSTOM_PLANS": "false"},
        "PostgreSQL's cached generic plans for the claim statements (a collector started on a young table "
        "keeps sequential scans until the next ANALYZE: start it first to see it)",
    ),
    "confirm-apart": (
        {"CSAT_CONFIRM_WITH_CLAIM": "false"},
        "accepted ids are confirmed by a statement of their own every 5 ms instead of riding on the next "
        "claim statement (one more transaction and WAL flush per group of confirmations)",
    ),
    "confirm-20ms": (
        {"CSAT_CONFIRM_DELAY_MS": "20"},
        "accepted ids are confirmed in one statement per 20 ms instead of per 5 ms (fewer writes to "
        "PostgreSQL; a retry meanwhile waits for its id a little longer)",
    ),
}


#: Run only when named in ``BENCH_COLLECTOR_VARIANTS``: the collector as configured in a process of its own
#: (an A/A check: how far two identical collectors differ in one run, e.g. by their place in the order).
CONTROL: dict[str, tuple[dict[str, str], str]] = {
    "control": ({}, "the collector as configured, in a process of its own: an A/A check of the bench"),
    "inflight-2": ({"CSAT_CLAIM_GROUP_INFLIGHT": "2"}, "two claim statements at once"),
    "inflight-3": ({"CSAT_CLAIM_GROUP_INFLIGHT": "3"}, "three claim statements at once"),
}


_STAGES = {
    "claim_ms": "csat_collector_claim_duration_seconds",
    "claim_ids": "csat_collector_claim_statement_ids",
    "publish_ms": "csat_collector_publish_duration_seconds",
}


def _stages(url: str) -> dict[str, float | None]:
    """Mean claim statement time, ids per claim statement and publish time, from a target's /metrics."""
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:  # noqa: S310 - our own local URL
            text = resp.read().decode()
    except OSError:
        return {}
    sums: dict[str, float] = {}
    for line in text.splitlines():
        for name in ("_sum ", "_count "):
            if name in line and not line.startswith("#"):
                metric, value = line.split(" ", 1)
                sums[metric] = sums.get(metric, 0.0) + float(value)
    out: dict[str, float | None] = {}
    for key, metric in _STAGES.items():
        total, count = sums.get(f"{metric}_sum"), sums.get(f"{metric}_count")
        scale = 1000.0 if key.endswith("_ms") else 1.0
        out[key] = round(total / count * scale, 3) if total is not None and count else None
    out["claim_statements"] = sums.get(f"{_STAGES['claim_ms']}_count")
    return out


#: What each kind of round posts, and to which targets (interactions: the collector and the baseline).
KINDS = ("single", "batch", "interactions_single", "interactions_batch")
INTERACTION_TARGETS = ("collector", "baseline")


async def _secret_key(database_url: str) -> str:
    """A secret key for the demo source (the publishable demo key stays valid): what servers post with."""
    engine = make_engine(database_url, pool_size=1, application_name="csat-bench")
    store = PgStore(engine=engine, timeout_s=10)
    try:
        key = generate_source_key(SourceKeyKind.SECRET)
        await store.add_key(
            source_id=DEMO_SOURCE,
            key_id=key.key_id,
            key_hash=key.key_hash,
            kind=KeyKind.SECRET,
            expire_others_at=None,
        )
        return key.secret
    finally:
        await store.close()


def _machine_cpu(bs: Any) -> dict[str, float]:
    """CPU seconds so far of the processes that share the machine with the target: the broker,
    PostgreSQL's server processes, wrk (a finished child of this process) and this process itself.

    With the target's own figure they make the machine budget: everything one request costs on
    these two cores, which bounds the req/s any collector could reach here."""
    pg = bs.postgres.pid
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "broker": _cpu_s([bs.broker.pid]) if bs.broker.pid else 0.0,
        "postgres": _cpu_s([pg, *_children(pg)]) if pg else 0.0,
        "wrk": children.ru_utime + children.ru_stime,
        "bench": _cpu_s([os.getpid()]),
    }


def _median(results: list[WrkResult]) -> WrkResult:
    """The round with the median throughput (its own latencies stay with it)."""
    ordered = sorted(results, key=lambda r: r.per_s)
    return ordered[len(ordered) // 2]


def _chosen_variants() -> dict[str, tuple[dict[str, str], str]]:
    wanted = os.environ.get("BENCH_COLLECTOR_VARIANTS", "all").strip()
    if wanted == "all":
        return dict(VARIANTS)
    names = {x.strip() for x in wanted.split(",") if x.strip() and x.strip() != "none"}
    unknown = names - set(VARIANTS) - set(CONTROL)
    if unknown:
        raise SystemExit(f"unknown collector variants: {', '.join(sorted(unknown))}")
    return {k: v for k, v in {**VARIANTS, **CONTROL}.items() if k in names}


def run(*, seconds: float, rounds: int, connections: int, batch_size: int) -> dict[str, Any]:
    # ``BENCH_COLLECTOR_INTERACTIONS=false``: ratings only (a shorter run to A/B the ratings' path).
    kinds = KINDS if os.environ.get("BENCH_COLLECTOR_INTERACTIONS", "true") != "false" else KINDS[:2]
    single = json.dumps(rating_body(1))
    batch = json.dumps({"ratings": [rating_body(i) for i in range(batch_size)]})
    interaction = json.dumps(interaction_body(1))
    interactions = json.dumps({"interactions": [interaction_body(i) for i in range(batch_size)]})
    variants = _chosen_variants()
    extra: list[ServiceProcess] = []
    with bench_stack("collector") as bs:
        stack = bs.stack
        say("collector: starting the collector and the bare baseline (uvloop + httptools, one process)")
        collector = stack.start_service("collector")
        collector.wait_ready()
        headers = {"Authorization": f"Bearer {stack.demo_key}"} if stack.demo_key else {}
        assert stack.database_url is not None
        secret = {"Authorization": f"Bearer {asyncio.run(_secret_key(stack.database_url))}"}
        try:
            for name, (env, _why) in variants.items():
                svc = ServiceProcess(
                    name="collector",
                    port=free_port(),
                    env={**stack.service_env("collector"), **env},
                    log_path=stack.var_dir / "logs" / f"collector-{name}.log",
                )
                svc.start()
                extra.append(svc)
            extra.append(
                ServiceProcess(
                    name="baseline",
                    port=free_port(),
                    env=stack.service_env("collector"),
                    log_path=stack.var_dir / "logs" / "baseline.log",
                    app="bench.baseline_app:app",
                )
            )
            extra[-1].start()
            for svc in extra:
                svc.wait_ready()
            targets = {"collector": collector.url}
            targets.update({name: svc.url for name, svc in zip(variants, extra, strict=False)})
            targets["baseline"] = extra[-1].url
            pids = {"collector": collector.proc.pid if collector.proc else 0}
            pids.update(
                {name: svc.proc.pid if svc.proc else 0 for name, svc in zip(variants, extra, strict=False)}
            )
            pids["baseline"] = extra[-1].proc.pid if extra[-1].proc else 0
            cpu: dict[str, dict[str, list[float]]] = {kind: {name: [] for name in targets} for kind in kinds}
            machine: dict[str, dict[str, list[dict[str, float]]]] = {
                kind: {name: [] for name in targets} for kind in kinds
            }

            def measured(
                kind: str, name: str, path: str, body: str, conns: int, auth: dict[str, str] = headers
            ) -> WrkResult:
                """One round against one target, with the target process's CPU time per request and
                every other process's on the machine (the machine budget, see ``_machine_cpu``)."""
                before, around = _cpu_s([pids[name]]), _machine_cpu(bs)
                res = wrk(targets[name], path, body, seconds, conns, auth)
                used, after = _cpu_s([pids[name]]) - before, _machine_cpu(bs)
                per = 1e6 / res.requests if res.requests else 0.0
                cpu[kind][name].append(used * per)
                machine[kind][name].append(
                    {"target": used * per, **{k: (after[k] - around[k]) * per for k in after}}
                )
                return res

            runs: dict[str, dict[str, list[WrkResult]]] = {
                kind: {
                    name: [] for name in targets if kind in ("single", "batch") or name in INTERACTION_TARGETS
                }
                for kind in kinds
            }

            def wrk(
                url: str, path: str, body: str, secs: float, conns: int, auth: dict[str, str] = headers
            ) -> WrkResult:
                return run_wrk(
                    f"{url}{path}",
                    body=body,
                    seconds=secs,
                    connections=conns,
                    headers=auth,
                    unique_key_prefix=uuid.uuid4().hex[:12],
                )

            for url in targets.values():  # warm-up: first-request paths, connections, key cache
                wrk(url, "/v1/ratings", single, 2, connections)
                wrk(url, "/v1/ratings/batch", batch, 1, max(2, connections // 4))
            for name in INTERACTION_TARGETS if "interactions_single" in kinds else ():
                wrk(targets[name], "/v1/interactions", interaction, 2, connections, secret)
                wrk(
                    targets[name], "/v1/interactions/batch", interactions, 1, max(2, connections // 4), secret
                )
            for r in range(rounds):
                for name in targets:
                    res = measured("single", name, "/v1/ratings", single, connections)
                    runs["single"][name].append(res)
                    say(
                        f"collector: round {r + 1}/{rounds} single {name:14} {res.per_s:8.0f} req/s "
                        f"p50 {res.p50_ms:.2f} ms p99 {res.p99_ms:.2f} ms non-2xx {res.non_2xx}"
                    )
                for name in targets:
                    res = measured("batch", name, "/v1/ratings/batch", batch, max(2, connections // 4))
                    runs["batch"][name].append(res)
                    say(
                        f"collector: round {r + 1}/{rounds} batch  {name:14} {res.per_s * batch_size:8.0f} "
                        f"ratings/s p50 {res.p50_ms:.1f} ms p99 {res.p99_ms:.1f} ms non-2xx {res.non_2xx}"
                    )
                for name in INTERACTION_TARGETS if "interactions_single" in kinds else ():
                    res = measured(
                        "interactions_single", name, "/v1/interactions", interaction, connections, secret
                    )
                    runs["interactions_single"][name].append(res)
                    say(
                        f"collector: round {r + 1}/{rounds} interactions single {name:10} {res.per_s:8.0f} "
                        f"req/s p50 {res.p50_ms:.2f} ms p99 {res.p99_ms:.2f} ms non-2xx {res.non_2xx}"
                    )
                for name in INTERACTION_TARGETS if "interactions_batch" in kinds else ():
                    conns = max(2, connections // 4)
                    res = measured(
                        "interactions_batch", name, "/v1/interactions/batch", interactions, conns, secret
                    )
                    runs["interactions_batch"][name].append(res)
                    say(
                        f"collector: round {r + 1}/{rounds} interactions batch  {name:10} "
                        f"{res.per_s * batch_size:8.0f} interactions/s p50 {res.p50_ms:.1f} ms "
                        f"p99 {res.p99_ms:.1f} ms non-2xx {res.non_2xx}"
                    )
            stages = {name: _stages(url) for name, url in targets.items() if name != "baseline"}
        finally:
            for svc in extra:
                svc.stop()
    out: dict[str, Any] = {
        "seconds": seconds,
        "rounds": rounds,
        "connections": connections,
        "batch_size": batch_size,
        "keyed": True,
        "credential": "publishable" if headers else "anonymous",
        "stages": stages,
        "variants": {name: {"env": env, "why": why} for name, (env, why) in variants.items()},
    }
    for kind, by_name in runs.items():
        for name, results in by_name.items():
            med = _median(results)
            out[f"{kind}_{name}"] = med.as_dict()
            out[f"{kind}_{name}_all_per_s"] = [round(x.per_s, 1) for x in results]
            out[f"{kind}_{name}_cpu_us"] = round(statistics.median(cpu[kind][name]), 1)
            out[f"{kind}_{name}_machine_us"] = {
                part: round(statistics.median(m[part] for m in machine[kind][name]), 1)
                for part in machine[kind][name][0]
            }
            out[f"{kind}_{name}_all_p99_ms"] = [round(x.p99_ms, 2) for x in results]
            out[f"{kind}_{name}_spread"] = (
                round(statistics.pstdev([x.per_s for x in results]) / med.per_s, 3) if med.per_s else None
            )
    return out
