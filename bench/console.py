"""The console's views against the APIs they read, with millions of stored ratings (issue 14).

One stack (broker, durable PostgreSQL, the scorer, actions, notifier and console as processes). The
scorer's tables are seeded straight in SQL rather than through the pipeline (10 million ratings would
take hours through the broker): ``ratings`` rows in time order over ``SPREAD_DAYS`` days in chunks,
each chunk's counters (minute, hour and day tiers, every segment key the scorer counts: the whole,
each dimension and the store x channel combination) computed from exactly the rows that chunk inserted
with ``INSERT .. SELECT .. GROUP BY`` and added with ``ON CONFLICT .. DO UPDATE`` as the scorer's
batch statement does, minute and hour buckets kept only within the scorer's retention cut-offs. The
secondary indexes of ``scorer.ratings`` are dropped during the load and rebuilt from their own
definitions after it (the usual bulk-load order; the end state is the migrated schema). The segment
registry, customers' context, alerts and one playbook revision are seeded beside them.

Then for each view, ``requests`` sequential rounds, each timing one console page (a signed-in admin's
session, as in the browser tests) and, right after it, the API calls that page makes (the same
paths and parameters, concurrent where the console asks them concurrently, with the same kind of
access token the console mints): both p95 come from the same run and the same moments of load.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx

from bench.common import BenchStack, percentile, say

HEADING = "## Console"
SPREAD_DAYS = 400  # a year ago exists for every window
CUSTOMER_SHARE = 20  # ratings per customer, on average
COMMENT_EVERY = 8  # one rating in 8 has a comment
ALERTS = 5_000
CUSTOMER = "cus-7"  # the customer page measured
STORE = "store-7"  # the store drilled into (its channels)
SERVICES = ("scorer", "actions", "notifier", "console")
MIN_ROUNDS = 10  # per view, even past the time budget
GIVE_UP_AFTER = 5  # rounds of a view failing every time before moving on

_COMMENTS = [
    "Delivery was late but support was helpful",
    "The staff were friendly and quick",
    "Too expensive for what you get",
    "Checkout took forever, the queue was long",
    "Great product quality, will buy again",
    "The app kept crashing when I paid",
    "Nobody answered the phone",
    "Clean store and helpful advice",
]

_RATINGS = """
WITH src AS MATERIALIZED (
    SELECT g, m, ts,
           CASE m WHEN 8 THEN 'nps' WHEN 9 THEN 'ces' ELSE 'csat' END AS metric,
           CASE m WHEN 8 THEN '0-10' WHEN 9 THEN '1-7' ELSE '1-5' END AS scale,
           CASE m WHEN 8 THEN (g * 7919 / 10) % 11
                  WHEN 9 THEN 1 + (g * 7919 / 10) % 7
                  ELSE (ARRAY[5, 5, 5, 4, 4, 4, 4, 3, 2, 1])[1 + (g * 104729 / 10) % 10] END AS score,
           'store-' || ((g * 2654435761) % $3) AS store,
           (ARRAY['web', 'chat', 'phone'])[1 + (g / 7) % 3] AS channel
    FROM generate_series($1::bigint, $2::bigint - 1) AS g,
         LATERAL (SELECT (g * 7) % 10 AS m,
                         $4::timestamptz + make_interval(secs => g * $5::double precision) AS ts) AS x
), ins AS (
    INSERT INTO scorer.ratings (rating_id, metric, scale, score, sentiment, customer_id, segment, touchpoint,
        comment, account_id, account_tier, account_value, source, occurred_at, received_at)
    SELECT 'cb-' || g, metric, scale, score,
           CASE WHEN (metric = 'csat' AND score >= 4) OR (metric = 'nps' AND score >= 9)
                     OR (metric = 'ces' AND score >= 5) THEN 'positive'
                WHEN (metric = 'csat' AND score = 3) OR (metric = 'nps' AND score >= 7)
                     OR (metric = 'ces' AND score = 4) THEN 'neutral'
                ELSE 'negative' END,
           'cus-' || (g % $6), jsonb_build_object('store', store, 'channel', channel), 'checkout',
           CASE WHEN g % $8 = 0 THEN ($7::text[])[1 + (g / $8) % array_length($7::text[], 1)] END,
           'acc-' || (g % $6 % 5000), 'gold', 12000, 'bench', ts, ts
    FROM src ORDER BY g
    RETURNING metric, scale, score, occurred_at, segment
), keyed AS MATERIALIZED (
    SELECT i.metric, k.segment_key, date_bin('1 minute', i.occurred_at, TIMESTAMPTZ 'epoch') AS b,
           i.scale, i.score, count(*) AS n
    FROM ins i,
         LATERAL (SELECT i.segment ->> 'channel' AS ch, i.segment ->> 'store' AS st) AS a,
         LATERAL (VALUES ('*'), ('channel=' || a.ch), ('store=' || a.st),
                         ('channel=' || a.ch || '|store=' || a.st)) AS k(segment_key)
    GROUP BY 1, 2, 3, 4, 5
), mi AS (
    INSERT INTO scorer.score_counts_minute AS c (metric, segment_key, bucket_start, scale, score, n)
    SELECT metric, segment_key, b, scale, score, n FROM keyed WHERE b >= $9 ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT (metric, segment_key, bucket_start, scale, score) DO UPDATE SET n = c.n + EXCLUDED.n
), ho AS (
    INSERT INTO scorer.score_counts AS c (metric, segment_key, bucket_start, scale, score, n)
    SELECT metric, segment_key, date_bin('1 hour', b, TIMESTAMPTZ 'epoch'), scale, score, sum(n)::bigint
    FROM keyed WHERE b >= $10 GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT (metric, segment_key, bucket_start, scale, score) DO UPDATE SET n = c.n + EXCLUDED.n
), da AS (
    INSERT INTO scorer.score_counts_day AS c (metric, segment_key, bucket_start, scale, score, n)
    SELECT metric, segment_key, date_bin('1 day', b, TIMESTAMPTZ 'epoch'), scale, score, sum(n)::bigint
    FROM keyed GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT (metric, segment_key, bucket_start, scale, score) DO UPDATE SET n = c.n + EXCLUDED.n
)
SELECT (SELECT count(*) FROM ins)
"""

_REGISTRY = [
    "INSERT INTO scorer.segment_dimensions (dimension, n_values) VALUES ('channel', 3), ('store', $1) "
    "ON CONFLICT (dimension) DO UPDATE SET n_values = EXCLUDED.n_values",
    "INSERT INTO scorer.segment_values (dimension, value) "
    "SELECT 'channel', c FROM unnest(ARRAY['web', 'chat', 'phone']) AS c "
    "UNION ALL SELECT 'store', 'store-' || s FROM generate_series(0, $1 - 1) AS s ON CONFLICT DO NOTHING",
]

_CUSTOMERS = """
INSERT INTO actions.customers (customer_id, email, locale, tier, value, owner_email, owner_name, consent)
SELECT 'cus-' || c, 'customer' || c || '@example.com', (ARRAY['en', 'fr'])[1 + c % 2],
       (ARRAY['gold', 'silver', 'bronze'])[1 + c % 3], 1000 + c % 50000,
       'csm-' || (c % 20) || '@example.com', 'CSM ' || (c % 20), '{"contact": true}'::jsonb
