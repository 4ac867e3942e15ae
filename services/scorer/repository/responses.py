"""Survey invitations and answers on PostgreSQL (``ports.ResponseCounter``) and their reads.

One row per invitation id in ``scorer.survey_responses``, inserted by whichever of the invitation and
its first answer comes first; each statement returns only the rows it moved, so a replayed record, a
second answer or a re-click moves nothing and is never counted twice. Everything runs in the consumer's
transaction with its offsets (migration 0020 says how the counters read).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scorer.ports import CountedSegments
from services.scorer.repository.registry import Registry
from services.scorer.repository.writes import driver
from services.scorer.responses import Answer, Counted, Invitation, ResponseCounts, ResponseIncrement

_INVITED = """
INSERT INTO scorer.survey_responses AS r (invitation_id, metric, segment, keys, invited_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::text[], $5::timestamptz[]) ORDER BY 1
ON CONFLICT (invitation_id) DO UPDATE
    SET metric = EXCLUDED.metric, segment = EXCLUDED.segment, keys = EXCLUDED.keys,
        invited_at = EXCLUDED.invited_at
    WHERE r.invited_at IS NULL
RETURNING metric, keys, invited_at, answered_at IS NOT NULL, commented
"""

_ANSWERED = """
INSERT INTO scorer.survey_responses AS r (invitation_id, answered_at, commented)
SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::boolean[]) ORDER BY 1
ON CONFLICT (invitation_id) DO UPDATE SET answered_at = EXCLUDED.answered_at, commented = EXCLUDED.commented
    WHERE r.answered_at IS NULL
RETURNING metric, keys, invited_at, commented
"""

_ADD = """
INSERT INTO scorer.response_counts AS c (metric, segment_key, bucket_start, invited, answered, commented)
SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::bigint[], $5::bigint[], $6::bigint[])
ON CONFLICT (metric, segment_key, bucket_start) DO UPDATE
    SET invited = c.invited + EXCLUDED.invited, answered = c.answered + EXCLUDED.answered,
        commented = c.commented + EXCLUDED.commented
"""


async def record_responses(
    conn: AsyncConnection, *, invitations: Sequence[Invitation], answers: Mapping[str, Answer]
) -> list[Counted]:
    """Invitations first, then answers: an invitation and its answer in one batch count as both."""
    pg = await driver(conn)
    moved: list[Counted] = []
    if invitations:
        rows = await pg.fetch(
            _INVITED,
            [i.invitation_id for i in invitations],
            [i.metric for i in invitations],
            [orjson.dumps(dict(i.segment)).decode() for i in invitations],
            [i.keys for i in invitations],
            [i.invited_at for i in invitations],
        )
        moved += [Counted(m, k, at, invited=True, answered=bool(a), commented=c) for m, k, at, a, c in rows]
    if answers:
        ids = sorted(answers)
        rows = await pg.fetch(
            _ANSWERED, ids, [answers[i].at for i in ids], [answers[i].commented for i in ids]
        )
        moved += [
            Counted(m, k, at, invited=False, answered=True, commented=c)
            for m, k, at, c in rows
            if at is not None
        ]
    return moved


async def add_response_counts(conn: AsyncConnection, *, increments: Sequence[ResponseIncrement]) -> None:
    if not increments:
        return
    pg = await driver(conn)
    await pg.execute(_ADD, *(list(column) for column in zip(*increments, strict=True)))


class PgResponseCounter:
    """``ports.ResponseCounter`` on PostgreSQL, sharing the ratings' segment registry (same keys)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    async def counted_all(
        self, tx: AsyncConnection, segments: Sequence[Mapping[str, str]]
    ) -> list[CountedSegments]:
        return await self.registry.counted_all(tx, segments)

    async def record_responses(
        self, tx: AsyncConnection, *, invitations: Sequence[Invitation], answers: Mapping[str, Answer]
    ) -> list[Counted]:
        return await record_responses(tx, invitations=invitations, answers=answers)

    async def add_response_counts(
        self, tx: AsyncConnection, *, increments: Sequence[ResponseIncrement]
    ) -> None:
        await add_response_counts(tx, increments=increments)


async def response_counts(
    conn: AsyncConnection,
    *,
    metric: str,
    key: str | None,
    attributes: Mapping[str, str],
    start: datetime,
    end: datetime,
) -> ResponseCounts:
    """Invited, answered, commented in ``[start, end)``: the segment's counters, or its invitation rows."""
    if key is not None:
        sql = (
            "SELECT coalesce(sum(invited), 0), coalesce(sum(answered), 0), coalesce(sum(commented), 0) "
            "FROM scorer.response_counts "
            "WHERE metric = :metric AND segment_key = :key AND bucket_start >= :start AND bucket_start < :end"
        )
        params: dict[str, object] = {"metric": metric, "key": key, "start": start, "end": end}
    else:
        sql = (
            "SELECT count(*), count(answered_at), "
            "count(*) FILTER (WHERE answered_at IS NOT NULL AND commented) "
            "FROM scorer.survey_responses WHERE metric = :metric "
            "AND segment @> CAST(:segment AS jsonb) AND invited_at >= :start AND invited_at < :end"
        )
        params = {
            "metric": metric,
            "segment": orjson.dumps(dict(attributes)).decode(),
            "start": start,
            "end": end,
        }
    row = (await conn.execute(text(sql), params)).one()
    return ResponseCounts(int(row[0]), int(row[1]), int(row[2]))


async def response_counts_by_key(
    conn: AsyncConnection, *, metric: str, keys: Sequence[str], start: datetime, end: datetime
) -> dict[str, ResponseCounts]:
    """Invited, answered, commented in ``[start, end)`` per segment key (a breakdown's rows), from the
    counters; keys without invitations are left out."""
    if not keys:
        return {}
    sql = (
        "SELECT segment_key, sum(invited), sum(answered), sum(commented) FROM scorer.response_counts "
        "WHERE metric = :metric AND segment_key = ANY(:keys) "
        "AND bucket_start >= :start AND bucket_start < :end "
        "GROUP BY segment_key"
    )
    params = {"metric": metric, "keys": list(keys), "start": start, "end": end}
    found = await conn.execute(text(sql), params)
    return {str(r[0]): ResponseCounts(int(r[1]), int(r[2]), int(r[3])) for r in found}
