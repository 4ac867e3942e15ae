"""SQL for the scorer. The hot path is one statement per micro-batch; queries read the counter tiers.

The micro-batch statement inserts the new ratings (dedupe on ``rating_id``), and from exactly the
rows inserted adds the increments to the minute, hour and day counters and marks the touched
segments dirty for the score-event evaluator, all in the consumer's transaction (with its offsets).
Rows are inserted in key order so concurrent scorers lock counter rows in one order (no deadlock).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scorer.domain import OTHER
from services.scorer.segments import (
    KEY_SEPARATOR,
    RegistryView,
    counted_keys,
    plan_dimensions,
    plan_registration,
)
from services.scorer.windows import EPOCH, Span
from shared.scales import Metric, Sentiment

# pg_advisory_xact_lock(ADVISORY_CLASS, n): one namespace for the scorer's advisory locks.
ADVISORY_CLASS = 7341
LOCK_DIMENSIONS = 1
LOCK_PRUNE = 2
LOCK_REPLAY = 3

Counts = dict[tuple[str, int], int]


@dataclass(frozen=True, slots=True)
class CounterTables:
    """Where increments go: the live tiers, or a replay's shadow copies."""

    minute: str
    hour: str
    day: str
    dirty: str | None

    def by_tier(self) -> dict[str, str]:
        return {"minute": self.minute, "hour": self.hour, "day": self.day}


LIVE = CounterTables(
    minute="scorer.score_counts_minute",
    hour="scorer.score_counts",
    day="scorer.score_counts_day",
    dirty="scorer.dirty_segments",
)
SHADOW = CounterTables(
    minute="scorer.replay_counts_minute",
    hour="scorer.replay_counts_hour",
    day="scorer.replay_counts_day",
    dirty=None,
)
TIER_TABLES = LIVE.by_tier()
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
    tests/e2e/test_scorer_kill.py). Nothing leaves the process on the strength of this commit: dead
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


class _Customer(Protocol):
    @property
    def id(self) -> str: ...


class _Account(Protocol):
    @property
    def id(self) -> str | None: ...
    @property
    def tier(self) -> str | None: ...
    @property
    def value(self) -> float | None: ...


class Rating(Protocol):
    """What a batch stores of a rating: ``shared.events.RatingSubmitted`` or the lean ``RatingRow``."""

    @property
    def rating_id(self) -> str: ...
    @property
    def metric(self) -> Metric: ...
    @property
    def scale(self) -> str: ...
    @property
    def score(self) -> int: ...
    @property
    def sentiment(self) -> Sentiment: ...
    @property
    def customer(self) -> _Customer: ...
    @property
    def segment(self) -> dict[str, str]: ...
    @property
    def touchpoint(self) -> str | None: ...
    @property
    def comment(self) -> str | None: ...
    @property
    def account(self) -> _Account | None: ...
    @property
    def source(self) -> str | None: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def received_at(self) -> datetime: ...


_NO_ACCOUNT = (None, None, None)
_NO_CUTOFF = datetime(1, 1, 1, tzinfo=UTC)


async def apply_batch(
    conn: AsyncConnection,
    ratings: Sequence[Rating],
    keys: Sequence[str],
    *,
    minute_since: datetime = _NO_CUTOFF,
    hour_since: datetime = _NO_CUTOFF,
) -> set[str]:
    """Store new ratings and count them once (``keys[i]``: rating i's segment keys); returns the new ids.

    ``ratings`` must have distinct ids: a rating repeated inside one statement would be counted twice.
    Minute and hour buckets before ``minute_since`` / ``hour_since`` (``windows.prune_cutoffs``) are not
    written: an import of last year's ratings would otherwise write minute rows only to prune them.
    """
    if not ratings:
        return set()
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


def join_keys(keys: Iterable[str]) -> str:
    return KEY_SEPARATOR.join(keys)