FROM generate_series(0, $1 - 1) AS c
ON CONFLICT (customer_id) DO NOTHING
"""

_ALERTS = """
INSERT INTO actions.alerts (alert_id, rule_id, rating_id, customer_id, owner_email, owner_name, priority,
    status, due_at, context, created_at)
SELECT 'ba-' || a, 'detractor-callback', 'cb-' || r, 'cus-' || (r % $2),
       'csm-' || (a % 20) || '@example.com', 'CSM ' || (a % 20),
       (ARRAY['urgent', 'high', 'normal', 'low'])[1 + a % 4],
       (ARRAY['open', 'open', 'acknowledged', 'resolved'])[1 + (a / 4) % 4],
       now() + make_interval(hours => (a % 48) - 12),
       jsonb_build_object(
           'rating', jsonb_build_object('metric', 'csat', 'scale', '1-5', 'score', 1 + a % 2,
                                        'comment', 'Nobody answered the phone', 'touchpoint', 'checkout',
                                        'occurred_at', now() - make_interval(mins => a),
                                        'segment', jsonb_build_object('store', 'store-' || (a % 100))),
           'customer', jsonb_build_object('account_id', 'acc-' || (r % $2 % 5000), 'tier', 'gold',
                                          'account_value', 12000)),
       now() - make_interval(mins => a)
