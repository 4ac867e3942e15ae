"""Database helpers: engine factory and the consumer-offset store kept beside each service's results."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from shared.settings import asyncpg_url


def make_engine(
    url: str, *, pool_size: int = 5, application_name: str = "csat", ping_idle_s: float | None = None
) -> AsyncEngine:
    """An asyncpg engine that checks connections before use, so a restarted Postgres is survived.

    A check costs three round trips (SQLAlchemy pings inside BEGIN/ROLLBACK). With ``ping_idle_s``,
    only connections idle for longer are checked and the pool hands out the most recently used one
    first: a busy consumer then skips the check, and a connection that broke while in use fails its
    transaction, which the caller retries (SQLAlchemy then discards the pool's older connections).
    """
    engine = create_async_engine(
        asyncpg_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=ping_idle_s is None,
        pool_use_lifo=ping_idle_s is not None,
        pool_recycle=1800,
        connect_args={"server_settings": {"application_name": application_name}, "timeout": 10},
        # A failed statement's parameters (addresses, comments) never reach an exception or a log.
        hide_parameters=True,
    )
    if ping_idle_s is not None:
        _ping_when_idle(engine, ping_idle_s)
    return engine


_IDLE_SINCE = "csat_idle_since"


def _ping_when_idle(engine: AsyncEngine, idle_s: float) -> None:
    dialect = engine.sync_engine.dialect

    def fresh(_dbapi: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    def checkout(dbapi: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_IDLE_SINCE)
        if since is not None and time.monotonic() - since < idle_s:
            return
        try:
            dialect.do_ping(dbapi)
        except Exception as exc:  # the pool discards this connection and hands out a new one
            raise DisconnectionError("connection failed its check") from exc

    event.listen(engine.sync_engine, "connect", fresh)
    event.listen(engine.sync_engine, "checkin", fresh)
    event.listen(engine.sync_engine, "checkout", checkout)


def snapshot_reads(engine: AsyncEngine) -> AsyncEngine:
    """``engine``'s pool, each transaction READ ONLY and REPEATABLE READ: every statement of a read
    sees the snapshot of its first, so an answer assembled from several statements (rows, then their
    counts) never mixes the states before and after a consumer's batch that committed in between. A
    read-only transaction at this level never fails to serialise; the pool resets the level on return,
    so the engine's other connections keep READ COMMITTED."""
    return engine.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


_CREATE_OFFSETS = text(
    "INSERT INTO ops.consumer_offsets (consumer_group, topic, partition, next_offset) "
    "SELECT :g, t, p, 0 FROM unnest(CAST(:t AS text[]), CAST(:p AS int[])) AS k(t, p) "
    "ON CONFLICT DO NOTHING"
)
# The rows locked in key order (as ``_lock_rows``), then moved up in the same statement; the outer
# SELECT gives the locked values, i.e. those from before the move.
_LOCK_AND_ADVANCE = text(
    "WITH k AS (SELECT * FROM unnest(CAST(:t AS text[]), CAST(:p AS int[]), CAST(:o AS bigint[])) "
    " AS k(topic, partition, next_offset)), "
    "old AS MATERIALIZED (SELECT o.topic, o.partition, o.next_offset FROM ops.consumer_offsets o "
    " JOIN k ON o.topic = k.topic AND o.partition = k.partition "
    " WHERE o.consumer_group = :g ORDER BY o.topic, o.partition FOR UPDATE OF o), "
    "moved AS (UPDATE ops.consumer_offsets AS o SET next_offset = k.next_offset, updated_at = now() "
    " FROM old JOIN k ON old.topic = k.topic AND old.partition = k.partition "
    " WHERE o.consumer_group = :g AND o.topic = old.topic AND o.partition = old.partition "
    " AND k.next_offset > old.next_offset RETURNING o.topic) "
    "SELECT topic, partition, next_offset FROM old"
)


class OffsetStore:
    """Offsets of one consumer group stored in ``ops.consumer_offsets``, written in the caller's transaction.

    Storing the next offset together with the results makes the results exactly-once: a crash
    before commit loses both, a crash after keeps both.
    """

    def __init__(self, *, group: str) -> None:
        self.group = group

    async def load(self, conn: AsyncConnection, *, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        rows = await conn.execute(
            text(
                "SELECT partition, next_offset FROM ops.consumer_offsets "
                "WHERE consumer_group = :g AND topic = :t AND partition = ANY(:p)"
            ),
            {"g": self.group, "t": topic, "p": list(partitions)},
        )
        return {int(r.partition): int(r.next_offset) for r in rows}

    async def lock(self, conn: AsyncConnection, *, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        """``lock_many`` for one topic."""
        locked = await self.lock_many(conn, partitions={topic: partitions})
        return {p: off for (_, p), off in locked.items()}

    async def lock_many(
        self, conn: AsyncConnection, *, partitions: Mapping[str, Iterable[int]]
    ) -> dict[tuple[str, int], int]:
        """Read and row-lock the stored offsets of every (topic, partition) of a batch in one statement,
        fencing a consumer that lost a partition meanwhile.

        The rows exist after a partition's first batch, so the lock is tried first and the missing
        rows are created only when some are absent (one round trip per batch, whatever its topics).
        """
        keys = sorted({(t, p) for t, parts in partitions.items() for p in parts})
        if not keys:
            return {}
        locked = await self._lock_rows(conn, keys)
        if len(locked) == len(keys):
            return locked
        await conn.execute(
            text(
                "INSERT INTO ops.consumer_offsets (consumer_group, topic, partition, next_offset) "
                "SELECT :g, t, p, 0 FROM unnest(CAST(:t AS text[]), CAST(:p AS int[])) AS k(t, p) "
                "ON CONFLICT DO NOTHING"
            ),
            {"g": self.group, "t": [t for t, _ in keys], "p": [p for _, p in keys]},
        )
        return await self._lock_rows(conn, keys)

    async def _lock_rows(
        self, conn: AsyncConnection, keys: list[tuple[str, int]]
    ) -> dict[tuple[str, int], int]:
        rows = await conn.execute(
            text(
                "SELECT o.topic, o.partition, o.next_offset FROM ops.consumer_offsets o "
                "JOIN unnest(CAST(:t AS text[]), CAST(:p AS int[])) AS k(topic, partition) "
                "ON o.topic = k.topic AND o.partition = k.partition "
                "WHERE o.consumer_group = :g ORDER BY o.topic, o.partition FOR UPDATE OF o"
            ),
            {"g": self.group, "t": [t for t, _ in keys], "p": [p for _, p in keys]},
        )
        return {(str(r.topic), int(r.partition)): int(r.next_offset) for r in rows}

    async def lock_and_advance(
        self, conn: AsyncConnection, *, next_offsets: Mapping[str, Mapping[int, int]]
    ) -> dict[tuple[str, int], int]:
        """``lock_many`` and ``store_many`` of a batch in one statement: row-locks each (topic, partition),
        moves its stored next offset up to the one given (never back) and returns the offsets stored
        *before*, which the caller sorts the batch against. Both in the caller's transaction, so the
        move commits with the batch's effects or not at all, as when it was stored last (one round trip
        fewer per batch for every consumer)."""
        rows = sorted((t, p, off) for t, offs in next_offsets.items() for p, off in offs.items())
        if not rows:
            return {}
        params = {
            "g": self.group,
            "t": [r[0] for r in rows],
            "p": [r[1] for r in rows],
            "o": [r[2] for r in rows],
        }
        locked = await self._lock_and_advance(conn, params)
        if len(locked) == len(rows):
            return locked
        await conn.execute(_CREATE_OFFSETS, params)
        # The rows found the first time were moved already: their values from before are the first ones.
        return {**await self._lock_and_advance(conn, params), **locked}

    async def _lock_and_advance(
        self, conn: AsyncConnection, params: dict[str, Any]
    ) -> dict[tuple[str, int], int]:
        rows = await conn.execute(_LOCK_AND_ADVANCE, params)
        return {(str(r.topic), int(r.partition)): int(r.next_offset) for r in rows}

    async def store(self, conn: AsyncConnection, *, topic: str, next_offsets: Mapping[int, int]) -> None:
        """``store_many`` for one topic."""
        await self.store_many(conn, next_offsets={topic: next_offsets})

    async def store_many(
        self, conn: AsyncConnection, *, next_offsets: Mapping[str, Mapping[int, int]]
    ) -> None:
        """Every topic's next offsets of a batch in one statement (never moving one back)."""
        rows = [(t, p, off) for t, offs in next_offsets.items() for p, off in offs.items()]
        if not rows:
            return
        await conn.execute(
            text(
                "UPDATE ops.consumer_offsets AS o SET next_offset = v.next_offset, updated_at = now() "
                "FROM unnest(CAST(:t AS text[]), CAST(:p AS int[]), CAST(:o AS bigint[])) "
                "AS v(topic, partition, next_offset) "
                "WHERE o.consumer_group = :g AND o.topic = v.topic AND o.partition = v.partition "
                "AND v.next_offset > o.next_offset"
            ),
            {
                "g": self.group,
                "t": [r[0] for r in rows],
                "p": [r[1] for r in rows],
                "o": [r[2] for r in rows],
            },
        )

    async def reset(self, conn: AsyncConnection, *, topic: str, partition: int, next_offset: int = 0) -> None:
        """Move a stored offset back (the topic was recreated, e.g. a fresh in-memory dev broker)."""
        await conn.execute(
            text(
                "UPDATE ops.consumer_offsets SET next_offset = :o, updated_at = now() "
                "WHERE consumer_group = :g AND topic = :t AND partition = :p"
            ),
            {"g": self.group, "t": topic, "p": partition, "o": next_offset},
        )
