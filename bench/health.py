"""Account health recomputations per second, against the scorer's own rate in the same run (issue 16).

One stack, three runs, each on its own preloaded topic set with the same generated data (its ids
prefixed per set, so no run dedupes against another): ``ratings`` ratings from ``accounts`` accounts of
``contacts`` contacts each (every rating names its account, as a B2B rating does) and one usage
observation per contact.

- **scorer**: a real scorer process consuming the ratings topic; events/s from its first committed
  batch to the last record, as the scorer backfill stage measures it.
- **actions + health**: the actions consumer (``create_app`` in this process, default playbook, timer
  scheduler off) consuming the ratings and usage topics; the health handler recomputes every account a
  batch touches. Recomputations are counted by wrapping ``HealthHandler.recompute``.
- **actions, health off**: the same consumer with no health handler (``ActionsHandler(health=None)``,
  a bench-only substitution: the service has no setting for it), so the health's cost shows as a ratio.

CPU per recomputation is read from ``/proc`` (this process, which runs the actions consumer, plus
PostgreSQL's server processes and the broker) over the same window, as ``bench.knee`` does.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from bench.common import BenchStack, now_utc, preload, say
from bench.scorer import _children, _cpu_s, fresh_topics, scorer_run
from shared import events as ev
from shared.envelope import OutgoingRecord, encode
from shared.scales import Metric, Sentiment
from shared.topics import Topics

HEADING = "## Account health"


def ratios(h: dict[str, Any]) -> dict[str, float]:
    """The figures to read, all from one run: actions (with and without health) against the scorer,
    and the health's own cost. NaN where a denominator is missing or zero."""

    def div(a: float | None, b: float | None) -> float:
        return float(a) / float(b) if a is not None and b else float("nan")

    scorer = h["scorer"]["per_s"]
    on, off = h["actions_health"], h["actions_plain"]
    return {
        "health_ratings_vs_scorer": div(on["ratings_per_s"], scorer),
        "recomputations_vs_scorer": div(on["recomputations_per_s"], scorer),
        "plain_ratings_vs_scorer": div(off["ratings_per_s"], scorer),
        "health_vs_plain": div(on["ratings_per_s"], off["ratings_per_s"]),
        "recomputations_per_rating": div(on["recomputations"], on["ratings"]),
    }


def _f(value: float, digits: int = 0) -> str:
    return "n/a" if value != value else f"{value:,.{digits}f}"