# ---- the segment registry -------------------------------------------------------------------------
class Registry:
    """Reads and extends ``scorer.segment_dimensions`` / ``segment_values`` with a local cache.

    What a transaction that wrote to the registry learnt is held back until a later call proves it
    committed (a rolled-back registration must not be remembered).
    """

    def __init__(
        self,
        *,
        max_values: int,
        max_dimensions: int,
        combinations: Sequence[tuple[str, ...]] = (),
        max_cached_keys: int = 50_000,
    ) -> None:
        self.max_values = max_values
        self.max_dimensions = max_dimensions
        self.combinations = list(combinations)
        self.max_cached_keys = max_cached_keys
        self._keys: dict[tuple[tuple[str, str], ...], tuple[str, list[str], int]] = {}
        self.view = RegistryView()
        self._pending_dims: set[str] = set()
        self._pending_values: set[tuple[str, str]] = set()
        self._pending_dropped: set[str] = set()

    async def _settle_pending(self, conn: AsyncConnection) -> None:
        self._pending_dropped.clear()
        if self._pending_dims:
            rows = await conn.execute(
                text("SELECT dimension FROM scorer.segment_dimensions WHERE dimension = ANY(:d)"),
                {"d": sorted(self._pending_dims)},
            )
            self.view.learn(dimensions=[r.dimension for r in rows])
            self._pending_dims.clear()
        if self._pending_values:
            found = await _registered_values(conn, self._pending_values)
            self.view.learn(registered=found)
            self._pending_values.clear()

    async def resolve(self, conn: AsyncConnection, segments: Iterable[Mapping[str, str]]) -> None:
        """Make every (dimension, value) in ``segments`` known to the view, registering within the caps."""
        if self._pending_dims or self._pending_values or self._pending_dropped:
            await self._settle_pending(conn)
        keys = self._keys
        pairs = self.view.unknown(s for s in segments if tuple(s.items()) not in keys)
        if not pairs:
            return
        dims = {
            d for d, _ in pairs if d not in self.view.dimensions and d not in self.view.dropped_dimensions
        }
        if dims:
            await self._resolve_dimensions(conn, dims)
        wanted = {(d, v) for d, v in pairs if d in self.view.dimensions or d in self._pending_dims}
        wanted = {(d, v) for d, v in wanted if v != OTHER}
        if wanted:
            await self._resolve_values(conn, wanted)

    async def _resolve_dimensions(self, conn: AsyncConnection, dims: set[str]) -> None:
        known = await _known_dimensions(conn, dims)
        self.view.learn(dimensions=known)
        new = dims - known
        if not new:
            return
        await conn.execute(
            text("SELECT pg_advisory_xact_lock(:c, :k)"), {"c": ADVISORY_CLASS, "k": LOCK_DIMENSIONS}
        )
        known = await _known_dimensions(conn, new)
        self.view.learn(dimensions=known)
        new -= known
        if not new:
            return
        total = (await conn.execute(text("SELECT count(*) FROM scorer.segment_dimensions"))).scalar_one()
        register, drop = plan_dimensions(new, registered=int(total), cap=self.max_dimensions)
        if register:
            await conn.execute(
                text(
                    "INSERT INTO scorer.segment_dimensions (dimension) "
                    "SELECT unnest(CAST(:d AS text[])) ORDER BY 1"
                ),
                {"d": register},
            )
            self._pending_dims.update(register)
            # Dropped because of registrations that may yet roll back: decided again next time.
            self._pending_dropped.update(drop)
        else:
            # The committed registry is full: these stay dropped while the cap holds.
            self.view.learn(dropped=drop)

    async def _resolve_values(self, conn: AsyncConnection, pairs: set[tuple[str, str]]) -> None:
        found = await _registered_values(conn, pairs)
        self.view.learn(registered=found)
        missing = pairs - found
        if not missing:
            return
        dims = sorted({d for d, _ in missing})
        rows = await conn.execute(
            text(
                "SELECT dimension, n_values FROM scorer.segment_dimensions WHERE dimension = ANY(:d) "
                "ORDER BY dimension FOR UPDATE"
            ),
            {"d": dims},
        )
        counts = {r.dimension: int(r.n_values) for r in rows}
        again = await _registered_values(conn, missing)
        self.view.learn(registered=again)
        missing -= again
        if not missing:
            return
        wanted: dict[str, set[str]] = {}
        for d, v in missing:
            wanted.setdefault(d, set()).add(v)
        register, fold = plan_registration(wanted, registered_counts=counts, cap=self.max_values)
        new_pairs = [(d, v) for d, values in register.items() for v in values]
        if new_pairs:
            await conn.execute(
                text(
                    "INSERT INTO scorer.segment_values (dimension, value) "
                    "SELECT * FROM unnest(CAST(:d AS text[]), CAST(:v AS text[])) ORDER BY 1, 2"
                ),
                {"d": [d for d, _ in new_pairs], "v": [v for _, v in new_pairs]},
            )
            await conn.execute(
                text(
                    "UPDATE scorer.segment_dimensions AS s SET n_values = s.n_values + u.n "
                    "FROM unnest(CAST(:d AS text[]), CAST(:n AS int[])) AS u(dimension, n) "
                    "WHERE s.dimension = u.dimension"
                ),
                {"d": list(register), "n": [len(v) for v in register.values()]},
            )
            self._pending_values.update(new_pairs)
        # Folds in a dimension this transaction did not write to rest on committed data: cache them.
        cacheable = [(d, v) for d, values in fold.items() if d not in register for v in values]
        if cacheable:
            self.view.learn(folded=cacheable)

    def fold(self, attributes: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
        """Attributes as counted, after :meth:`resolve` (pending registrations count as registered)."""
        return self._fold(attributes)[:2]

    def _fold(self, attributes: Mapping[str, str]) -> tuple[dict[str, str], list[str], bool]:
        """Also says whether the result rests on committed registry facts only (safe to cache)."""
        out: dict[str, str] = {}
        folded: list[str] = []
        settled = True
        view = self.view
        for dim, value in attributes.items():
            if dim in view.dropped_dimensions:
                continue
            if dim in self._pending_dropped:
                settled = False
                continue
            if dim not in view.dimensions:
                settled = False
                if dim not in self._pending_dims:
                    continue
            if value == OTHER or value in view.values.get(dim, ()):
                out[dim] = value
            elif (dim, value) in self._pending_values:
                out[dim] = value
                settled = False
            else:
                out[dim] = OTHER
                folded.append(dim)
                settled = settled and value in view.folded.get(dim, ())
        return out, folded, settled

    async def counted_all(
        self, conn: AsyncConnection, segments: Sequence[Mapping[str, str]]
    ) -> list[tuple[str, list[str], int]]:
        """:meth:`counted` for each of ``segments``, resolving first only those not memoised yet."""
        keys = self._keys
        out = [keys.get(tuple(s.items())) for s in segments]
        missing = [s for s, hit in zip(segments, out, strict=True) if hit is None]
        if missing or self._pending_dims or self._pending_values or self._pending_dropped:
            await self.resolve(conn, (s for s in missing if s))
        return [hit if hit is not None else self.counted(s) for s, hit in zip(segments, out, strict=True)]

    def counted(self, attributes: Mapping[str, str]) -> tuple[str, list[str], int]:
        """A rating's segment keys joined for SQL, the dimensions folded, and the attributes dropped.

        Memoised per distinct attribute set: most ratings repeat a few thousand combinations, and the
        answer for settled registry facts never changes (registrations only grow).
        """
        cache_key = tuple(attributes.items())
        hit = self._keys.get(cache_key)
        if hit is not None:
            return hit
        folded, folded_dims, settled = self._fold(attributes)
        result = (
            join_keys(counted_keys(folded, self.combinations)),
            folded_dims,
            len(attributes) - len(folded),
        )
        if settled:
            if len(self._keys) >= self.max_cached_keys:
                self._keys.clear()
            self._keys[cache_key] = result
        return result


async def _known_dimensions(conn: AsyncConnection, dims: Iterable[str]) -> set[str]:
    rows = await conn.execute(
        text("SELECT dimension FROM scorer.segment_dimensions WHERE dimension = ANY(:d)"), {"d": sorted(dims)}
    )
    return {r.dimension for r in rows}


async def _registered_values(conn: AsyncConnection, pairs: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    items = sorted(pairs)
    if not items:
        return set()
    rows = await conn.execute(
        text(
            "SELECT v.dimension, v.value FROM scorer.segment_values v "
            "JOIN unnest(CAST(:d AS text[]), CAST(:v AS text[])) AS p(dimension, value) "
            "ON v.dimension = p.dimension AND v.value = p.value"
        ),
        {"d": [d for d, _ in items], "v": [v for _, v in items]},
    )
    return {(r.dimension, r.value) for r in rows}


async def dimension_registered(conn: AsyncConnection, *, dimension: str) -> bool:
    row = (
        await conn.execute(
            text("SELECT 1 FROM scorer.segment_dimensions WHERE dimension = :d"), {"d": dimension}
        )
    ).first()
    return row is not None


async def is_registered(conn: AsyncConnection, *, dimension: str, value: str) -> bool:
    row = (
        await conn.execute(
            text("SELECT 1 FROM scorer.segment_values WHERE dimension = :d AND value = :v"),
            {"d": dimension, "v": value},
        )
    ).first()
    return row is not None


# ---- reading counters -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class KeyFilter:
    """Which segment keys to read: a list, or every key of the given dimensions (a breakdown)."""

    keys: Sequence[str] = ()
    dimensions: Sequence[str] = ()

    def sql(self) -> tuple[str, dict[str, Any]]:
        if self.dimensions:
            like = "|".join(f"{_like_escape(d)}=%" for d in sorted(self.dimensions))
            return (
                "c.segment_key LIKE :like AND "
                "length(c.segment_key) - length(replace(c.segment_key, '|', '')) = :pipes",
                {"like": like, "pipes": len(self.dimensions) - 1},
            )
        return "c.segment_key = ANY(:keys)", {"keys": list(self.keys)}


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def load_counts(
    conn: AsyncConnection,
    *,
    metric: str,
    where: KeyFilter,
    spans: Sequence[tuple[str, Span]],
) -> dict[tuple[str, str], Counts]:
    """Sum counters of every (label, span) for the selected keys: ``{(label, key): {(scale, score): n}}``."""
    by_tier: dict[str, list[tuple[str, Span]]] = {}
    for label, span in spans:
        by_tier.setdefault(span.tier, []).append((label, span))
    if not by_tier or (not where.keys and not where.dimensions):
        return {}
    condition, params = where.sql()
    selects = []
    for i, (tier, items) in enumerate(sorted(by_tier.items())):
        table = TIER_TABLES[tier]
        selects.append(
            f"SELECT r.label, c.segment_key, c.scale, c.score, sum(c.n)::bigint AS n FROM {table} c "  # noqa: S608 - table names are module constants; values are bound parameters
            f"JOIN unnest(CAST(:l{i} AS text[]), CAST(:s{i} AS timestamptz[]), CAST(:e{i} AS timestamptz[])) "
            f"AS r(label, s, e) ON c.bucket_start >= r.s AND c.bucket_start < r.e "
            f"WHERE c.metric = :metric AND {condition} GROUP BY 1, 2, 3, 4"
        )
        params[f"l{i}"] = [label for label, _ in items]
        params[f"s{i}"] = [span.start for _, span in items]
        params[f"e{i}"] = [span.end for _, span in items]
    params["metric"] = metric
    rows = await conn.execute(text(" UNION ALL ".join(selects)), params)
    out: dict[tuple[str, str], Counts] = {}
    for r in rows:
        counts = out.setdefault((r.label, r.segment_key), {})
        key = (r.scale, int(r.score))
        counts[key] = counts.get(key, 0) + int(r.n)
    return out


async def load_rating_counts(
    conn: AsyncConnection,
    *,
    metric: str,
    attributes: Mapping[str, str],
    ranges: Sequence[tuple[str, datetime, datetime]],
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
            "l": [label for label, _, _ in ranges],
            "s": [s for _, s, _ in ranges],
            "e": [e for _, _, e in ranges],
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


# ---- score-event state -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DirtySegment:
    metric: str
    segment_key: str
    version: int


async def dirty_segments(
    conn: AsyncConnection, *, limit: int, after: tuple[str, str] | None
) -> list[DirtySegment]:
    rows = await conn.execute(
        text(
            "SELECT metric, segment_key, version FROM scorer.dirty_segments "
            "WHERE (metric, segment_key) > (:am, :ak) ORDER BY metric, segment_key LIMIT :n"
        ),
        {"am": after[0] if after else "", "ak": after[1] if after else "", "n": limit},
    )
    return [DirtySegment(r.metric, r.segment_key, int(r.version)) for r in rows]


async def clear_dirty(conn: AsyncConnection, segments: Sequence[DirtySegment]) -> None:
    """Forget segments evaluated, unless a batch touched them again meanwhile (their version moved)."""
    if not segments:
        return
    await conn.execute(
        text(
            "DELETE FROM scorer.dirty_segments d USING unnest(CAST(:m AS text[]), CAST(:k AS text[]), "
            "CAST(:v AS bigint[])) AS u(metric, segment_key, version) "
            "WHERE d.metric = u.metric AND d.segment_key = u.segment_key AND d.version = u.version"
        ),
        {
            "m": [s.metric for s in segments],
            "k": [s.segment_key for s in segments],
            "v": [s.version for s in segments],
        },
    )


STATE_COLUMNS = ("score", "responses", "insufficient", "seq", "below", "dropping", "alerts", "published")


async def load_states(
    conn: AsyncConnection, *, metric: str, keys: Sequence[str]
) -> dict[tuple[str, str], dict[str, Any]]:
    rows = await conn.execute(
        text(
            "SELECT segment_key, window_name, " + ", ".join(STATE_COLUMNS) + " FROM scorer.score_state "  # noqa: S608 - column names are module constants; values are bound parameters
            "WHERE metric = :m AND segment_key = ANY(:k)"
        ),
        {"m": metric, "k": list(keys)},
    )
    return {(r.segment_key, r.window_name): {c: getattr(r, c) for c in STATE_COLUMNS} for r in rows}


async def save_states(
    conn: AsyncConnection, *, metric: str, states: Mapping[tuple[str, str], Mapping[str, Any]]
) -> None:
    if not states:
        return
    items = sorted(states.items())
    cols = {c: [s[c] for _, s in items] for c in STATE_COLUMNS}
    await conn.execute(
        text(
            "INSERT INTO scorer.score_state AS t (metric, segment_key, window_name, score, responses, "
            "insufficient, seq, below, dropping, alerts, published, evaluated_at) "
            "SELECT :m, * , now() FROM unnest(CAST(:k AS text[]), CAST(:w AS text[]), "
            "CAST(:score AS float8[]), CAST(:responses AS bigint[]), CAST(:insufficient AS bool[]), "
            "CAST(:seq AS bigint[]), CAST(:below AS bool[]), CAST(:dropping AS bool[]), "
            "CAST(:alerts AS bigint[]), CAST(:published AS bool[])) "
            "ON CONFLICT (metric, segment_key, window_name) DO UPDATE SET score = EXCLUDED.score, "
            "responses = EXCLUDED.responses, insufficient = EXCLUDED.insufficient, seq = EXCLUDED.seq, "
            "below = EXCLUDED.below, dropping = EXCLUDED.dropping, alerts = EXCLUDED.alerts, "
            "published = EXCLUDED.published, evaluated_at = now() "
            "WHERE t.seq <= EXCLUDED.seq"
        ),
        {"m": metric, "k": [k for (k, _), _ in items], "w": [w for (_, w), _ in items], **cols},
    )


# ---- customers --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class HistoryRow:
    rating_id: str
    metric: str
    scale: str
    score: int
    sentiment: str
    touchpoint: str | None
    comment: str | None
    segment: dict[str, str]
    occurred_at: datetime


async def customer_ratings(
    conn: AsyncConnection,
    *,
    customer_id: str,
    metric: str | None,
    before: tuple[datetime, str] | None,
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
        params.update(bt=before[0], bid=before[1])
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


async def customer_recent(
    conn: AsyncConnection, *, customer_id: str, metric: str | None, limit: int
) -> list[HistoryRow]:
    return await customer_ratings(conn, customer_id=customer_id, metric=metric, before=None, limit=limit)


@dataclass(frozen=True, slots=True)
class ScoreGroup:
    metric: str
    scale: str
    score: int
    n: int
    latest_rating_id: str
    latest_at: datetime


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


# ---- pruning -----------------------------------------------------------------------------------------
async def prune_before(conn: AsyncConnection, *, table: str, cutoff: datetime, limit: int) -> int:
    """Delete up to ``limit`` buckets older than ``cutoff`` (short transactions: no long locks)."""
    result = await conn.execute(
        text(
            f"DELETE FROM {table} WHERE ctid = ANY(ARRAY("  # noqa: S608 - table names are module constants; values are bound parameters
            f"SELECT ctid FROM {table} WHERE bucket_start < :cutoff LIMIT :n))"
        ),
        {"cutoff": cutoff, "n": limit},
    )
    return int(result.rowcount or 0)