FROM generate_series(0, $1 - 1) AS a, LATERAL (SELECT (a * 7919) % $3 AS r) AS x
ON CONFLICT (alert_id) DO NOTHING
"""


async def _secondary_indexes(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    rows = await conn.fetch(
        "SELECT i.indexname, i.indexdef FROM pg_indexes i "
        "JOIN pg_class c ON c.relname = i.indexname AND c.relnamespace = 'scorer'::regnamespace "
        "JOIN pg_index x ON x.indexrelid = c.oid "
        "WHERE i.schemaname = 'scorer' AND i.tablename = 'ratings' AND NOT x.indisprimary"
    )
    return [(r["indexname"], r["indexdef"]) for r in rows]


async def seed(url: str, *, ratings: int, stores: int, chunk: int = 250_000) -> dict[str, Any]:
    """Ratings and their counters, the registry, customers, alerts; returns counts and timings."""
    from datetime import timedelta

    from services.scorer.settings import ScorerSettings
    from services.scorer.windows import make_tiers, prune_cutoffs

    fields = ScorerSettings.model_fields
    tiers = make_tiers(
        minute_retention=timedelta(days=fields["minute_retention_days"].default),
        hour_retention=timedelta(days=fields["hour_retention_days"].default),
    )
    customers = max(1, ratings // CUSTOMER_SHARE)
    began = time.perf_counter()
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET TIME ZONE 'UTC'")
        await conn.execute("SET synchronous_commit = off")
        await conn.execute("SET work_mem = '256MB'")
        await conn.execute("SET maintenance_work_mem = '1GB'")
        now = await conn.fetchval("SELECT date_trunc('second', now())")
        cut = prune_cutoffs(tiers, now=now)
        start = now - timedelta(days=SPREAD_DAYS)
        step_s = SPREAD_DAYS * 86_400 / max(ratings, 1)
        indexes = await _secondary_indexes(conn)
        for name, _ in indexes:
            await conn.execute(f'DROP INDEX scorer."{name}"')
        say(
            f"console: seeding {ratings:,} ratings over {SPREAD_DAYS} days, {stores:,} stores (dropped "
            f"{len(indexes)} secondary indexes of scorer.ratings for the load)"
        )
        for lo in range(0, ratings, chunk):
            hi = min(ratings, lo + chunk)
            await conn.fetchval(
                _RATINGS,
                lo,
                hi,
                stores,
                start,
                step_s,
                customers,
                _COMMENTS,
                COMMENT_EVERY,
                cut["minute"],
                cut["hour"],
            )
            rate = hi / (time.perf_counter() - began)
            say(f"console: {hi:,} / {ratings:,} ratings and their counters ({rate:,.0f} ratings/s)")
        loaded_s = time.perf_counter() - began
        for name, definition in indexes:
            t0 = time.perf_counter()
            await conn.execute(definition)
            say(f"console: rebuilt index {name} in {time.perf_counter() - t0:.0f} s")
        for sql in _REGISTRY:
            await conn.execute(sql, stores)
        await conn.execute(_CUSTOMERS, customers)
        await conn.execute(_ALERTS, ALERTS, customers, ratings)
        say("console: registry, customers and alerts seeded; analysing")
        for table in (
            "scorer.ratings",
            "scorer.score_counts",
            "scorer.score_counts_minute",
            "scorer.score_counts_day",
            "scorer.segment_values",
            "actions.customers",
            "actions.alerts",
        ):
            await conn.execute(f"VACUUM ANALYZE {table}")
        counts: dict[str, Any] = {
            "ratings": int(await conn.fetchval("SELECT count(*) FROM scorer.ratings")),
            "counter_rows_minute": int(
                await conn.fetchval("SELECT count(*) FROM scorer.score_counts_minute")
            ),
            "counter_rows_hour": int(await conn.fetchval("SELECT count(*) FROM scorer.score_counts")),
            "counter_rows_day": int(await conn.fetchval("SELECT count(*) FROM scorer.score_counts_day")),
            "stores": int(
                await conn.fetchval("SELECT count(*) FROM scorer.segment_values WHERE dimension = 'store'")
            ),
            "customers": customers,
            "alerts": ALERTS,
            "ratings_bytes": int(await conn.fetchval("SELECT pg_total_relation_size('scorer.ratings')")),
        }
        # The counters say what the ratings say: the whole's day tier sums to the ratings stored.
        counted = int(
            await conn.fetchval(
                "SELECT coalesce(sum(n), 0) FROM scorer.score_counts_day WHERE segment_key = '*'"
            )
        )
        if counted != counts["ratings"]:
            raise RuntimeError(
                f"seeded counters count {counted:,} ratings, the table holds {counts['ratings']:,}"
            )
    finally:
        await conn.close()
    counts["load_s"] = loaded_s
    counts["seed_s"] = time.perf_counter() - began
    return counts


# --- the views and the calls they make ---------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    service: str
    path: str
    params: list[tuple[str, str | int | float | bool | None]]


@dataclass(frozen=True)
class View:
    """A page and the API calls it makes: ``steps`` run one after another, the calls of a step together."""

    name: str
    path: str
    steps: tuple[tuple[Call, ...], ...]


W = [("window", "30d")]


def views() -> list[View]:
    c = CUSTOMER
    return [
        View(
            "scores",
            "/scores?metric=csat&window=30d",
            (
                (
                    *(Call("scorer", "/v1/scores", [("metric", m), *W]) for m in ("csat", "nps", "ces")),
                    Call("scorer", "/v1/scores/series", [("metric", "csat"), *W]),
                ),
            ),
        ),
        View(
            "segments",
            "/segments?by=store&metric=csat&window=30d",
            (
                (
                    Call("scorer", "/v1/scores", [("metric", "csat"), *W]),
                    Call(
                        "scorer",
                        "/v1/scores/breakdown",
                        [
                            ("metric", "csat"),
                            *W,
                            ("by", "store"),
                            ("sort", "score"),
                            ("order", "desc"),
                            ("limit", "100"),
                            ("offset", "0"),
                        ],
                    ),
                    Call(
                        "scorer",
                        "/v1/scores/heatmap",
                        [
                            ("metric", "csat"),
                            *W,
                            ("rows", "store"),
                            ("columns", "channel"),
                            ("limit_rows", "30"),
                        ],
                    ),
                ),
            ),
        ),
        View(
            # The heat map's row link: one store's channels against the store (the drill-down).
            "heat map",
            f"/segments?by=channel&metric=csat&window=30d&segment=store%3A{STORE}",
            (
                (
                    Call("scorer", "/v1/scores", [("metric", "csat"), *W, ("segment", f"store:{STORE}")]),
                    Call(
                        "scorer",
                        "/v1/scores/heatmap",
                        [
                            ("metric", "csat"),
                            *W,
                            ("rows", "store"),
                            ("columns", "channel"),
                            ("segment", f"store:{STORE}"),
                            ("limit_columns", "100"),
                        ],
                    ),
                ),
            ),
        ),
        View(
            "verbatims",
            "/verbatims?window=30d",
            ((Call("scorer", "/v1/verbatims", [("page", "1"), ("per_page", "50"), *W]),),),
        ),
        View(
            "alerts",
            "/alerts",
            (
                (
                    Call(
                        "actions",
                        "/v1/alerts",
                        [
                            ("order", "work"),
                            ("limit", "50"),
                            ("status", "open"),
                            ("status", "acknowledged"),
                        ],
                    ),
                ),
            ),
        ),
        View(
            "customer",
            f"/customers/{c}",
            (
                (
                    Call("actions", f"/v1/customers/{c}", []),
                    Call("scorer", f"/v1/customers/{c}/history", [("limit", "50")]),
                    Call("actions", "/v1/alerts", [("customer_id", c), ("limit", "100")]),
                    Call("notifier", "/v1/deliveries", [("customer_id", c), ("limit", "100")]),
                ),
                # then the health of the customer's account, or of the customer alone (none here: 404)
                (Call("actions", f"/v1/accounts/{c}/health", [("kind", "customer")]),),
            ),
        ),
        View(
            "rules",
            "/rules",
            (
                (Call("actions", "/v1/rules", []),),
                (Call("actions", "/v1/rules/versions", [("limit", "1")]),),
            ),
        ),
    ]


async def _sign_in(client: httpx.AsyncClient, email: str, password: str) -> None:
    form = await client.get("/signin")
    token = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', form.text)
    if token is None:
        raise RuntimeError(f"no sign-in form: {form.status_code}")
    answer = await client.post(
        "/signin", data={"email": email, "password": password, "csrf_token": token.group(1), "next": "/"}
    )
    if answer.status_code != 303:
        raise RuntimeError(f"sign-in refused: {answer.status_code}")


def _bearer(bs: BenchStack) -> Callable[[], str]:
    """A person's access token as the console mints it (admin), fresh well before it expires."""
    from shared.identity.accesstokens import AccessTokenIssuer
    from shared.identity.principal import Principal, PrincipalKind
    from shared.identity.scopes import ROLE_SCOPES, Role

    issuer = AccessTokenIssuer(key=bs.stack.signing_key, issuer="csat-console", audience="csat-api")
    admin = Principal(
        subject="bench-admin", kind=PrincipalKind.PERSON, role=Role.ADMIN, scopes=ROLE_SCOPES[Role.ADMIN]
    )
    minted: dict[str, Any] = {"at": 0.0, "token": ""}

    def current() -> str:
        if time.monotonic() - minted["at"] > 120:
            minted["at"], minted["token"] = time.monotonic(), issuer.mint(admin).token
        return str(minted["token"])

    return current


