"""Customer context in PostgreSQL: what the customers API sets and the rules and timers read."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.actions.facts import CustomerContext


class PgCustomers:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def contexts(self, *, customer_ids: Sequence[str]) -> dict[str, CustomerContext]:
        if not customer_ids:
            return {}
        rows = await self._conn.execute(
            text(
                "SELECT customer_id, email, phone, locale, timezone, tier, value, owner_email, owner_name, "
                "opted_out, attributes, consent FROM actions.customers WHERE customer_id = ANY(:ids)"
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
                consent=r.consent,
            )
            for r in rows
        }

    async def erased(self, *, customer_ids: Sequence[str]) -> set[str]:
        if not customer_ids:
            return set()
        rows = await self._conn.execute(
            text(
                "SELECT i.id FROM unnest(CAST(:ids AS text[])) AS i(id) "
                "JOIN actions.erased_customers e ON e.customer_hash = sha256(convert_to(i.id, 'UTF8'))"
            ),
            {"ids": list(set(customer_ids))},
        )
        return {r.id for r in rows}

    async def upsert(self, *, customer_id: str, fields: dict[str, Any]) -> None:
        params = {"customer_id": customer_id, **fields}
        for key in ("consent", "attributes"):
            params[key] = json.dumps(params.get(key) or {})
        await self._conn.execute(
            text(
                "INSERT INTO actions.customers (customer_id, email, phone, locale, timezone, tier, value, "
                "owner_email, owner_name, consent, opted_out, attributes, updated_at) VALUES (:customer_id, "
                ":email, :phone, :locale, :timezone, :tier, :value, :owner_email, :owner_name, "
                "CAST(:consent AS jsonb), :opted_out, CAST(:attributes AS jsonb), now()) "
                "ON CONFLICT (customer_id) DO UPDATE SET email = EXCLUDED.email, phone = EXCLUDED.phone, "
                "locale = EXCLUDED.locale, timezone = EXCLUDED.timezone, tier = EXCLUDED.tier, "
                "value = EXCLUDED.value, owner_email = EXCLUDED.owner_email, "
                "owner_name = EXCLUDED.owner_name, "
                "consent = EXCLUDED.consent, opted_out = EXCLUDED.opted_out, "
                "attributes = EXCLUDED.attributes, updated_at = now()"
            ),
            params,
        )

    async def get(self, *, customer_id: str) -> dict[str, Any] | None:
        result = await self._conn.execute(
            text("SELECT * FROM actions.customers WHERE customer_id = :id"), {"id": customer_id}
        )
        row = result.mappings().first()
        if row is None:
            return None
        out = dict(row)
        if out.get("value") is not None:
            out["value"] = float(out["value"])
        out["updated_at"] = out["updated_at"].isoformat()
        return out
