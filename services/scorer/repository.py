"""SQL for the scorer: batched inserts and upserts, one statement per micro-batch and table."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.events import RatingSubmitted

_INSERT_RATINGS = text(
    """
    INSERT INTO scorer.ratings (rating_id, metric, scale, score, sentiment, customer_id, segment,
        touchpoint, comment, account_id, account_tier, account_value, source, occurred_at, received_at)
    SELECT * FROM unnest(
        CAST(:rating_id AS text[]), CAST(:metric AS text[]), CAST(:scale AS text[]),
        CAST(:score AS smallint[]), CAST(:sentiment AS text[]), CAST(:customer_id AS text[]),
        CAST(:segment AS jsonb[]), CAST(:touchpoint AS text[]), CAST(:comment AS text[]),
        CAST(:account_id AS text[]), CAST(:account_tier AS text[]), CAST(:account_value AS numeric[]),
        CAST(:source AS text[]), CAST(:occurred_at AS timestamptz[]), CAST(:received_at AS timestamptz[]))
    ON CONFLICT (rating_id) DO NOTHING
    RETURNING rating_id
    """
)

_UPSERT_COUNTS = text(
    """
    INSERT INTO scorer.score_counts AS c (metric, segment_key, bucket_start, scale, score, n)
    SELECT * FROM unnest(CAST(:metric AS text[]), CAST(:segment_key AS text[]),
        CAST(:bucket_start AS timestamptz[]), CAST(:scale AS text[]), CAST(:score AS smallint[]),
        CAST(:n AS bigint[]))
    ON CONFLICT (metric, segment_key, bucket_start, scale, score) DO UPDATE SET n = c.n + EXCLUDED.n
    """
)


async def insert_new_ratings(
    conn: AsyncConnection, ratings: Sequence[RatingSubmitted]
) -> list[RatingSubmitted]:
    """Insert ratings not stored yet and return exactly those (the dedupe on rating_id)."""
    unique: dict[str, RatingSubmitted] = {}
    for r in ratings:
        unique.setdefault(r.rating_id, r)
    if not unique:
        return []
    rows = list(unique.values())
    result = await conn.execute(
        _INSERT_RATINGS,
        {
            "rating_id": [r.rating_id for r in rows],
            "metric": [r.metric.value for r in rows],
            "scale": [r.scale for r in rows],
            "score": [r.score for r in rows],
            "sentiment": [r.sentiment.value for r in rows],
            "customer_id": [r.customer.id for r in rows],
            "segment": [json.dumps(r.segment, separators=(",", ":")) for r in rows],
            "touchpoint": [r.touchpoint for r in rows],
            "comment": [r.comment for r in rows],
            "account_id": [r.account.id if r.account else None for r in rows],
            "account_tier": [r.account.tier if r.account else None for r in rows],
            "account_value": [r.account.value if r.account else None for r in rows],
            "source": [r.source for r in rows],
            "occurred_at": [r.occurred_at for r in rows],
            "received_at": [r.received_at for r in rows],
        },
    )
    inserted = {row.rating_id for row in result}
    return [r for r in rows if r.rating_id in inserted]


async def add_counts(conn: AsyncConnection, increments: Counter[tuple[str, str, datetime, str, int]]) -> None:
    """Add increments to the counters; sorted so concurrent scorers lock rows in one order."""
    if not increments:
        return
    keys = sorted(increments)
    await conn.execute(
        _UPSERT_COUNTS,
        {
            "metric": [k[0] for k in keys],
            "segment_key": [k[1] for k in keys],
            "bucket_start": [k[2] for k in keys],
            "scale": [k[3] for k in keys],
            "score": [k[4] for k in keys],
            "n": [increments[k] for k in keys],
        },
    )


async def load_counts(
    conn: AsyncConnection, *, metric: str, segment_key: str, start: datetime, end: datetime
) -> dict[tuple[str, int], int]:
    rows = await conn.execute(
        text(
            "SELECT scale, score, sum(n)::bigint AS n FROM scorer.score_counts "
            "WHERE metric = :m AND segment_key = :k AND bucket_start >= :s AND bucket_start < :e "
            "GROUP BY scale, score"
        ),
        {"m": metric, "k": segment_key, "s": start, "e": end},
    )
    return {(r.scale, int(r.score)): int(r.n) for r in rows}


async def load_counts_from_ratings(
    conn: AsyncConnection, *, metric: str, attributes: Mapping[str, str], start: datetime, end: datetime
) -> dict[tuple[str, int], int]:
    """Exact counts for a combination that has no counters, straight from the stored ratings."""
    rows = await conn.execute(
        text(
            "SELECT scale, score, count(*)::bigint AS n FROM scorer.ratings "
            "WHERE metric = :m AND segment @> CAST(:seg AS jsonb) "
            "AND occurred_at >= :s AND occurred_at < :e GROUP BY scale, score"
        ),
        {"m": metric, "seg": json.dumps(dict(attributes)), "s": start, "e": end},
    )
    return {(r.scale, int(r.score)): int(r.n) for r in rows}


async def load_breakdown(
    conn: AsyncConnection, *, metric: str, dimension: str, start: datetime, end: datetime
) -> dict[str, dict[tuple[str, int], int]]:
    """Counts per value of one dimension (single-attribute segments only)."""
    rows = await conn.execute(
        text(
            "SELECT segment_key, scale, score, sum(n)::bigint AS n FROM scorer.score_counts "
            "WHERE metric = :m AND segment_key LIKE :prefix AND strpos(segment_key, '|') = 0 "
            "AND bucket_start >= :s AND bucket_start < :e GROUP BY segment_key, scale, score"
        ),
        {"m": metric, "prefix": _like_prefix(dimension) + "=%", "s": start, "e": end},
    )
    out: dict[str, dict[tuple[str, int], int]] = {}
    for r in rows:
        value = r.segment_key.split("=", 1)[1]
        out.setdefault(value, {})[(r.scale, int(r.score))] = int(r.n)
    return out


def _like_prefix(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
