"""Scorer throughput vs a bare consumer, and how the scorer's cost grows with segments and stored ratings."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.common import BenchStack, now_utc, percentile, preload, rating_event, say
from devstack.ports import free_port
from devstack.stack import ROOT
from shared.provisioning import create_topics
from shared.settings import DEV_ADMIN_KEY
from shared.topics import Topics

SCORER_GROUP = "csat-scorer"


def fresh_topics(bs: BenchStack, tag: str) -> Topics:
    topics = Topics(prefix=f"{tag}-{uuid.uuid4().hex[:6]}.")
    create_topics(bs.bootstrap, topics)
    return topics


def load_events(bs: BenchStack, topics: Topics, *, count: int, stores: int, spread_s: int = 86_400) -> float:
    now = now_utc()
    run = f"r{uuid.uuid4().hex[:8]}"
    records = [
        rating_event(i, topic=topics.ratings, run=run, stores=stores, now=now, spread_s=spread_s)
        for i in range(count)
    ]
    return asyncio.run(preload(bs.bootstrap, records))


def bare_consumer(bs: BenchStack, topics: Topics, *, count: int, max_batch: int) -> dict[str, Any]:
    """Decode-only consumer of the same topic and partitions, as its own process."""
    out = subprocess.run(  # noqa: S603 - our own module with our arguments
        [
            sys.executable,
            "-m",
            "bench.bare_consumer",
            "--bootstrap",
            bs.bootstrap,
            "--topic",
            topics.ratings,
            "--expected",
            str(count),
            "--max-batch",
            str(max_batch),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far (0 for one that is gone)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / _TICK
    return total


def _children(ppid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == ppid:
                    out.append(int(entry.name))
            except OSError:
                continue
    return out


def _cpu_by_part(svc_pid: int, bs: BenchStack) -> dict[str, float]:
    """CPU seconds so far of the scorer process, PostgreSQL (postmaster and every backend) and the broker."""
    pg = bs.postgres.pid
    return {
        "scorer": _cpu_s([svc_pid]),
        "postgres": _cpu_s([pg, *_children(pg)]) if pg else 0.0,
        "broker": _cpu_s([bs.broker.pid]) if bs.broker.pid else 0.0,
    }


async def _watch_offsets(
    url: str, topic: str, expected: int, timeout_s: float, cpu: Callable[[], dict[str, float]] | None = None
) -> dict[str, Any]:
    """Poll the scorer's stored offsets: throughput from its first committed batch to the last record,
    and the CPU each part spent over the same window (PostgreSQL backends that exit meanwhile, such as
    this poller's, are not counted: the scorer's own connections stay open)."""
    conn = await asyncpg.connect(url)
    try:
        first_t = 0.0
        at_first = 0
        cpu_first: dict[str, float] = {}
        deadline = time.monotonic() + timeout_s
        done = 0
        while time.monotonic() < deadline:
            done = int(
                await conn.fetchval(
                    "SELECT coalesce(sum(next_offset), 0) FROM ops.consumer_offsets "
                    "WHERE consumer_group = $1 AND topic = $2",
                    SCORER_GROUP,
                    topic,
                )
            )
            now = time.perf_counter()
            if done and not first_t:
                first_t, at_first = now, done
                cpu_first = cpu() if cpu else {}
            if done >= expected:
                elapsed = max(now - first_t, 1e-9)
                counted = max(done - at_first, 1)
                cpu_last = cpu() if cpu else {}
                return {
                    "records": done,
                    "seconds": elapsed,
                    "per_s": (done - at_first) / elapsed,
                    "cpu_us_per_event": {
                        part: (cpu_last[part] - cpu_first[part]) / counted * 1e6 for part in cpu_last
                    },
                }
            await asyncio.sleep(0.05)
        raise TimeoutError(f"scorer stored {done} of {expected} offsets in {timeout_s:.0f}s")
    finally:
        await conn.close()


def scorer_run(
    bs: BenchStack, topics: Topics, *, count: int, timeout_s: float = 600, counter_write: str | None = None
) -> tuple[dict[str, Any], Any]:
    """Start a real scorer process on ``topics`` and time it storing every record; returns it running.

    ``counter_write``: the scorer's ``CSAT_COUNTER_WRITE`` (None: its default)."""
    stack = bs.stack
    stack.topic_prefix = topics.prefix
    stack.ports = {**stack.ports, "scorer": free_port()}
    env = {k: v for k, v in stack.extra_env.items() if k != "CSAT_COUNTER_WRITE"}
    if counter_write:
        env["CSAT_COUNTER_WRITE"] = counter_write
    stack.extra_env = env
    svc = stack.start_service("scorer")
    svc.wait_ready()
    pid = svc.proc.pid if svc.proc is not None else 0
    result = asyncio.run(
        _watch_offsets(bs.database_url, topics.ratings, count, timeout_s, cpu=lambda: _cpu_by_part(pid, bs))
    )
    result["loadavg"] = os.getloadavg()
    return result, svc


