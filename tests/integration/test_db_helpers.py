"""shared.db on the real PostgreSQL: offset locking creates missing rows; idle-only pings still heal;
snapshot reads are read-only REPEATABLE READ and leave the pool's connections as they were."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from shared.db import OffsetStore, make_engine, snapshot_reads

pytestmark = pytest.mark.integration


async def test_offsets_are_locked_in_one_statement_once_they_exist(database_url: str) -> None:
    engine = make_engine(database_url)
    store = OffsetStore(group="g")
    try:
        async with engine.begin() as conn:
            assert await store.lock(conn, topic="t", partitions=[1, 0]) == {0: 0, 1: 0}
            await store.store(conn, topic="t", next_offsets={0: 5})
        async with engine.begin() as conn:
            # Two existing, one new partition: the new one is created, the others keep their offsets.
            assert await store.lock(conn, topic="t", partitions=[0, 1, 2]) == {0: 5, 1: 0, 2: 0}
        async with engine.begin() as conn:
            # A competing transaction cannot take a partition this one locked (fencing).
            assert await store.lock(conn, topic="t", partitions=[0]) == {0: 5}
            async with engine.connect() as other:
                await other.execute(text("SET lock_timeout = '200ms'"))
                with pytest.raises(Exception, match="lock"):
                    await store.lock(other, topic="t", partitions=[0])
                await other.rollback()
    finally:
        await engine.dispose()


async def test_a_batch_of_several_topics_locks_and_stores_its_offsets_in_one_statement_each(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    store = OffsetStore(group="g")
    mine = OffsetStore(group="other")
    try:
        async with engine.begin() as conn:
            await mine.store(conn, topic="a", next_offsets={0: 99})  # no row yet: nothing to move
            assert await mine.lock(conn, topic="a", partitions=[0]) == {0: 0}
            await mine.store(conn, topic="a", next_offsets={0: 99})
            assert await store.lock_many(conn, partitions={"b": [1, 0], "a": [0]}) == {
                ("a", 0): 0,
                ("b", 0): 0,
                ("b", 1): 0,
            }
            await store.store_many(conn, next_offsets={"a": {0: 7}, "b": {1: 3}})
        async with engine.begin() as conn:
            # a new partition joins; an offset never moves back; another group's rows are its own
            assert await store.lock_many(conn, partitions={"a": [0, 1], "b": [1]}) == {
                ("a", 0): 7,
                ("a", 1): 0,
                ("b", 1): 3,
            }
            await store.store_many(conn, next_offsets={"a": {0: 5, 1: 2}, "b": {1: 4}})
        async with engine.begin() as conn:
            assert await store.lock_many(conn, partitions={"a": [0, 1], "b": [0, 1]}) == {
                ("a", 0): 7,
                ("a", 1): 2,
                ("b", 0): 0,
                ("b", 1): 4,
            }
            assert await mine.lock(conn, topic="a", partitions=[0]) == {0: 99}
            assert await store.lock_many(conn, partitions={}) == {}
    finally:
        await engine.dispose()


async def test_a_batch_locks_and_moves_its_offsets_in_one_statement_and_sees_the_ones_before(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    store = OffsetStore(group="g")
    mine = OffsetStore(group="other")
    try:
        async with engine.begin() as conn:
            # rows created on first sight; the values returned are those before the move
            assert await store.lock_and_advance(conn, next_offsets={"b": {1: 3}, "a": {0: 7}}) == {
                ("a", 0): 0,
                ("b", 1): 0,
            }
            assert await mine.lock_and_advance(conn, next_offsets={"a": {0: 99}}) == {("a", 0): 0}
        async with engine.begin() as conn:
            # a replayed batch (all below the stored offset) moves nothing back; a new partition joins
            assert await store.lock_and_advance(conn, next_offsets={"a": {0: 5, 1: 2}, "b": {1: 4}}) == {
                ("a", 0): 7,
                ("a", 1): 0,
                ("b", 1): 3,
            }
        async with engine.begin() as conn:
            assert await store.lock_many(conn, partitions={"a": [0, 1], "b": [1]}) == {
                ("a", 0): 7,
                ("a", 1): 2,
                ("b", 1): 4,
            }
            assert await mine.lock(conn, topic="a", partitions=[0]) == {0: 99}
            assert await store.lock_and_advance(conn, next_offsets={}) == {}
        async with engine.begin() as conn:
            # the move is the transaction's: rolled back with the batch's effects
            await store.lock_and_advance(conn, next_offsets={"a": {0: 50}})
            await conn.rollback()
        async with engine.begin() as conn:
            assert await store.lock(conn, topic="a", partitions=[0]) == {0: 7}
            # and it fences a competing member like lock_many
            async with engine.connect() as other:
                await other.execute(text("SET lock_timeout = '200ms'"))
                with pytest.raises(Exception, match="lock"):
                    await store.lock_and_advance(other, next_offsets={"a": {0: 8}})
                await other.rollback()
    finally:
        await engine.dispose()


@pytest.mark.parametrize("ping_idle_s", [0.0, None])
async def test_a_connection_killed_while_idle_is_replaced_before_use(
    database_url: str, ping_idle_s: float | None
) -> None:
    engine = make_engine(database_url, pool_size=1, ping_idle_s=ping_idle_s)
    killer = make_engine(database_url)
    try:
        async with engine.connect() as conn:
            pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        async with killer.connect() as conn:
            assert (await conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})).scalar_one()
        # Idle longer than ping_idle_s (0): checked at checkout, replaced, and the caller never notices.
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one() != pid
    finally:
        await engine.dispose()
        await killer.dispose()


@pytest.mark.parametrize(("ping_idle_s", "pings"), [(60.0, 0), (0.0, 3)])
async def test_only_connections_idle_longer_than_the_threshold_are_pinged(
    database_url: str, monkeypatch: pytest.MonkeyPatch, ping_idle_s: float, pings: int
) -> None:
    engine = make_engine(database_url, pool_size=1, ping_idle_s=ping_idle_s)
    dialect = engine.sync_engine.dialect
    calls: list[Any] = []
    real = dialect.do_ping

    def counting(dbapi_connection: Any) -> bool:
        calls.append(dbapi_connection)
        return real(dbapi_connection)

    monkeypatch.setattr(dialect, "do_ping", counting)
    try:
        for _ in range(3):  # one connection used three times: within 60 s never checked, past 0 s always
            async with engine.connect() as conn:
                assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
        assert len(calls) == pings
    finally:
        await engine.dispose()


async def test_snapshot_reads_are_repeatable_read_only_and_leave_the_pool_read_committed(
    database_url: str,
) -> None:
    engine = make_engine(database_url, pool_size=1)
    settings = text(
        "SELECT pg_backend_pid(), current_setting('transaction_isolation'), "
        "current_setting('transaction_read_only')"
    )
    try:
        async with snapshot_reads(engine).connect() as conn:
            pid, level, read_only = (await conn.execute(settings)).one()
            assert (level, read_only) == ("repeatable read", "on")
        async with engine.connect() as conn:  # the same server connection, back from the pool
            again = (await conn.execute(settings)).one()
            assert tuple(again) == (pid, "read committed", "off")
    finally:
        await engine.dispose()
