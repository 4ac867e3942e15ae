"""Independent checks of the scorer's counters: a recomputation in SQL from ``scorer.ratings``.

The recomputation does not reuse the scorer's code: it folds values with the registry tables,
builds the segment keys and combinations, buckets by tier and counts with ``GROUP BY``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg

TIERS = {
    "scorer.score_counts_minute": "1 minute",
    "scorer.score_counts": "1 hour",
    "scorer.score_counts_day": "1 day",
}
Row = tuple[str, str, datetime, str, int]
#: Days each tier keeps (the scorer's defaults). Buckets older than that, less a day of slack, are the
#: retention job's: the scorer does not write them and the check does not compare them.
RETENTION_DAYS = {"scorer.score_counts_minute": 35, "scorer.score_counts": 800}


def _esc(expr: str) -> str:
    return f"replace(replace(replace({expr}, '%', '%25'), '|', '%7C'), '=', '%3D')"


def recompute_sql(combinations: Sequence[Sequence[str]], stride: str) -> str:
    combos = []
    for combo in combinations:
        dims = sorted(set(combo))
        if len(dims) < 2:
            continue
        joins = " ".join(
            f"JOIN attrs a{i} ON a{i}.rating_id = a0.rating_id AND a{i}.dim = '{d}'"
            for i, d in enumerate(dims[1:], start=1)
        )
        key = " || '|' || ".join(f"a{i}.k" for i in range(len(dims)))
        combos.append(f"SELECT a0.rating_id, {key} AS k FROM attrs a0 {joins} WHERE a0.dim = '{dims[0]}'")  # noqa: S608 - test SQL from test constants
    combo_sql = "".join(f" UNION ALL {c}" for c in combos)
    return f"""
    WITH attrs AS (
        SELECT r.rating_id, kv.key AS dim,
            {_esc("kv.key")} || '=' ||
            {_esc("CASE WHEN kv.value = 'other' OR sv.value IS NOT NULL THEN kv.value ELSE 'other' END")} AS k
        FROM scorer.ratings r
        CROSS JOIN LATERAL jsonb_each_text(r.segment) AS kv
        JOIN scorer.segment_dimensions sd ON sd.dimension = kv.key
        LEFT JOIN scorer.segment_values sv ON sv.dimension = kv.key AND sv.value = kv.value
    ), keys AS (
        SELECT rating_id, '*' AS k FROM scorer.ratings
        UNION ALL SELECT rating_id, k FROM attrs{combo_sql}
    )
    SELECT r.metric, k.k, date_bin('{stride}', r.occurred_at, TIMESTAMPTZ '1970-01-01 00:00:00+00') AS b,
        r.scale, r.score, count(*) AS n
    FROM scorer.ratings r JOIN keys k USING (rating_id)
    GROUP BY 1, 2, 3, 4, 5
    """  # noqa: S608 - test SQL from test constants


async def counter_mismatches(
    database_url: str, *, combinations: Sequence[Sequence[str]], tiers: Sequence[str] = tuple(TIERS)
) -> dict[str, list[tuple[Row, int | None, int | None]]]:
    """Per tier, every bucket whose stored count differs from the recomputation: (row, expected, stored)."""
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        out: dict[str, list[tuple[Row, int | None, int | None]]] = {}
        for table in tiers:
            days = RETENTION_DAYS.get(table)
            since = (
                await conn.fetchval(
                    "SELECT date_trunc('day', now() - make_interval(days => $1), 'UTC') - interval '1 day'",
                    days,
                )
                if days is not None
                else datetime.min.replace(tzinfo=UTC)
            )
            expected = {
                (r[0], r[1], r[2], r[3], int(r[4])): int(r[5])
                for r in await conn.fetch(recompute_sql(combinations, TIERS[table]))
                if r[2] >= since
            }
            stored = {
                (r[0], r[1], r[2], r[3], int(r[4])): int(r[5])
                for r in await conn.fetch(
                    f"SELECT metric, segment_key, bucket_start, scale, score, n FROM {table}"  # noqa: S608 - test constant
                )
                if r[2] >= since
            }
            bad = [
                (key, expected.get(key), stored.get(key))
                for key in sorted(set(expected) | set(stored))
                if expected.get(key) != stored.get(key)
            ]
            out[table] = bad
        return out
    finally:
        await conn.close()


async def fetch_value(database_url: str, sql: str, *args: object) -> object:
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()