def query_latency(url: str, path: str, params: Any, *, count: int, budget_s: float) -> dict[str, float]:
    """Sequential requests (one at a time): latency of one query, not server throughput."""
    samples: list[float] = []
    # The dev key (a full admin in dev): the scores routes need a credential in every environment.
    with httpx.Client(
        base_url=url, timeout=60, headers={"Authorization": f"Bearer {DEV_ADMIN_KEY}"}
    ) as client:
        r = client.get(path, params=params)
        r.raise_for_status()
        deadline = time.monotonic() + budget_s
        while len(samples) < count and (time.monotonic() < deadline or len(samples) < 5):
            started = time.perf_counter()
            r = client.get(path, params=params)
            samples.append((time.perf_counter() - started) * 1000)
            r.raise_for_status()
    return {"n": len(samples), "p50_ms": percentile(samples, 50), "p99_ms": percentile(samples, 99)}


QUERIES: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "global": ("/v1/scores", [("metric", "csat"), ("window", "30d")]),
    "segment": ("/v1/scores", [("metric", "csat"), ("window", "30d"), ("segment", "store:store-1")]),
    "breakdown": ("/v1/scores/breakdown", [("metric", "csat"), ("window", "30d"), ("by", "store")]),
    # Not a configured combination: answered from the stored ratings (GIN containment), so it grows.
    "from_ratings": (
        "/v1/scores",
        [("metric", "csat"), ("window", "30d"), ("segment", "store:store-1"), ("segment", "country:fr")],
    ),
}