def section(h: dict[str, Any], *, stamp: str) -> list[str]:
    """The "## Account health" section of docs/benchmarks.md from one run's figures."""
    r = ratios(h)
    scorer, on, off = h["scorer"], h["actions_health"], h["actions_plain"]
    cfg = h["config"]

    def cpu(run: dict[str, Any], key: str) -> str:
        parts = run.get(key) or {}
        return " / ".join(f"{_f(parts.get(p, float('nan')))}" for p in ("consumer", "postgres", "broker"))

    intro = (
        f"Measured {stamp}; `BENCH_PARTS=health`, {cfg['ratings']:,} ratings from {cfg['accounts']} "
        f"accounts of {cfg['contacts']} contacts each (every rating names its account) and "
        f"{cfg['observations']:,} usage observations (one per contact), preloaded on three topic sets with "
        "the same data (the scorer's set has more ratings from the same generator, "
        f"{cfg.get('scorer_ratings', cfg['ratings']):,}: it takes thousands a batch and is timed from its "
        "first committed batch). The scorer (its own process) consumes the ratings; the actions consumer "
        "(default playbook, scheduler off, in the bench process) consumes ratings and usage, with the health "
        "handler "
        "recomputing every account a batch touches, then again with no health handler. Rates run from each "
        "consumer's first committed batch to its last record; CPU is read from `/proc` over the same window."
    )
    reading = (
        f"Recomputations per second are {_f(r['recomputations_vs_scorer'], 2)}x the scorer's events per "
        f"second; the actions consumer with health decides ratings at {_f(r['health_vs_plain'], 2)}x its "
        f"rate without ({on['recomputations']:,} recomputations for {on['ratings']:,} ratings and "
        f"{on['observations']:,} observations: {_f(r['recomputations_per_rating'], 2)} per rating, as a "
        "batch recomputes each account it touches once). The scorer's CPU column is its own process; the "
        "actions' consumer column is the bench process, which runs the consumer (and polls the offsets)."
    )
    parts = "(consumer / PostgreSQL / broker)"
    return [
        HEADING,
        "",
        intro,
        "",
        "| run | records | seconds | ratings/s | recomputations/s | vs scorer (ratings/s) "
        f"| CPU us per rating {parts} | CPU us per recomputation {parts} |",
        "|---|---|---|---|---|---|---|---|",
        f"| scorer | {scorer['records']:,} | {scorer['seconds']:.1f} | {_f(scorer['per_s'])} | - | 1.00x "
        f"| {cpu(scorer, 'cpu_us_per_rating')} | - |",
        f"| actions + health | {on['records']:,} | {on['seconds']:.1f} | {_f(on['ratings_per_s'])} "
        f"| {_f(on['recomputations_per_s'])} | {_f(r['health_ratings_vs_scorer'], 2)}x "
        f"| {cpu(on, 'cpu_us_per_rating')} | {cpu(on, 'cpu_us_per_recomputation')} |",
        f"| actions, health off | {off['records']:,} | {off['seconds']:.1f} | {_f(off['ratings_per_s'])} "
        f"| - | {_f(r['plain_ratings_vs_scorer'], 2)}x | {cpu(off, 'cpu_us_per_rating')} | - |",
        "",
        reading,
        "",
    ]


def splice(text: str, lines: list[str]) -> str:
    """``text`` (a whole docs/benchmarks.md) with the "## Account health" section replaced, or inserted
    before "## Reproduce" (else at the end) when there is none: a health-only run keeps every other
    part's figures."""
    doc = text.split("\n")
    if HEADING in doc:
        start = doc.index(HEADING)
        end = next((i for i in range(start + 1, len(doc)) if doc[i].startswith("## ")), len(doc))
        doc[start:end] = lines
    else:
        at = doc.index("## Reproduce") if "## Reproduce" in doc else len(doc)
        doc[at:at] = lines
    return "\n".join(doc)


# --- the data ------------------------------------------------------------------------------------


def records(
    topics: Topics, *, tag: str, ratings: int, accounts: int, contacts: int, now: datetime
) -> tuple[list[OutgoingRecord], list[OutgoingRecord]]:
    """Ratings (each naming its contact's account) and one usage observation per contact, as the
    collector publishes them; ids carry ``tag`` so that two topic sets never share a rating, a
    customer or an account."""
    out_r: list[OutgoingRecord] = []
    for i in range(ratings):
        contact = i % (accounts * contacts)
        account = contact % accounts
        score = 1 + (i * 7 + contact) % 5
        sentiment = (
            Sentiment.POSITIVE if score >= 4 else Sentiment.NEUTRAL if score == 3 else Sentiment.NEGATIVE
        )
        rating = ev.RatingSubmitted(
            rating_id=f"{tag}-r{i}",
            metric=Metric.CSAT,
            scale="1-5",
            score=score,
            normalized=(score - 1) / 4,
            sentiment=sentiment,
            positive=sentiment is Sentiment.POSITIVE,
            customer=ev.CustomerRef(id=f"{tag}-c{contact}", locale="en"),
            segment={"store": f"store-{account % 20}"},
            touchpoint="checkout",
            account=ev.AccountRef(id=f"{tag}-a{account}", tier="gold", value=12000 + account),
            occurred_at=now - timedelta(seconds=(i * 37) % (30 * 86_400)),
            received_at=now,
        )
        out_r.append(
            encode(
                topic=topics.ratings,
                event_type=ev.RATING_SUBMITTED,
                source="/collector",
                event_id=rating.rating_id,
                data=rating,
                key=rating.customer.id,
                subject=rating.rating_id,
                time=now,
            )
        )
    out_u: list[OutgoingRecord] = []
    for contact in range(accounts * contacts):
        obs = ev.UsageObserved(
            observation_id=f"{tag}-u{contact}",
            customer_id=f"{tag}-c{contact}",
            account_id=f"{tag}-a{contact % accounts}",
            observed_at=now - timedelta(days=1 + contact % 7),
            received_at=now,
            signals={
                "logins_7d": float(contact % 13),
                "features_used": float(contact % 9),
                "tickets_open": float(contact % 3),
                "seats_active": float(1 + contact % 5),
            },
        )
        out_u.append(
            encode(
                topic=topics.usage,
                event_type=ev.USAGE_OBSERVED,
                source="/collector",
                event_id=obs.observation_id,
                data=obs,
                key=obs.account_id,
                subject=obs.observation_id,
                time=now,
            )
        )
    return out_r, out_u