class ViewFailed(RuntimeError):
    """A page or an API call answered an error: counted and named in the table, the run goes on."""


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} ms"


async def measure(
    bs: BenchStack, *, requests: int, budget_s: float, only: list[str] | None = None
) -> dict[str, Any]:
    stack = bs.stack
    urls = {name: f"http://127.0.0.1:{stack.ports[name]}" for name in SERVICES}
    admin = stack.dev_admin
    if admin is None:
        raise RuntimeError("the bench stack has no dev admin (CSAT_ENVIRONMENT must be dev)")
    bearer = _bearer(bs)
    out: dict[str, Any] = {}
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    async with (
        httpx.AsyncClient(base_url=urls["console"], timeout=120, headers={"accept": "text/html"}) as page,
        httpx.AsyncClient(timeout=120, limits=limits) as api,
    ):
        await _sign_in(page, admin.email, admin.password)

        async def get_page(path: str) -> None:
            answer = await page.get(path)
            if answer.status_code != 200:
                raise ViewFailed(f"console answered {answer.status_code}")

        async def get_api(c: Call, took: dict[str, float]) -> None:
            t0 = time.perf_counter()
            answer = await api.get(
                urls[c.service] + c.path,
                params=c.params,
                headers={"Authorization": f"Bearer {bearer()}", "Accept": "application/json"},
            )
            took[f"{c.service} {c.path}"] = (time.perf_counter() - t0) * 1000
            if answer.status_code >= 400 and not (answer.status_code == 404 and c.path.endswith("/health")):
                raise ViewFailed(f"{c.service} {c.path} answered {answer.status_code}")

        async def get_calls(v: View, took: dict[str, float]) -> None:
            for step in v.steps:
                await asyncio.gather(*(get_api(c, took) for c in step))

        async def attempt(call: Callable[[], Awaitable[None]], failures: list[str]) -> float | None:
            """The call's time, or None with the reason kept: one failing view never stops the run."""
            t0 = time.perf_counter()
            try:
                await call()
            except (ViewFailed, httpx.HTTPError) as exc:
                failures.append(str(exc) or type(exc).__name__)
                return None
            return (time.perf_counter() - t0) * 1000

        for v in views():
            if only and v.name not in only:
                continue
            console_ms: list[float] = []
            api_ms: list[float] = []
            per_call: dict[str, list[float]] = {}
            console_failed: list[str] = []
            api_failed: list[str] = []
            first_ms = None  # the first page of the view: nothing of it reused yet (the scorer's rankings)
            for i in range(3):  # warm: connections, caches, the planner's statistics
                page_ms = await attempt(lambda v=v: get_page(v.path), [])  # type: ignore[misc]
                first_ms = page_ms if i == 0 else first_ms
                await attempt(lambda v=v: get_calls(v, {}), [])  # type: ignore[misc]
            rounds = 0
            deadline = time.monotonic() + budget_s
            while rounds < requests and (time.monotonic() < deadline or rounds < MIN_ROUNDS):
                rounds += 1
                took: dict[str, float] = {}
                page_ms = await attempt(lambda v=v: get_page(v.path), console_failed)  # type: ignore[misc]
                calls_ms = await attempt(lambda v=v, t=took: get_calls(v, t), api_failed)  # type: ignore[misc]
                if page_ms is not None:
                    console_ms.append(page_ms)
                if calls_ms is not None:
                    api_ms.append(calls_ms)
                    for name, ms in took.items():
                        per_call.setdefault(name, []).append(ms)
                if rounds >= GIVE_UP_AFTER and not console_ms and not api_ms:
                    break  # failing every time: say so and go on to the next view
            failed = console_failed + api_failed
            res: dict[str, Any] = {
                "path": v.path,
                "calls": [f"{c.service} {c.path}" for step in v.steps for c in step],
                "n": rounds,
                "first_ms": first_ms,
                "console_failed": len(console_failed),
                "api_failed": len(api_failed),
                "failure": failed[0] if failed else None,
                "console_p50_ms": percentile(console_ms, 50) if console_ms else None,
                "console_p95_ms": percentile(console_ms, 95) if console_ms else None,
                "api_p50_ms": percentile(api_ms, 50) if api_ms else None,
                "api_p95_ms": percentile(api_ms, 95) if api_ms else None,
                "calls_p95_ms": {name: percentile(ms, 95) for name, ms in per_call.items()},
            }
            out[v.name] = res
            say(
                f"console: {v.path}: p95 {_ms(res['console_p95_ms'])}, its API calls p95 "
                f"{_ms(res['api_p95_ms'])} ({rounds} rounds, {len(console_failed)} console and "
                f"{len(api_failed)} API failures{': ' + str(res['failure']) if res['failure'] else ''})"
            )
    return out


