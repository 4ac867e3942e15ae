"""CSM alerts in PostgreSQL: created with a batch's decisions, locked while an escalation decides on them,
acknowledged or resolved through the alerts API."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.actions.ports import AlertTransition, Reach
from services.actions.repository.rows import jsonable
from services.actions.timers import AlertState

_ALERT_COLUMNS = (
    "alert_id, rule_id, rating_id, customer_id, owner_email, owner_name, priority, status, due_at, "
    "escalated_at, acknowledged_at, acknowledged_by, resolved_at, resolved_by, note, context, created_at"
)


def _alert_state(row: Mapping[Any, Any]) -> AlertState:
    return AlertState(
        alert_id=row["alert_id"],
        rule_id=row["rule_id"],
        status=row["status"],
        owner_email=row["owner_email"],
        owner_name=row["owner_name"],
        priority=row["priority"],
        due_at=row["due_at"],
        rating_id=row["rating_id"],
        customer_id=row["customer_id"],
        context=row["context"],
    )


class PgAlerts:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def lock(self, *, alert_ids: Sequence[str]) -> dict[str, AlertState]:
        """Row-lock alerts so an acknowledgement waits for the escalation deciding on them (or vice versa)."""
        if not alert_ids:
            return {}
        rows = await self._conn.execute(
            text(
                f"SELECT {_ALERT_COLUMNS} FROM actions.alerts WHERE alert_id = ANY(:ids) "  # noqa: S608 - fixed column list
                "ORDER BY alert_id FOR UPDATE"
            ),
            {"ids": sorted(set(alert_ids))},
        )
        return {r["alert_id"]: _alert_state(r) for r in rows.mappings()}

    async def mark_escalated(self, *, alert_ids: Sequence[str], now: datetime) -> None:
        if not alert_ids:
            return
        await self._conn.execute(
            text("UPDATE actions.alerts SET escalated_at = :now WHERE alert_id = ANY(:ids)"),
            {"ids": list(alert_ids), "now": now},
        )

    async def search(
        self,
        *,
        status: str | None,
        owner: str | None,
        customer_id: str | None,
        limit: int,
        reach: Reach | None = None,
    ) -> list[dict[str, Any]]:
        rows = await self._conn.execute(
            text(
                f"SELECT {_ALERT_COLUMNS} FROM actions.alerts "  # noqa: S608 - fixed column list
                "WHERE (CAST(:s AS text) IS NULL OR status = :s) "
                "AND (CAST(:o AS text) IS NULL OR lower(owner_email) = lower(:o)) "
                "AND (CAST(:c AS text) IS NULL OR customer_id = :c) "
                "AND (NOT CAST(:within AS boolean) "
                " OR lower(owner_email) = lower(CAST(:me AS text)) "
                " OR context->'customer'->>'account_id' = ANY(CAST(:accounts AS text[]))) "
                "ORDER BY created_at DESC, alert_id LIMIT :limit"
            ),
            {
                "s": status,
                "o": owner,
                "c": customer_id,
                "limit": limit,
                "within": reach is not None,
                "me": reach.owner_email if reach else None,
                "accounts": sorted(reach.accounts) if reach else [],
            },
        )
        return [jsonable(r) for r in rows.mappings()]

    async def get(self, *, alert_id: str) -> dict[str, Any] | None:
        result = await self._conn.execute(
            text(f"SELECT {_ALERT_COLUMNS} FROM actions.alerts WHERE alert_id = :id"),  # noqa: S608 - fixed column list
            {"id": alert_id},
        )
        row = result.mappings().first()
        return jsonable(row) if row else None

    async def transition(
        self, *, alert_id: str, to: str, by: str | None, note: str | None, now: datetime
    ) -> AlertTransition:
        """Acknowledge or resolve; acknowledging (or resolving) cancels the pending escalation."""
        current = (await self.lock(alert_ids=[alert_id])).get(alert_id)
        if current is None:
            return AlertTransition(None, "not_found")
        params = {"id": alert_id, "now": now, "by": by, "note": note}
        if to == "acknowledged":
            if current.status == "resolved":
                return AlertTransition(await self.get(alert_id=alert_id), "already resolved")
            if current.status == "open":
                await self._conn.execute(
                    text(
                        "UPDATE actions.alerts SET status = 'acknowledged', acknowledged_at = :now, "
                        "acknowledged_by = :by, note = COALESCE(:note, note) WHERE alert_id = :id"
                    ),
                    params,
                )
        elif current.status != "resolved":
            await self._conn.execute(
                text(
                    "UPDATE actions.alerts SET status = 'resolved', resolved_at = :now, resolved_by = :by, "
                    "acknowledged_at = COALESCE(acknowledged_at, :now), "
                    "acknowledged_by = COALESCE(acknowledged_by, :by), note = COALESCE(:note, note) "
                    "WHERE alert_id = :id"
                ),
                params,
            )
        await self._conn.execute(
            text(
                "UPDATE actions.timers SET status = 'cancelled', outcome = :why, fired_at = :now "
                "WHERE kind = 'sla_escalation' AND ref = :id AND status = 'pending'"
            ),
            {"id": alert_id, "why": to, "now": now},
        )
        return AlertTransition(await self.get(alert_id=alert_id), None)

    async def assign(
        self, *, alert_id: str, owner_email: str, owner_name: str | None, by: str | None, now: datetime
    ) -> AlertTransition:
        """Hand an unresolved alert to another owner; its SLA and escalation stay as they were."""
        current = (await self.lock(alert_ids=[alert_id])).get(alert_id)
        if current is None:
            return AlertTransition(None, "not_found")
        if current.status == "resolved":
            return AlertTransition(await self.get(alert_id=alert_id), "already resolved")
        await self._conn.execute(
            text(
                "UPDATE actions.alerts SET owner_email = :email, owner_name = :name, "
                "context = jsonb_set(context, '{assigned}', "
                "CAST(:assigned AS jsonb)) WHERE alert_id = :id"
            ),
            {
                "id": alert_id,
                "email": owner_email,
                "name": owner_name,
                "assigned": json.dumps({"by": by, "at": now.isoformat(), "from": current.owner_email}),
            },
        )
        return AlertTransition(await self.get(alert_id=alert_id), None)