def segments_levels(
    bs: BenchStack,
    *,
    levels: list[int],
    events: int,
    max_batch: int,
    query_count: int,
    query_budget_s: float,
    spread_s: int = 86_400,
    counter_writes: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Per number of distinct stores: bare consumer vs scorer on one preloaded topic, then queries.

    ``counter_writes``: also run the scorer on the same topic with each of these ``CSAT_COUNTER_WRITE``
    values (alternating with the default's run, from empty tables each time): an A/B in the same run."""
    out: list[dict[str, Any]] = []
    for stores in levels:
        topics = fresh_topics(bs, f"seg{stores}")
        say(f"scorer: {stores} stores: preloading {events} rating events on 6 partitions")
        produce_rate = load_events(bs, topics, count=events, stores=stores, spread_s=spread_s)
        # The bare run takes a second or two, the scorer's several: one bare run on each side of the
        # scorer's, averaged, so a change in the machine's other load shows and weighs on both.
        before = bare_consumer(bs, topics, count=events, max_batch=max_batch)
        asyncio.run(_truncate(bs.database_url))
        variants: dict[str, dict[str, Any]] = {}
        for mode in counter_writes:
            asyncio.run(_truncate(bs.database_url))
            variants[mode], other = scorer_run(bs, topics, count=events, counter_write=mode)
            other.stop()
            vcpu = variants[mode]["cpu_us_per_event"]
            say(
                f"scorer: {stores} stores: counter_write={mode}: {variants[mode]['per_s']:.0f} events/s "
                f"(CPU/event: scorer {vcpu['scorer']:.1f} us, PostgreSQL {vcpu['postgres']:.1f} us)"
            )
        asyncio.run(_truncate(bs.database_url))
        result, svc = scorer_run(bs, topics, count=events)
        after = bare_consumer(bs, topics, count=events, max_batch=max_batch)
        bare = {
            "per_s": (before["per_s"] + after["per_s"]) / 2,
            "cpu_us_per_event": (before["cpu_us_per_event"] + after["cpu_us_per_event"]) / 2,
            "runs": [before, after],
        }
        cpu = result["cpu_us_per_event"]
        say(
            f"scorer: {stores} stores: bare consumer {before['per_s']:.0f} / {after['per_s']:.0f} events/s "
            f"({bare['cpu_us_per_event']:.1f} us CPU/event), scorer {result['per_s']:.0f} events/s "
            f"({result['per_s'] / bare['per_s']:.2f}x; CPU/event: scorer {cpu['scorer']:.1f} us, PostgreSQL "
            f"{cpu['postgres']:.1f} us, broker {cpu['broker']:.1f} us; load {result['loadavg'][0]:.1f})"
        )
        try:
            counters = asyncio.run(_count_rows(bs.database_url))
            queries = {
                name: query_latency(svc.url, path, params, count=query_count, budget_s=query_budget_s)
                for name, (path, params) in QUERIES.items()
                if name != "from_ratings"
            }
        finally:
            svc.stop()
        say(
            f"scorer: {stores} stores: query p50 global {queries['global']['p50_ms']:.1f} ms, "
            f"segment {queries['segment']['p50_ms']:.1f} ms, "
            f"breakdown {queries['breakdown']['p50_ms']:.1f} ms"
        )
        out.append(
            {
                "stores": stores,
                "segments": counters["segments"],
                "counter_rows": counters["counter_rows"],
                "events": events,
                "spread_s": spread_s,
                "produce_per_s": produce_rate,
                "bare": bare,
                "scorer": result,
                "counter_writes": variants,
                "queries": queries,
            }
        )
    return out


async def _truncate(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        # Every tier, so each level starts from empty counters (not only the ratings and the hour tier).
        await conn.execute(
            "TRUNCATE scorer.ratings, scorer.score_counts, scorer.score_counts_minute, "
            "scorer.score_counts_day, scorer.dirty_segments, scorer.score_state"
        )
        # And the scorer's stored positions, so a second scorer run on the same topic starts over.
        await conn.execute("DELETE FROM ops.consumer_offsets WHERE consumer_group = $1", SCORER_GROUP)
    finally:
        await conn.close()


async def _count_rows(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        return {
            "segments": int(
                await conn.fetchval("SELECT count(DISTINCT segment_key) FROM scorer.score_counts")
            ),
            "counter_rows": int(await conn.fetchval("SELECT count(*) FROM scorer.score_counts")),
            "ratings": int(await conn.fetchval("SELECT count(*) FROM scorer.ratings")),
        }
    finally:
        await conn.close()


# ---- stored ratings growth --------------------------------------------------------------------------

_BULK = """
WITH src AS MATERIALIZED (
    SELECT g,
           'bulk-' || g AS rating_id,
           CASE WHEN m < 3 THEN 5 WHEN m < 7 THEN 4 WHEN m < 8 THEN 3 WHEN m < 9 THEN 2 ELSE 1 END AS score,
           date_trunc('second', now())
               - make_interval(secs => ((g * 104729) % 2592000)::double precision) AS ts,
           'store-' || (g % 100) AS store,
           (ARRAY['web', 'chat', 'phone'])[1 + (g / 7) % 3] AS channel,
           (ARRAY['fr', 'de', 'es', 'it', 'uk'])[1 + (g / 3) % 5] AS country
    FROM generate_series($1::bigint, $2::bigint - 1) AS g, LATERAL (SELECT (g * 7919) % 10 AS m) AS mm
), ins AS (
    INSERT INTO scorer.ratings (rating_id, metric, scale, score, sentiment, customer_id, segment, touchpoint,
        comment, account_id, account_tier, account_value, source, occurred_at, received_at)
    SELECT rating_id, 'csat', '1-5', score,
           CASE WHEN score >= 4 THEN 'positive' WHEN score = 3 THEN 'neutral' ELSE 'negative' END,
           'cus-' || (g % 200000),
           jsonb_build_object('store', store, 'channel', channel, 'country', country),
           'checkout', NULL, 'acc-' || (g % 5000), 'gold', 12000, 'bulk', ts, ts
    FROM src
)
INSERT INTO scorer.score_counts AS c (metric, segment_key, bucket_start, scale, score, n)
SELECT 'csat', k, date_trunc('hour', ts), '1-5', score, count(*)
FROM src, LATERAL (VALUES ('*'), ('channel=' || channel), ('country=' || country), ('store=' || store),
                          ('channel=' || channel || '|store=' || store)) AS keys(k)
GROUP BY 2, 3, 5
ON CONFLICT (metric, segment_key, bucket_start, scale, score) DO UPDATE SET n = c.n + EXCLUDED.n
"""


async def bulk_load(
    url: str, *, start: int, stop: int, deadline: float, chunk: int = 500_000
) -> tuple[float, int]:
    """Add generated ratings [start, stop) and their counters straight into the scorer tables.

    Returns rows/s and how far it got: it stops early (at a chunk boundary) when ``deadline`` passes.
    """
    conn = await asyncpg.connect(url)
    began = time.perf_counter()
    reached = start
    try:
        await conn.execute("SET TIME ZONE 'UTC'")
        await conn.execute("SET work_mem = '256MB'")
        for lo in range(start, stop, chunk):
            if time.monotonic() > deadline:
                break
            hi = min(stop, lo + chunk)
            await conn.execute(_BULK, lo, hi)
            reached = hi
            rate = (hi - start) / (time.perf_counter() - began)
            say(f"growth: bulk-loaded {hi:,} stored ratings ({rate:,.0f} rows/s)")
        await conn.execute("VACUUM ANALYZE scorer.ratings")
        await conn.execute("VACUUM ANALYZE scorer.score_counts")
    finally:
        await conn.close()
    return (reached - start) / (time.perf_counter() - began), reached


def ratings_levels(
    bs: BenchStack,
    *,
    levels: list[int],
    events: int,
    query_count: int,
    query_budget_s: float,
    max_seconds: float,
) -> tuple[list[dict[str, Any]], str]:
    """Grow scorer.ratings level by level; at each, the scorer's ingest rate and query latencies."""
    out: list[dict[str, Any]] = []
    asyncio.run(_truncate(bs.database_url))
    loaded = 0
    deadline = time.monotonic() + max_seconds
    stopped = f"all levels measured (up to {levels[-1]:,})" if levels else "no levels"
    for level in levels:
        if time.monotonic() > deadline:
            stopped = f"stopped before {level:,}: the growth budget of {max_seconds:.0f} s was spent"
            say(f"growth: {stopped}")
            break
        say(f"growth: loading stored ratings up to {level:,}")
        load_rate, reached = (
            asyncio.run(bulk_load(bs.database_url, start=loaded, stop=level, deadline=deadline))
            if level > loaded
            else (0.0, loaded)
        )
        loaded = reached
        if reached < level:
            stopped = (
                f"stopped at {reached:,} of {level:,} bulk-loaded ratings: the growth budget of "
                f"{max_seconds:.0f} s was spent (raise BENCH_GROWTH_BUDGET_S to go further)"
            )
            say(f"growth: {stopped}")
        topics = fresh_topics(bs, f"grow{level}")
        load_events(bs, topics, count=events, stores=100)
        result, svc = scorer_run(bs, topics, count=events)
        try:
            queries = {
                name: query_latency(svc.url, path, params, count=query_count, budget_s=query_budget_s)
                for name, (path, params) in QUERIES.items()
            }
        finally:
            svc.stop()
        rows = asyncio.run(_count_rows(bs.database_url))
        size = asyncio.run(_table_size(bs.database_url))
        say(
            f"growth: {rows['ratings']:,} stored: scorer {result['per_s']:.0f} events/s, query p50 "
            f"counters {queries['segment']['p50_ms']:.1f} ms, "
            f"from ratings {queries['from_ratings']['p50_ms']:.1f} ms"
        )
        out.append(
            {
                "level": level,
                "stored": rows["ratings"],
                "counter_rows": rows["counter_rows"],
                "table_bytes": size,
                "load_rows_per_s": load_rate,
                "scorer": result,
                "queries": queries,
            }
        )
        if reached < level:
            break
    return out, stopped


async def _table_size(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT pg_total_relation_size('scorer.ratings')"))
    finally:
        await conn.close()