def run(
    bs: BenchStack,
    *,
    ratings: int,
    stores: int,
    requests: int,
    budget_s: float,
    only: list[str] | None = None,
) -> dict[str, Any]:
    seeded = asyncio.run(seed(bs.database_url, ratings=ratings, stores=stores))
    say(
        f"console: seeded {seeded['ratings']:,} ratings in {seeded['seed_s']:.0f} s "
        f"({seeded['counter_rows_day']:,} day, {seeded['counter_rows_hour']:,} hour, "
        f"{seeded['counter_rows_minute']:,} minute counter rows)"
    )
    bs.stack.start_services(SERVICES)
    try:
        views_out = asyncio.run(measure(bs, requests=requests, budget_s=budget_s, only=only))
    finally:
        for name in SERVICES:
            svc = bs.stack.services.pop(name, None)
            if svc is not None:
                svc.stop()
    return {
        "seeded": seeded,
        "views": views_out,
        "config": {"ratings": ratings, "stores": stores, "requests": requests},
    }


# --- the report ----------------------------------------------------------------------------------------


def section(c: dict[str, Any], *, stamp: str) -> list[str]:
    s, cfg = c["seeded"], c["config"]
    lines = [
        HEADING,
        "",
        f"Measured {stamp}; `BENCH_PARTS=console`, {s['ratings']:,} stored ratings over {SPREAD_DAYS} days "
        f"({cfg['stores']:,} stores x 3 channels, {s['customers']:,} customers, one in {COMMENT_EVERY} "
        "with a "
        f"comment; {s['counter_rows_day']:,} day, {s['counter_rows_hour']:,} hour and "
        f"{s['counter_rows_minute']:,} minute counter rows computed from them), {s['alerts']:,} alerts, "
        "seeded "
        f"in SQL in {s['seed_s'] / 60:.1f} min. The scorer, actions, notifier and console run as their own "
        "processes. Each round times one page of the console (signed in as an admin) then, right after, the "
        "API calls that page makes (same paths and parameters, concurrent as the console makes them, with "
        "the same kind of access token): both columns come from the same run and the same load. Times are "
        "wall clock on loopback, sequential requests. A view that answers an error is counted, named in "
        "the table, and the run goes on to the next. The slowest call is the API call with the highest p95 "
        "of the view's (they run concurrently where the console makes them concurrently). The heat map of "
        "the 30 busiest stores x channels is part of the segments page (its `/v1/scores/heatmap` call); the "
        "heat map row is a heat-map row's link, one store's channels against the store. The scorer reuses a "
        "breakdown's whole ranking and an unfiltered heat map's answers per pair for "
        "`CSAT_BREAKDOWN_CACHE_S` (30 s, docs/scores.md): the p50 of those views is mostly a reuse, "
        "their p95 includes the recomputations (one every 30 s, whichever of the page or the API call "
        "comes first). The first page is the view's first request of the run, before any reuse (for the "
        "segments page: the whole ranking of 10,000 stores and every store x channel pair computed).",
        "",
        "| view | rounds | failures (console / API) | console p50 ms | console p95 ms | API p50 ms "
        "| API p95 ms | console / API (p95) | added p95 ms | slowest API call (p95 ms) | API calls "
        "| first page ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, v in c["views"].items():
        cp95, ap95 = v.get("console_p95_ms"), v.get("api_p95_ms")
        ratio = f"{cp95 / ap95:.2f}x" if cp95 is not None and ap95 else "-"
        added = f"{cp95 - ap95:,.1f}" if cp95 is not None and ap95 is not None else "-"
        failures = f"{v.get('console_failed', 0)} / {v.get('api_failed', 0)}"
        if v.get("failure"):
            failures += f": {v['failure']}"
        calls = v.get("calls_p95_ms") or {}
        slowest = max(calls.items(), key=lambda item: item[1]) if calls else None
        slow_text = f"`{slowest[0]}` {slowest[1]:,.1f}" if slowest else "-"
        lines.append(
            f"| {name} (`{v['path']}`) | {v['n']} | {failures} | {_cell(v.get('console_p50_ms'))} "
            f"| {_cell(cp95)} | {_cell(v.get('api_p50_ms'))} | {_cell(ap95)} | {ratio} | {added} "
            f"| {slow_text} | {len(v['calls'])} | {_cell(v.get('first_ms'))} |"
        )
    lines.append("")
    detail = [
        f"{name}: "
        + ", ".join(f"`{call}` {ms:,.1f}" for call, ms in sorted((v.get("calls_p95_ms") or {}).items()))
        for name, v in c["views"].items()
        if len(v.get("calls_p95_ms") or {}) > 1
    ]
    if detail:
        lines += ["Each API call's own p95 (ms) where a view makes several: " + "; ".join(detail) + ".", ""]
    return lines


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def splice(text: str, lines: list[str]) -> str:
    """``text`` (a whole docs/benchmarks.md) with the "## Console" section replaced, or inserted before
    "## Reproduce" (else at the end): a console-only run keeps every other part's figures."""
    doc = text.split("\n")
    if HEADING in doc:
        start = doc.index(HEADING)
        end = next((i for i in range(start + 1, len(doc)) if doc[i].startswith("## ")), len(doc))
        doc[start:end] = lines
    else:
        at = doc.index("## Reproduce") if "## Reproduce" in doc else len(doc)
        doc[at:at] = lines
    return "\n".join(doc)
