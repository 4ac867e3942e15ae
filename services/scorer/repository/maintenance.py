"""Retention on PostgreSQL: fine counter buckets deleted in short chunks by one replica at a time."""

from __future__ import annotations

from datetime import datetime, timedelta

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
    total = 0
    while True:
        async with engine.begin() as conn:
            if not await _try_lock_prune(conn):
                return deleted
            n = await prune_invitations(
                conn,
                invited_before=now - timedelta(days=settings.hour_retention_days),
                unmatched_before=now - UNMATCHED_ANSWERS_KEPT,
                limit=chunk,
            )
        total += n
        if n < chunk:
            break
    deleted["invitations"] = total
    if total:
        log.info("pruned_invitations", deleted=total)
    return deleted


#: An answer whose invitation never came (a rating naming a survey id that is no invitation: an email
#: link sent by hand) is kept this long in case the invitation is only late: longer than any answer window.
UNMATCHED_ANSWERS_KEPT = timedelta(days=120)


async def prune_invitations(
    conn: AsyncConnection, *, invited_before: datetime, unmatched_before: datetime, limit: int
) -> int:
    """Invitation rows the response counters no longer need: sent before the hour tier's retention (their
    counts stay in ``scorer.response_counts``), or answers whose invitation never came."""
    result = await conn.execute(
        text(
            "DELETE FROM scorer.survey_responses WHERE ctid = ANY(ARRAY("
            "SELECT ctid FROM scorer.survey_responses WHERE invited_at < :invited "
            "OR (invited_at IS NULL AND answered_at < :unmatched) LIMIT :n))"
        ),
        {"invited": invited_before, "unmatched": unmatched_before, "n": limit},
    )
    return int(result.rowcount or 0)


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
