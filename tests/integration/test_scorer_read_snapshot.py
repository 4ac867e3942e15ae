"""A scorer read session on the real PostgreSQL sees one snapshot: a request that assembles its answer
from several statements (GET /v1/scores reads the score's counts, then its response rate) never mixes
the state before a scorer batch with the state after it, and the session cannot write."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from services.scorer.repository.reads import PgReader, PgReads
from services.scorer.responses import ResponseCounts
from shared.db import make_engine

pytestmark = pytest.mark.integration

HOUR = datetime(2026, 11, 30, 9, tzinfo=UTC)
ADD = (
    "INSERT INTO scorer.response_counts (metric, segment_key, bucket_start, invited, answered, commented) "
    "VALUES ('csat', 'store=paris-1', :at, :invited, :answered, 0)"
)


async def paris(reader: PgReader) -> ResponseCounts:
    return await reader.response_counts(
        metric="csat", key="store=paris-1", attributes={}, start=HOUR, end=HOUR + timedelta(hours=2)
    )


async def test_every_statement_of_a_session_reads_the_snapshot_of_its_first(database_url: str) -> None:
    engine = make_engine(database_url)
    reads = PgReads(engine)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(ADD), {"at": HOUR, "invited": 10, "answered": 2})
        async with reads.session() as reader:
            assert await paris(reader) == ResponseCounts(10, 2, 0)
            # A scorer batch commits between two statements of the same request...
            async with engine.begin() as conn:
                await conn.execute(text(ADD), {"at": HOUR + timedelta(hours=1), "invited": 5, "answered": 5})
            # ...and the request's later statements still read the state its first one saw.
            assert await paris(reader) == ResponseCounts(10, 2, 0)
            assert await reader.response_counts_by_key(
                metric="csat", keys=["store=paris-1"], start=HOUR, end=HOUR + timedelta(hours=2)
            ) == {"store=paris-1": ResponseCounts(10, 2, 0)}
        async with reads.session() as reader:  # the next request sees the batch
            assert await paris(reader) == ResponseCounts(15, 7, 0)
    finally:
        await engine.dispose()


async def test_a_read_session_cannot_write(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        async with PgReads(engine).session() as reader:
            with pytest.raises(DBAPIError, match="read-only transaction"):
                await reader._conn.execute(text(ADD), {"at": HOUR, "invited": 1, "answered": 0})
        # The engine itself (the consumer's writes) is untouched by the read sessions' options.
        async with engine.begin() as conn:
            await conn.execute(text(ADD), {"at": HOUR, "invited": 1, "answered": 0})
            level = (await conn.execute(text("SHOW transaction_isolation"))).scalar_one()
            assert level == "read committed"
    finally:
        await engine.dispose()