def _topic_set(bs: BenchStack, name: str, **sizes: int) -> tuple[Topics, int, int]:
    topics = fresh_topics(bs, f"health-{name}")
    rs, us = records(topics, tag=f"{name}{uuid.uuid4().hex[:4]}", now=now_utc(), **sizes)
    rate = asyncio.run(preload(bs.bootstrap, [*rs, *us]))
    say(f"health: preloaded {len(rs):,} ratings, {len(us):,} observations on {topics.prefix} ({rate:,.0f}/s)")
    return topics, len(rs), len(us)


# --- the actions consumer, in this process ----------------------------------------------------------


@contextmanager
def _counting() -> Iterator[list[int]]:
    """Count ``HealthHandler.recompute`` calls while inside."""
    from services.actions.health_handler import HealthHandler

    original = HealthHandler.recompute
    calls = [0]

    async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return await original(self, *args, **kwargs)

    HealthHandler.recompute = counted  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        HealthHandler.recompute = original  # type: ignore[method-assign]


@contextmanager
def _without_health() -> Iterator[None]:
    """Build the actions app with no health handler (the rules run, no health is stored or recomputed)."""
    from services.actions import bootstrap

    name = "ActionsHandler"  # imported by the bootstrap: replaced there for the app built meanwhile
    original = getattr(bootstrap, name)

    def plain(**kwargs: Any) -> Any:
        return original(**{**kwargs, "health": None})

    setattr(bootstrap, name, plain)
    try:
        yield
    finally:
        setattr(bootstrap, name, original)


def _cpu_parts(bs: BenchStack, consumer_pid: int) -> dict[str, float]:
    pg = bs.postgres.pid
    return {
        "consumer": _cpu_s([consumer_pid]),
        "postgres": _cpu_s([pg, *_children(pg)]) if pg else 0.0,
        "broker": _cpu_s([bs.broker.pid]) if bs.broker.pid else 0.0,
    }


