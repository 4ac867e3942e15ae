"""SQL for the actions service: rating history, customer context and decisions."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.actions.engine import CustomerContext, History
from shared.events import RatingSubmitted


async def insert_new_ratings(conn: AsyncConnection, ratings: Sequence[RatingSubmitted]) -> set[str]:
    """Record ratings in the per-customer history; returns the ids seen for the first time."""
    unique = {r.rating_id: r for r in reversed(ratings)}
    if not unique:
        return set()
    rows = list(unique.values())
    result = await conn.execute(
        text(
            "INSERT INTO actions.ratings (rating_id, customer_id, metric, scale, score, normalized, "
            "sentiment, occurred_at) SELECT * FROM unnest(CAST(:id AS text[]), CAST(:c AS text[]), "
            "CAST(:m AS text[]), CAST(:s AS text[]), CAST(:score AS smallint[]), CAST(:n AS real[]), "
            "CAST(:sent AS text[]), CAST(:t AS timestamptz[])) ON CONFLICT DO NOTHING RETURNING rating_id"
        ),
        {
            "id": [r.rating_id for r in rows],
            "c": [r.customer.id for r in rows],
            "m": [r.metric.value for r in rows],
            "s": [r.scale for r in rows],
            "score": [r.score for r in rows],
            "n": [r.normalized for r in rows],
            "sent": [r.sentiment.value for r in rows],
            "t": [r.occurred_at for r in rows],
        },
    )
    return {row.rating_id for row in result}


async def load_contexts(conn: AsyncConnection, customer_ids: Sequence[str]) -> dict[str, CustomerContext]:
    if not customer_ids:
        return {}
    rows = await conn.execute(
        text(
            "SELECT customer_id, email, phone, locale, timezone, tier, value, owner_email, owner_name, "
            "opted_out, attributes FROM actions.customers WHERE customer_id = ANY(:ids)"
        ),
        {"ids": list(set(customer_ids))},
    )
    return {
        r.customer_id: CustomerContext(
            customer_id=r.customer_id,
            email=r.email,
            phone=r.phone,
            locale=r.locale,
            timezone=r.timezone,
            tier=r.tier,
            value=float(r.value) if r.value is not None else None,
            owner_email=r.owner_email,
            owner_name=r.owner_name,
            opted_out=r.opted_out,
            attributes=r.attributes,
        )
        for r in rows
    }


async def load_history(
    conn: AsyncConnection, customer_ids: Sequence[str], *, since: datetime
) -> dict[str, History]:
    if not customer_ids:
        return {}
    rows = await conn.execute(
        text(
            "SELECT customer_id, count(*) AS total, count(*) FILTER (WHERE sentiment = 'negative') AS neg "
            "FROM actions.ratings WHERE customer_id = ANY(:ids) AND occurred_at >= :since "
            "GROUP BY customer_id"
        ),
        {"ids": list(set(customer_ids)), "since": since},
    )
    return {r.customer_id: History(ratings_30d=int(r.total), negative_30d=int(r.neg)) for r in rows}


async def load_last_fired(
    conn: AsyncConnection, customer_ids: Sequence[str]
) -> dict[tuple[str, str], datetime]:
    """When each rule last sent something to each customer (for cooldowns)."""
    if not customer_ids:
        return {}
    rows = await conn.execute(
        text(
            "SELECT customer_id, rule_id, max(created_at) AS last FROM actions.decisions "
            "WHERE customer_id = ANY(:ids) AND notification_id IS NOT NULL GROUP BY customer_id, rule_id"
        ),
        {"ids": list(set(customer_ids))},
    )
    return {(r.customer_id, r.rule_id): r.last for r in rows}


async def insert_decisions(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    await conn.execute(
        text(
            "INSERT INTO actions.decisions (decision_id, rule_id, action, rating_id, customer_id, "
            "notification_id, created_at) VALUES (:decision_id, :rule_id, :action, :rating_id, "
            ":customer_id, :notification_id, :created_at) ON CONFLICT DO NOTHING"
        ),
        list(rows),
    )


async def upsert_customer(conn: AsyncConnection, customer_id: str, fields: dict[str, Any]) -> None:
    params = {"customer_id": customer_id, **fields}
    for key in ("consent", "attributes"):
        params[key] = json.dumps(params.get(key) or {})
    await conn.execute(
        text(
            "INSERT INTO actions.customers (customer_id, email, phone, locale, timezone, tier, value, "
            "owner_email, owner_name, consent, opted_out, attributes, updated_at) VALUES (:customer_id, "
            ":email, :phone, :locale, :timezone, :tier, :value, :owner_email, :owner_name, "
            "CAST(:consent AS jsonb), :opted_out, CAST(:attributes AS jsonb), now()) "
            "ON CONFLICT (customer_id) DO UPDATE SET email = EXCLUDED.email, phone = EXCLUDED.phone, "
            "locale = EXCLUDED.locale, timezone = EXCLUDED.timezone, tier = EXCLUDED.tier, "
            "value = EXCLUDED.value, owner_email = EXCLUDED.owner_email, owner_name = EXCLUDED.owner_name, "
            "consent = EXCLUDED.consent, opted_out = EXCLUDED.opted_out, "
            "attributes = EXCLUDED.attributes, updated_at = now()"
        ),
        params,
    )


async def get_customer(conn: AsyncConnection, customer_id: str) -> dict[str, Any] | None:
    row = (
        (
            await conn.execute(
                text("SELECT * FROM actions.customers WHERE customer_id = :id"), {"id": customer_id}
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    out = dict(row)
    if out.get("value") is not None:
        out["value"] = float(out["value"])
    out["updated_at"] = out["updated_at"].isoformat()
    return out


async def list_decisions(
    conn: AsyncConnection, *, customer_id: str | None, limit: int
) -> list[dict[str, Any]]:
    rows = await conn.execute(
        text(
            "SELECT decision_id, rule_id, action, rating_id, customer_id, notification_id, created_at "
            "FROM actions.decisions WHERE (CAST(:c AS text) IS NULL OR customer_id = :c) "
            "ORDER BY created_at DESC LIMIT :limit"
        ),
        {"c": customer_id, "limit": limit},
    )
    return [{**dict(r._mapping), "created_at": r.created_at.isoformat()} for r in rows]
