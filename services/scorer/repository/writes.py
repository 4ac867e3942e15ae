"""The consumer's hot path: one statement per micro-batch stores new ratings and counts them once.

The micro-batch statement inserts the new ratings (dedupe on ``rating_id``), and from exactly the
rows inserted adds the increments to the minute, hour and day counters and marks the touched
segments dirty for the score-event evaluator, all in the consumer's transaction (with its offsets).
Rows are inserted in key order so concurrent scorers lock counter rows in one order (no deadlock).
A replay (``repository.replay``) counts stored ratings into shadow tables with the same CTEs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scorer import increments as inc
from services.scorer import revisions as rv
from services.scorer.ports import CountedSegments, Rating
from services.scorer.repository.registry import Registry
from services.scorer.repository.tables import LIVE, CounterTables

_ORIGIN = "TIMESTAMPTZ '1970-01-01 00:00:00+00'"


def _counter_ctes(tables: CounterTables, source: str, since: tuple[str, str] | None = None) -> str:
    """Upserts of the three tiers from ``source`` (minute buckets already counted: ``b``, ``n``);
    ``since`` names the parameters (minute, hour) below which fine buckets are not written (a replay
    skips what retention would prune anyway)."""
    parts = []
    for alias, table, stride, cutoff in (
        ("m", tables.minute, None, since[0] if since else None),
        ("h", tables.hour, "1 hour", since[1] if since else None),
        ("d", tables.day, "1 day", None),
    ):
        where = f"WHERE b >= {cutoff}" if cutoff else ""
        if stride is None:
            select = f"SELECT metric, segment_key, b, scale, score, n FROM {source} {where}"  # noqa: S608 - table names are module constants; values are bound parameters
        else:
            select = (
                f"SELECT metric, segment_key, date_bin('{stride}', b, {_ORIGIN}) AS b, scale, score, "  # noqa: S608 - table names are module constants; values are bound parameters
                f"sum(n)::bigint FROM {source} {where} GROUP BY 1, 2, 3, 4, 5"
            )
        parts.append(
            f"""{alias} AS (
            INSERT INTO {table} AS c (metric, segment_key, bucket_start, scale, score, n)
            {select} ORDER BY 1, 2, 3, 4, 5
            ON CONFLICT (metric, segment_key, bucket_start, scale, score) DO UPDATE SET n = c.n + EXCLUDED.n
        )"""
        )
    if tables.dirty is not None:
        parts.append(
            f"""dirty AS (
            INSERT INTO {tables.dirty} AS x (metric, segment_key)
            SELECT DISTINCT metric, segment_key FROM {source} ORDER BY 1, 2
            ON CONFLICT (metric, segment_key) DO UPDATE SET version = x.version + 1, updated_at = now()
        )"""  # noqa: S608 - table names are module constants; values are bound parameters
        )
    return ",\n".join(parts)


_MINUTE_COUNTS = f"""
    SELECT s.metric, k.segment_key, date_bin('1 minute', s.occurred_at, {_ORIGIN}) AS b, s.scale, s.score,
        count(*) AS n
    FROM {{rows}}, unnest(string_to_array(s.keys, chr(31))) AS k(segment_key)
    GROUP BY 1, 2, 3, 4, 5
"""  # noqa: S608 - table names are module constants; values are bound parameters


_APPLY_BATCH = f"""
WITH src AS MATERIALIZED (
    SELECT rating_id, metric, scale, score, sentiment, customer_id, segment, touchpoint, comment, account_id,
        account_tier, account_value, source, to_timestamp(occurred_s) AS occurred_at,
        to_timestamp(received_s) AS received_at, keys
    FROM unnest($1::scorer.rating_input[])
), ins AS (
    INSERT INTO scorer.ratings (rating_id, metric, scale, score, sentiment, customer_id, segment,
        touchpoint, comment, account_id, account_tier, account_value, source, occurred_at, received_at)
    SELECT rating_id, metric, scale, score, sentiment, customer_id, segment, touchpoint, comment,
        account_id, account_tier, account_value, source, occurred_at, received_at
    FROM src ORDER BY rating_id
    ON CONFLICT (rating_id) DO NOTHING
    RETURNING rating_id
), inc AS MATERIALIZED (
    {_MINUTE_COUNTS.format(rows="src s JOIN ins USING (rating_id)")}
),
{_counter_ctes(LIVE, "inc", since=("$2::timestamptz", "$3::timestamptz"))}
SELECT rating_id FROM ins
"""  # noqa: S608 - table names are module constants; values are bound parameters


_INSERT_RATINGS = """
WITH src AS (
    SELECT rating_id, metric, scale, score, sentiment, customer_id, segment, touchpoint, comment, account_id,
        account_tier, account_value, source, to_timestamp(occurred_s) AS occurred_at,
        to_timestamp(received_s) AS received_at
    FROM unnest($1::scorer.rating_input[])
)
INSERT INTO scorer.ratings (rating_id, metric, scale, score, sentiment, customer_id, segment,
    touchpoint, comment, account_id, account_tier, account_value, source, occurred_at, received_at)