async def _actions_run(
    bs: BenchStack, topics: Topics, *, ratings: int, observations: int, health: bool, timeout_s: float
) -> dict[str, Any]:
    from services.actions.bootstrap import create_app
    from services.actions.settings import ActionsSettings
    from tests.helpers import make_settings, running

    cfg = make_settings(
        ActionsSettings,
        kafka_bootstrap=bs.bootstrap,
        database_url=bs.database_url,
        topic_prefix=topics.prefix,
        log_level="WARNING",
        scheduler_enabled=False,
    )
    expected = ratings + observations
    with _counting() as calls:
        if health:
            app = create_app(cfg)
        else:
            with _without_health():
                app = create_app(cfg)
        conn = await asyncpg.connect(bs.database_url)
        try:
            async with running(app):
                first_t, at_first, calls_first, cpu_first = 0.0, 0, 0, {}
                rat_first = 0
                done = rat_done = 0
                deadline = time.monotonic() + timeout_s
                while time.monotonic() < deadline:
                    rows = await conn.fetch(
                        "SELECT topic, coalesce(sum(next_offset), 0) AS n FROM ops.consumer_offsets "
                        "WHERE consumer_group = $1 AND topic = ANY($2::text[]) GROUP BY topic",
                        cfg.consumer_group,
                        [topics.ratings, topics.usage],
                    )
                    by_topic = {r["topic"]: int(r["n"]) for r in rows}
                    done, rat_done = sum(by_topic.values()), by_topic.get(topics.ratings, 0)
                    now = time.perf_counter()
                    if done and not first_t:
                        first_t, at_first, rat_first, calls_first = now, done, rat_done, calls[0]
                        cpu_first = _cpu_parts(bs, os.getpid())
                    if done >= expected:
                        break
                    await asyncio.sleep(0.05)
                else:
                    raise TimeoutError(f"actions stored {done} of {expected} offsets in {timeout_s:.0f}s")
                cpu_last = _cpu_parts(bs, os.getpid())
                elapsed = max(time.perf_counter() - first_t, 1e-9)
        finally:
            await conn.close()
    recomputed = calls[0] - calls_first
    rated = max(rat_done - rat_first, 1)
    spent = {p: cpu_last[p] - cpu_first[p] for p in cpu_last}
    return {
        "records": done,
        "ratings": ratings,
        "observations": observations,
        "seconds": elapsed,
        "records_per_s": (done - at_first) / elapsed,
        "ratings_per_s": (rat_done - rat_first) / elapsed,
        "recomputations": calls[0],
        "recomputations_per_s": recomputed / elapsed if health else None,
        "cpu_us_per_rating": {p: s / rated * 1e6 for p, s in spent.items()},
        "cpu_us_per_recomputation": {p: s / max(recomputed, 1) * 1e6 for p, s in spent.items()}
        if health
        else None,
        "loadavg": os.getloadavg(),
    }


def run(
    bs: BenchStack,
    *,
    ratings: int,
    accounts: int,
    contacts: int,
    scorer_ratings: int,
    timeout_s: float = 600,
) -> dict[str, Any]:
    """``scorer_ratings``: the scorer's own set is larger (same generator): it takes thousands of records
    a batch, and its rate is timed from its first committed batch, so a set of a few batches times
    almost nothing."""
    sizes = {"ratings": ratings, "accounts": accounts, "contacts": contacts}
    sets = {name: _topic_set(bs, name, **sizes) for name in ("health", "plain")}
    sets["scorer"] = _topic_set(bs, "scorer", **{**sizes, "ratings": scorer_ratings})

    topics, n, _ = sets["scorer"]
    scorer, svc = scorer_run(bs, topics, count=n, timeout_s=timeout_s)
    svc.stop()
    scorer["cpu_us_per_rating"] = {
        "consumer": scorer["cpu_us_per_event"]["scorer"],
        "postgres": scorer["cpu_us_per_event"]["postgres"],
        "broker": scorer["cpu_us_per_event"]["broker"],
    }
    say(f"health: scorer {scorer['per_s']:,.0f} events/s")

    out: dict[str, Any] = {"scorer": scorer}
    for name, key, on in (("health", "actions_health", True), ("plain", "actions_plain", False)):
        topics, n, m = sets[name]
        out[key] = asyncio.run(
            _actions_run(bs, topics, ratings=n, observations=m, health=on, timeout_s=timeout_s)
        )
        res = out[key]
        extra = f", {res['recomputations_per_s']:,.0f} recomputations/s" if on else ""
        label = "health on" if on else "health off"
        say(f"health: actions ({label}) {res['ratings_per_s']:,.0f} ratings/s{extra}")
    out["config"] = {**sizes, "observations": accounts * contacts, "scorer_ratings": scorer_ratings}
    out["ratios"] = ratios(out)
    return out
