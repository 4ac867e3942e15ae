"""GDPR erasure of one customer in the scorer: the comment goes, the rating stays counted.

``score_counts`` and the windows' states hold counts only, so scores stay exact; ``ratings`` keeps the
score, segment and times under the erasure's random pseudonym, without the comment.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.events import CustomerErased
from shared.retention import Cutoffs

_RATINGS = text("UPDATE scorer.ratings SET customer_id = :p, comment = NULL WHERE customer_id = :c")


async def scrub_customer(conn: AsyncConnection, erased: CustomerErased) -> dict[str, int]:
    result = await conn.execute(_RATINGS, {"c": erased.customer_id, "p": erased.pseudonym})
    return {"scorer.ratings": result.rowcount}


async def export_customer(conn: AsyncConnection, customer_id: str) -> dict[str, object]:
    """Every rating the scorer holds for the customer (GDPR art. 15/20), oldest first."""
    rows = await conn.execute(
        text(
            "SELECT rating_id, metric, scale, score, sentiment, segment, touchpoint, comment, account_id, "
            "source, occurred_at, received_at FROM scorer.ratings WHERE customer_id = :c "
            "ORDER BY occurred_at, rating_id"
        ),
        {"c": customer_id},
    )
    return {"ratings": [dict(r._mapping) for r in rows]}


async def purge_expired(conn: AsyncConnection, cut: Cutoffs) -> dict[str, int]:
    """Retention: comments older than the comment cut-off go (the ratings stay counted)."""
    result = await conn.execute(
        text("UPDATE scorer.ratings SET comment = NULL WHERE comment IS NOT NULL AND occurred_at < :c"),
        {"c": cut.comments},
    )
    return {"scorer.ratings": result.rowcount}