SELECT rating_id, metric, scale, score, sentiment, customer_id, segment, touchpoint, comment,
    account_id, account_tier, account_value, source, occurred_at, received_at
FROM src ORDER BY rating_id
ON CONFLICT (rating_id) DO NOTHING
RETURNING rating_id
"""


def _increments_statement(tables: CounterTables, source: str) -> str:
    """Upserts of increments already added up per counter row (``increments.aggregate``) from
    ``source`` (columns tier, metric, segment_key, bucket_s, scale, score, n), in key order."""
    parts = [
        f"""src AS MATERIALIZED (
        SELECT tier, metric, segment_key, to_timestamp(bucket_s) AS b, scale, score, n FROM {source}
    )"""  # noqa: S608 - table names are module constants; values are bound parameters
    ]
    for alias, table, tier in (
        ("m", tables.minute, inc.MINUTE_TIER),
        ("h", tables.hour, inc.HOUR_TIER),
        ("d", tables.day, inc.DAY_TIER),
    ):
        parts.append(
            f"""{alias} AS (
        INSERT INTO {table} AS c (metric, segment_key, bucket_start, scale, score, n)
        SELECT metric, segment_key, b, scale, score, n FROM src WHERE tier = {tier} ORDER BY 1, 2, 3, 4, 5
        ON CONFLICT (metric, segment_key, bucket_start, scale, score) DO UPDATE SET n = c.n + EXCLUDED.n
    )"""  # noqa: S608 - table names are module constants; values are bound parameters
        )
    if tables.dirty is not None:
        parts.append(
            f"""dirty AS (
        INSERT INTO {tables.dirty} AS x (metric, segment_key)
        SELECT DISTINCT metric, segment_key FROM src ORDER BY 1, 2
        ON CONFLICT (metric, segment_key) DO UPDATE SET version = x.version + 1, updated_at = now()
    )"""  # noqa: S608 - table names are module constants; values are bound parameters
        )
    return "WITH " + ",\n".join(parts) + "\nSELECT count(*) FROM src"


_APPLY_INCREMENTS = _increments_statement(LIVE, "unnest($1::scorer.counter_input[])")
_STAGE = "csat_counter_stage"
_CREATE_STAGE = f"""
CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGE} (
    tier smallint, metric text, segment_key text, bucket_s bigint, scale text, score smallint, n bigint
) ON COMMIT DELETE ROWS
"""
_APPLY_STAGED = _increments_statement(LIVE, _STAGE)
_STAGE_COLUMNS = inc.Increment._fields

#: How a micro-batch's counters reach PostgreSQL (``CSAT_COUNTER_WRITE``, docs/scores.md "Throughput").
COUNTER_WRITES = ("statement", "composite", "copy")


def _replay_statement(tables: CounterTables, seen_table: str) -> str:
    return f"""
