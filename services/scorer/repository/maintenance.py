"""Retention on PostgreSQL: fine counter buckets deleted in short chunks by one replica at a time."""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.scorer import metrics as sm
from services.scorer.repository.tables import ADVISORY_CLASS, LOCK_PRUNE, TIER_TABLES
from services.scorer.settings import ScorerSettings
from services.scorer.windows import prune_cutoffs

log = structlog.get_logger(__name__)


async def prune(
    engine: AsyncEngine, *, settings: ScorerSettings, now: datetime, chunk: int = 20_000
) -> dict[str, int]:
    """Delete minute/hour buckets past their retention, with a day of slack so no query ever misses one.

    One replica prunes at a time (an advisory lock); each chunk is its own short transaction.
    """
    deleted: dict[str, int] = {}
    for name, cutoff in prune_cutoffs(settings.tiers, now=now).items():
        table = TIER_TABLES[name]
        total = 0
        while True:
            async with engine.begin() as conn:
                if not await _try_lock_prune(conn):
                    return deleted
                n = await prune_before(conn, table=table, cutoff=cutoff, limit=chunk)
            total += n
            if n < chunk:
                break
        deleted[name] = total
        if total:
            sm.PRUNED_BUCKETS.labels(name).inc(total)
            log.info("pruned_buckets", tier=name, deleted=total, before=cutoff.isoformat())
    return deleted


async def _try_lock_prune(conn: AsyncConnection) -> bool:
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
