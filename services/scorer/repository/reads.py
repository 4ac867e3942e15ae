"""The query API's reads on PostgreSQL: counter tiers, stored ratings, a customer's history."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.scorer.ports import (
    CommentQuery,
    CommentRow,
    Counts,
    CountsKey,
    DriftKey,
    DriftRecord,
    HistoryCursor,
    HistoryRow,
    KeyFilter,
    LabelledRange,
    LabelledSpan,
    Registration,
    ScoreGroup,
)
from services.scorer.repository.drift import drift_list, drift_records
from services.scorer.repository.registry import registration
from services.scorer.repository.responses import response_counts, response_counts_by_key
from services.scorer.repository.tables import TIER_TABLES
from services.scorer.responses import ResponseCounts
from services.scorer.windows import EPOCH
from shared.db import snapshot_reads


def _key_condition(where: KeyFilter) -> tuple[str, dict[str, Any]]:
    if where.dimensions:
        like = "|".join(f"{_like_escape(d)}=%" for d in sorted(where.dimensions))
        return (
            "c.segment_key LIKE :like AND "
            "length(c.segment_key) - length(replace(c.segment_key, '|', '')) = :pipes",
            {"like": like, "pipes": len(where.dimensions) - 1},
        )
    return "c.segment_key = ANY(:keys)", {"keys": list(where.keys)}


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def load_counts(
    conn: AsyncConnection,
    *,
    metric: str,
    where: KeyFilter,
    spans: Sequence[LabelledSpan],
) -> dict[CountsKey, Counts]:
    """Sum counters of every labelled span for the selected keys, per (label, segment key)."""
    by_tier: dict[str, list[LabelledSpan]] = {}
    for item in spans:
        by_tier.setdefault(item.span.tier, []).append(item)
    if not by_tier or (not where.keys and not where.dimensions):
        return {}
    condition, params = _key_condition(where)
    selects = []
    for i, (tier, items) in enumerate(sorted(by_tier.items())):
        table = TIER_TABLES[tier]
        selects.append(
            f"SELECT r.label, c.segment_key, c.scale, c.score, sum(c.n)::bigint AS n FROM {table} c "  # noqa: S608 - table names are module constants; values are bound parameters
            f"JOIN unnest(CAST(:l{i} AS text[]), CAST(:s{i} AS timestamptz[]), CAST(:e{i} AS timestamptz[])) "
            f"AS r(label, s, e) ON c.bucket_start >= r.s AND c.bucket_start < r.e "
            f"WHERE c.metric = :metric AND {condition} "
            # The spans' overall bounds as plain conditions: the time indexes (BRIN) then read only the
            # window's pages, where the join alone scanned every bucket of the selected keys (all time).
            f"AND c.bucket_start >= :lo{i} AND c.bucket_start < :hi{i} GROUP BY 1, 2, 3, 4"
        )
        params[f"lo{i}"] = min(item.span.start for item in items)
        params[f"hi{i}"] = max(item.span.end for item in items)
        params[f"l{i}"] = [item.label for item in items]
        params[f"s{i}"] = [item.span.start for item in items]
        params[f"e{i}"] = [item.span.end for item in items]
    params["metric"] = metric
    rows = await conn.execute(text(" UNION ALL ".join(selects)), params)
    out: dict[CountsKey, Counts] = {}
    for r in rows:
        counts = out.setdefault(CountsKey(r.label, r.segment_key), {})
        key = (r.scale, int(r.score))
        counts[key] = counts.get(key, 0) + int(r.n)
    return out


async def load_rating_counts(
    conn: AsyncConnection,
    *,
    metric: str,
    attributes: Mapping[str, str],
    ranges: Sequence[LabelledRange],
) -> dict[str, Counts]:
    """Exact counts straight from the stored ratings, for a segment that has no counters of its own."""
    if not ranges:
        return {}
    rows = await conn.execute(
        text(
            "SELECT r.label, x.scale, x.score, count(*)::bigint AS n FROM scorer.ratings x "
            "JOIN unnest(CAST(:l AS text[]), CAST(:s AS timestamptz[]), CAST(:e AS timestamptz[])) "
            "AS r(label, s, e) ON x.occurred_at >= r.s AND x.occurred_at < r.e "
            "WHERE x.metric = :m AND x.segment @> CAST(:seg AS jsonb) GROUP BY 1, 2, 3"
        ),
        {
            "l": [r.label for r in ranges],
            "s": [r.start for r in ranges],
            "e": [r.end for r in ranges],
            "m": metric,
            "seg": json.dumps(dict(attributes)),
        },
    )
    out: dict[str, Counts] = {}
    for r in rows:
        out.setdefault(r.label, {})[(r.scale, int(r.score))] = int(r.n)
    return out


async def load_series(
    conn: AsyncConnection,
    *,
    metric: str,
    key: str | None,
    attributes: Mapping[str, str],
    tier: str,
    start: datetime,
    end: datetime,
    step: timedelta,
) -> dict[datetime, Counts]:
    """Counts per step (aligned on the epoch) from a tier, or from the ratings when ``key`` is None."""
    if key is not None:
        sql = (
            f"SELECT date_bin(:step, bucket_start, :origin) AS bucket, scale, score, sum(n)::bigint AS n "  # noqa: S608 - table names are module constants; values are bound parameters
            f"FROM {TIER_TABLES[tier]} WHERE metric = :m AND segment_key = :k "
            f"AND bucket_start >= :s AND bucket_start < :e GROUP BY 1, 2, 3"
        )
        params: dict[str, Any] = {"k": key}
    else:
        sql = (
            "SELECT date_bin(:step, occurred_at, :origin) AS bucket, scale, score, count(*)::bigint AS n "
            "FROM scorer.ratings WHERE metric = :m AND segment @> CAST(:seg AS jsonb) "
            "AND occurred_at >= :s AND occurred_at < :e GROUP BY 1, 2, 3"
        )
        params = {"seg": json.dumps(dict(attributes))}
    params.update(step=step, origin=EPOCH, m=metric, s=start, e=end)
    rows = await conn.execute(text(sql), params)
    out: dict[datetime, Counts] = {}
    for r in rows:
        bucket: datetime = r.bucket
        out.setdefault(bucket, {})[(r.scale, int(r.score))] = int(r.n)
    return out


async def customer_ratings(
    conn: AsyncConnection,
    *,
    customer_id: str,
    metric: str | None,
    before: HistoryCursor | None,
    limit: int,
) -> list[HistoryRow]:
    """Newest first, keyset-paged on (occurred_at, rating_id)."""
    clauses = ["customer_id = :c"]
    params: dict[str, Any] = {"c": customer_id, "n": limit}
    if metric is not None:
        clauses.append("metric = :m")
        params["m"] = metric
    if before is not None:
        clauses.append("(occurred_at, rating_id) < (:bt, :bid)")
        params.update(bt=before.occurred_at, bid=before.rating_id)
    rows = await conn.execute(
        text(
            "SELECT rating_id, metric, scale, score, sentiment, touchpoint, comment, segment, occurred_at "  # noqa: S608 - fixed clauses; values are bound
            f"FROM scorer.ratings WHERE {' AND '.join(clauses)} "
            "ORDER BY occurred_at DESC, rating_id DESC LIMIT :n"
        ),
        params,
    )
    return [
        HistoryRow(
            r.rating_id,
            r.metric,
            r.scale,
            int(r.score),
            r.sentiment,
            r.touchpoint,
            r.comment,
            dict(r.segment),
            r.occurred_at,
        )
        for r in rows
    ]


async def customer_score_groups(
    conn: AsyncConnection, *, customer_id: str, metric: str | None
) -> list[ScoreGroup]:
    """Every (metric, scale, score) the customer gave, how often, and the latest such rating."""
    clause = "AND metric = :m" if metric is not None else ""
    rows = await conn.execute(
        text(
            "SELECT metric, scale, score, count(*) AS n, "  # noqa: S608 - fixed clause; values are bound
            "(array_agg(rating_id ORDER BY occurred_at DESC, rating_id DESC))[1] AS latest_id, "
            "max(occurred_at) AS latest_at FROM scorer.ratings "
            f"WHERE customer_id = :c {clause} GROUP BY 1, 2, 3"
        ),
        {"c": customer_id, "m": metric},
    )
    return [ScoreGroup(r.metric, r.scale, int(r.score), int(r.n), r.latest_id, r.latest_at) for r in rows]


async def comments(conn: AsyncConnection, *, query: CommentQuery) -> list[CommentRow]:
    """Newest first; the segment filter uses the ``ratings_segment`` GIN index (containment)."""
    clauses = ["occurred_at >= :start", "occurred_at < :end", "comment IS NOT NULL", "comment <> ''"]
    params: dict[str, Any] = {"start": query.start, "end": query.end, "n": query.limit}
    if query.metric is not None:
        clauses.append("metric = :m")
        params["m"] = query.metric
    if query.segment:
        clauses.append("segment @> CAST(:seg AS jsonb)")
        params["seg"] = json.dumps(dict(query.segment))
    if query.score_min is not None:
        clauses.append("score >= :smin")
        params["smin"] = query.score_min
    if query.score_max is not None:
        clauses.append("score <= :smax")
        params["smax"] = query.score_max
    if query.text:
        clauses.append("comment ILIKE :q ESCAPE '\\'")
        params["q"] = f"%{_like_escape(query.text)}%"
    rows = await conn.execute(
        text(
            "SELECT rating_id, metric, scale, score, customer_id, segment, touchpoint, comment, occurred_at "  # noqa: S608 - fixed clauses; values are bound
            f"FROM scorer.ratings WHERE {' AND '.join(clauses)} "
            "ORDER BY occurred_at DESC, rating_id DESC LIMIT :n"
        ),
        params,
    )
    return [
        CommentRow(
            r.rating_id,
            r.metric,
            r.scale,
            int(r.score),
            r.customer_id,
            dict(r.segment),
            r.touchpoint,
            r.comment,
            r.occurred_at,
        )
        for r in rows
    ]


class PgReader:
    """``ports.ScoreReader`` and ``ports.CustomerReader`` on one connection (one request)."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def registration(self, *, attributes: Mapping[str, str]) -> Registration:
        return await registration(self._conn, attributes=attributes)

    async def load_counts(
        self, *, metric: str, where: KeyFilter, spans: Sequence[LabelledSpan]
    ) -> dict[CountsKey, Counts]:
        return await load_counts(self._conn, metric=metric, where=where, spans=spans)

    async def drift(self, *, metric: str, keys: Sequence[str]) -> dict[str, DriftRecord]:
        return {r.segment_key: r for r in await drift_records(self._conn, metric=metric, keys=keys)}

    async def drift_list(
        self, *, metric: str | None, status: str | None, after: DriftKey | None, limit: int
    ) -> list[DriftRecord]:
        return await drift_list(self._conn, metric=metric, status=status, after=after, limit=limit)

    async def load_rating_counts(
        self, *, metric: str, attributes: Mapping[str, str], ranges: Sequence[LabelledRange]
    ) -> dict[str, Counts]:
        return await load_rating_counts(self._conn, metric=metric, attributes=attributes, ranges=ranges)

    async def load_series(
        self,
        *,
        metric: str,
        key: str | None,
        attributes: Mapping[str, str],
        tier: str,
        start: datetime,
        end: datetime,
        step: timedelta,
    ) -> dict[datetime, Counts]:
        return await load_series(
            self._conn,
            metric=metric,
            key=key,
            attributes=attributes,
            tier=tier,
            start=start,
            end=end,
            step=step,
        )

    async def response_counts(
        self, *, metric: str, key: str | None, attributes: Mapping[str, str], start: datetime, end: datetime
    ) -> ResponseCounts:
        return await response_counts(
            self._conn, metric=metric, key=key, attributes=attributes, start=start, end=end
        )

    async def response_counts_by_key(
        self, *, metric: str, keys: Sequence[str], start: datetime, end: datetime
    ) -> dict[str, ResponseCounts]:
        return await response_counts_by_key(self._conn, metric=metric, keys=keys, start=start, end=end)

    async def customer_ratings(
        self, *, customer_id: str, metric: str | None, before: HistoryCursor | None, limit: int
    ) -> list[HistoryRow]:
        return await customer_ratings(
            self._conn, customer_id=customer_id, metric=metric, before=before, limit=limit
        )

    async def customer_score_groups(self, *, customer_id: str, metric: str | None) -> list[ScoreGroup]:
        return await customer_score_groups(self._conn, customer_id=customer_id, metric=metric)

    async def customer_accounts(self, *, customer_id: str) -> frozenset[str]:
        rows = await self._conn.execute(
            text(
                "SELECT DISTINCT account_id FROM scorer.ratings "
                "WHERE customer_id = :c AND account_id IS NOT NULL"
            ),
            {"c": customer_id},
        )
        return frozenset(str(r.account_id) for r in rows)

    async def comments(self, *, query: CommentQuery) -> list[CommentRow]:
        return await comments(self._conn, query=query)


class PgReads:
    """Opens read sessions: one connection per request, not per query (a checkout pings the server).

    A session is one read-only REPEATABLE READ transaction, so every statement of a request sees the
    same snapshot: an answer assembled from several reads (a score's counts, then its response rate)
    never mixes the states before and after a scorer batch that committed in between (under READ
    COMMITTED each statement took its own snapshot, and GET /v1/scores once said 30 answered beside 20
    responses). A read-only transaction at this level cannot fail to serialise, and it holds its snapshot
    only for the request."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = snapshot_reads(engine)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[PgReader]:
        async with self._engine.connect() as conn:
            yield PgReader(conn)