WITH src AS MATERIALIZED (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::smallint[], $5::timestamptz[], $6::text[])
    AS s(rating_id, metric, scale, score, occurred_at, keys)
), seen AS (
    INSERT INTO {seen_table} (rating_id) SELECT rating_id FROM src
), inc AS MATERIALIZED (
    {_MINUTE_COUNTS.format(rows="src s")}
),
{_counter_ctes(tables, "inc", since=("$7::timestamptz", "$8::timestamptz"))}
SELECT count(*) FROM src
"""  # noqa: S608 - table names are module constants; values are bound parameters


async def commit_without_flush_wait(conn: AsyncConnection) -> None:
    """Let this batch transaction commit without waiting for its WAL to reach the disk.

    Why the effects stay exactly-once (docs/scores.md, "Throughput"): the ratings, counters, dirty marks and
    the consumer's offsets are written in this one transaction, so a PostgreSQL crash that loses its
    commit loses all of them together (the WAL is replayed in order: a lost transaction takes every
    later one with it), and the scorer re-reads those records from Kafka from the surviving offsets
    and counts them once. A crash of the scorer alone loses nothing (the server still flushes the WAL;
    tests/faults/test_scorer_kill.py). Nothing leaves the process on the strength of this commit: dead
    letters are published before it. The score-event evaluator publishes from counters it read, then
    saves its state with a normal, synchronous commit, which flushes the WAL up to its own record and
    so every batch it could have read: a saved state never rests on counts a crash can take back. A
    crash after its publication and before that commit republishes with the same event ids, as it
    already did; the counts it had published may then be ahead of the database until the lost
    records are re-read and counted again, to the same totals. The window a crash can undo is at
    most ``3 x wal_writer_delay`` (0.6 s by default) of batches.
    """
    await conn.exec_driver_sql("SET LOCAL synchronous_commit = off")


async def driver(conn: AsyncConnection) -> Any:
    """The asyncpg connection under SQLAlchemy, in the same transaction (the hot path skips the ORM layer)."""
    raw = await conn.get_raw_connection()
    return raw.driver_connection


_NO_ACCOUNT = (None, None, None)
_NO_CUTOFF = datetime(1, 1, 1, tzinfo=UTC)


async def apply_batch(
    conn: AsyncConnection,
    ratings: Sequence[Rating],
    keys: Sequence[str],
    *,
    minute_since: datetime = _NO_CUTOFF,
    hour_since: datetime = _NO_CUTOFF,
    counter_write: str = "statement",
) -> set[str]:
    """Store new ratings and count them once (``keys[i]``: rating i's segment keys); returns the new ids.

    ``ratings`` must have distinct ids: a rating repeated inside one statement would be counted twice.
    Minute and hour buckets before ``minute_since`` / ``hour_since`` (``windows.prune_cutoffs``) are not
    written: an import of last year's ratings would otherwise write minute rows only to prune them.

    ``counter_write``: ``statement`` counts in SQL, in the statement that stores the ratings (one round
    trip); ``composite`` stores the ratings, adds the stored ones' increments up in memory
    (``increments.aggregate``) and sends them as one composite array; ``copy`` sends the same rows by
    COPY into a temporary staging table and upserts from it. All three count exactly the ratings
    this statement inserted.
    """
    if not ratings:
        return set()
    if counter_write == "statement":
        return await _apply_in_statement(conn, ratings, keys, minute_since, hour_since)
    pg = await driver(conn)
    if pg.is_in_transaction():
        return await _apply_in_steps(pg, ratings, keys, minute_since, hour_since, counter_write)
    # SQLAlchemy begins lazily: a caller whose transaction sent nothing yet is not in one on the server,
    # and these steps (and the staging table's rows) must share one.
    async with pg.transaction():
        return await _apply_in_steps(pg, ratings, keys, minute_since, hour_since, counter_write)


async def _apply_in_steps(
    pg: Any,
    ratings: Sequence[Rating],
    keys: Sequence[str],
    minute_since: datetime,
    hour_since: datetime,
    counter_write: str,
) -> set[str]:
    rows = await pg.fetch(_INSERT_RATINGS, _rating_inputs(ratings, None))
    new: set[str] = {row[0] for row in rows}
    if not new:
        return new
    increments = inc.aggregate(ratings, keys, new, minute_since=minute_since, hour_since=hour_since)
    if counter_write == "copy":
        await pg.execute(_CREATE_STAGE)
        await pg.copy_records_to_table(_STAGE, records=increments, columns=_STAGE_COLUMNS)
        await pg.execute(_APPLY_STAGED)
    else:
        await pg.execute(_APPLY_INCREMENTS, increments)
    return new


def _rating_inputs(ratings: Sequence[Rating], keys: Sequence[str] | None) -> list[tuple[Any, ...]]:
    dumps = orjson.dumps
    return [
        (
            r.rating_id,
            r.metric,
            r.scale,
            r.score,
            r.sentiment,
            r.customer.id,
            dumps(r.segment).decode(),
            r.touchpoint,
            r.comment,
            *((a.id, a.tier, a.value) if (a := r.account) is not None else _NO_ACCOUNT),
            r.source,
            r.occurred_at.timestamp(),
            r.received_at.timestamp(),
            keys[i] if keys is not None else None,
        )
        for i, r in enumerate(ratings)
    ]


async def _apply_in_statement(
    conn: AsyncConnection,
    ratings: Sequence[Rating],
    keys: Sequence[str],
    minute_since: datetime,
    hour_since: datetime,
) -> set[str]:
    pg = await driver(conn)
    dumps = orjson.dumps
    # One composite per rating (migration 0007 explains why not an array per column). Metric and
    # sentiment are StrEnums, encoded as their text. Times as seconds since the epoch: a float8 is
    # a tenth of a timestamptz's encoding cost, and it round-trips to the microsecond (to_timestamp
    # rounds to the nearest microsecond; a double is within 0.25 us of it for any date before 2200;
    # tests/integration/test_scorer.py).
    rows = await pg.fetch(
        _APPLY_BATCH,
        [
            (
                r.rating_id,
                r.metric,
                r.scale,
                r.score,
                r.sentiment,
                r.customer.id,
                dumps(r.segment).decode(),
                r.touchpoint,
                r.comment,
                *((a.id, a.tier, a.value) if (a := r.account) is not None else _NO_ACCOUNT),
                r.source,
                r.occurred_at.timestamp(),
                r.received_at.timestamp(),
                k,
            )
            for r, k in zip(ratings, keys, strict=True)
        ],
        minute_since,
        hour_since,
    )
    return {row[0] for row in rows}


@dataclass(frozen=True, slots=True)
class StoredRating:
    rating_id: str
    metric: str
    scale: str
    score: int
    occurred_at: datetime
    segment: dict[str, str]


async def apply_stored(
    conn: AsyncConnection,
    rows: Sequence[StoredRating],
    keys: Sequence[str],
    *,
    tables: CounterTables,
    seen_table: str,
    minute_since: datetime,
    hour_since: datetime,
) -> int:
    """Count ratings already stored (a replay) into ``tables``, remembering which were counted."""
    if not rows:
        return 0
    pg = await driver(conn)
    count = await pg.fetchval(
        _replay_statement(tables, seen_table),
        [r.rating_id for r in rows],
        [r.metric for r in rows],
        [r.scale for r in rows],
        [r.score for r in rows],
        [r.occurred_at for r in rows],
        list(keys),
        minute_since,
        hour_since,
    )
    return int(count)


_HELD = """
    SELECT rating_id, revision, metric, scale, score, occurred_at, segment
    FROM scorer.ratings WHERE rating_id = ANY($1::text[]) ORDER BY rating_id FOR UPDATE
"""
_SET_REVISION = """
    UPDATE scorer.ratings r SET revision = v.revision
    FROM unnest($1::text[], $2::int[]) AS v(rating_id, revision) WHERE r.rating_id = v.rating_id
"""
_REPLACE_ROWS = """
    UPDATE scorer.ratings r SET metric = v.metric, scale = v.scale, score = v.score, sentiment = v.sentiment,
        segment = v.segment::jsonb, touchpoint = v.touchpoint, comment = v.comment,
        occurred_at = to_timestamp(v.occurred_s), received_at = to_timestamp(v.received_s),
        revision = v.revision
    FROM unnest($1::text[], $2::text[], $3::text[], $4::smallint[], $5::text[], $6::text[], $7::text[],
        $8::text[], $9::float8[], $10::float8[], $11::int[])
        AS v(rating_id, metric, scale, score, sentiment, segment, touchpoint, comment, occurred_s, received_s,
             revision)
    WHERE r.rating_id = v.rating_id
"""


def _segment(raw: Any) -> dict[str, str]:
    """A stored segment (jsonb: text unless the connection has a JSON codec)."""
    return dict(orjson.loads(raw) if isinstance(raw, str | bytes) else raw or {})


async def apply_revisions(
    conn: AsyncConnection,
    registry: Registry,
    ratings: Sequence[Rating],
    keys: Sequence[str],
    *,
    minute_since: datetime,
    hour_since: datetime,
    counter_write: str = "statement",
) -> set[str]:
    """Survey re-clicks (``revisions``): lock the held rows, replace older answers in the rows and the
    counters, store the never-seen ones; in the caller's transaction, so with the batch's offsets."""
    if not ratings:
        return set()
    pg = await driver(conn)
    rows = await pg.fetch(_HELD, [r.rating_id for r in ratings])
    segments = [
        orjson.loads(row["segment"]) if isinstance(row["segment"], str) else row["segment"] for row in rows
    ]
    old_keys = await registry.counted_all(conn, segments)
    held = {
        row["rating_id"]: rv.Held(
            row["rating_id"],
            row["revision"],
            row["metric"],
            row["scale"],
            row["score"],
            row["occurred_at"],
            c.keys,
        )
        for row, c in zip(rows, old_keys, strict=True)
    }
    todo = rv.plan(ratings, held)
    fresh = [ratings[i] for i in todo.insert]
    inserted = await apply_batch(
        conn,
        fresh,
        [keys[i] for i in todo.insert],
        minute_since=minute_since,
        hour_since=hour_since,
        counter_write=counter_write,
    )
    if inserted:
        mine = [r for r in fresh if r.rating_id in inserted]
        await pg.execute(_SET_REVISION, [r.rating_id for r in mine], [r.revision for r in mine])
    if not todo.replace:
        return inserted
    new = [ratings[i] for i, _ in todo.replace]
    moves = rv.replacement(
        new,
        [keys[i] for i, _ in todo.replace],
        [old for _, old in todo.replace],
        minute_since=minute_since,
        hour_since=hour_since,
    )
    if moves:
        await pg.execute(_APPLY_INCREMENTS, sorted(moves))
    await pg.execute(
        _REPLACE_ROWS,
        [r.rating_id for r in new],
        [str(r.metric) for r in new],
        [r.scale for r in new],
        [r.score for r in new],
        [str(r.sentiment) for r in new],
        [orjson.dumps(r.segment).decode() for r in new],
        [r.touchpoint for r in new],
        [r.comment for r in new],
        [r.occurred_at.timestamp() for r in new],
        [r.received_at.timestamp() for r in new],
        [r.revision for r in new],
    )
    return inserted | {r.rating_id for r in new}


class PgRatingCounter:
    """The consumer's port (``ports.RatingCounter``) on PostgreSQL: one statement per batch, plus the
    segment registry's reads and registrations in the same transaction."""

    def __init__(self, registry: Registry, *, counter_write: str = "statement") -> None:
        if counter_write not in COUNTER_WRITES:
            raise ValueError(f"counter_write must be one of {COUNTER_WRITES}")
        self.registry = registry
        self.counter_write = counter_write

    async def commit_without_flush_wait(self, tx: AsyncConnection) -> None:
        await commit_without_flush_wait(tx)

    async def counted_all(
        self, tx: AsyncConnection, segments: Sequence[Mapping[str, str]]
    ) -> list[CountedSegments]:
        return await self.registry.counted_all(tx, segments)

    async def apply_batch(
        self,
        tx: AsyncConnection,
        *,
        ratings: Sequence[Rating],
        keys: Sequence[str],
        minute_since: datetime,
        hour_since: datetime,
    ) -> set[str]:
        return await apply_batch(
            tx,
            ratings,
            keys,
            minute_since=minute_since,
            hour_since=hour_since,
            counter_write=self.counter_write,
        )

    async def apply_revisions(
        self,
        tx: AsyncConnection,
        *,
        ratings: Sequence[Rating],
        keys: Sequence[str],
        minute_since: datetime,
        hour_since: datetime,
    ) -> set[str]:
        return await apply_revisions(
            tx,
            self.registry,
            ratings,
            keys,
            minute_since=minute_since,
            hour_since=hour_since,
            counter_write=self.counter_write,
        )
