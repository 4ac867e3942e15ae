"""Retention on PostgreSQL: fine counter buckets deleted in short chunks by one replica at a time."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scorer.repository.tables import ADVISORY_CLASS, LOCK_PRUNE


async def try_lock_prune(conn: AsyncConnection) -> bool:
    """Whether this transaction may prune (another replica pruning holds the lock)."""
    got = await conn.execute(
        text("SELECT pg_try_advisory_xact_lock(:c, :k)"), {"c": ADVISORY_CLASS, "k": LOCK_PRUNE}
    )
    return bool(got.scalar_one())


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
