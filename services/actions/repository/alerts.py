"""CSM alerts in PostgreSQL: created with a batch's decisions, locked while an escalation decides on them,
acknowledged or resolved through the alerts API."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.actions.alertpages import NO_DUE, AlertPage, Key, PageCounts, PageQuery
from services.actions.ports import AlertTransition, Reach
from services.actions.repository.rows import jsonable
from services.actions.timers import AlertState

_ALERT_COLUMNS = (
    "alert_id, rule_id, rating_id, customer_id, owner_email, owner_name, priority, status, due_at, "
    "escalated_at, acknowledged_at, acknowledged_by, resolved_at, resolved_by, note, context, created_at"
)


# The sort keys of ``alertpages.key_of`` as columns (times as whole microseconds since the epoch).
_KEYED = (
    f"SELECT {_ALERT_COLUMNS}, "  # noqa: S608 - fixed column list
    "CASE status WHEN 'open' THEN 0 WHEN 'acknowledged' THEN 1 ELSE 2 END AS k_status, "
    "CASE WHEN escalated_at IS NULL THEN 1 ELSE 0 END AS k_escalated, "
    "CASE priority WHEN 'urgent' THEN 0 WHEN 'high' THEN 1 WHEN 'normal' THEN 2 WHEN 'low' THEN 3 "
    "ELSE 4 END AS k_priority, "
    "CASE WHEN due_at IS NOT NULL AND acknowledged_at IS NULL "
    f"THEN (extract(epoch FROM due_at) * 1000000)::bigint ELSE {NO_DUE} END AS k_due, "
    "-(extract(epoch FROM created_at) * 1000000)::bigint AS k_newest "
    "FROM actions.alerts"
)
_PAGE_FILTER = (
    "(CAST(:any_status AS boolean) OR status = ANY(CAST(:st AS text[]))) "
    "AND (CAST(:o AS text) IS NULL OR lower(owner_email) = lower(:o)) "
    "AND (CAST(:c AS text) IS NULL OR customer_id = :c) "
    "AND (CAST(:p AS text) IS NULL OR priority = :p) "
    "AND (CAST(:esc AS boolean) IS NULL OR (escalated_at IS NOT NULL) = CAST(:esc AS boolean)) "
    "AND (NOT CAST(:within AS boolean) "
    " OR lower(owner_email) = lower(CAST(:me AS text)) "
    " OR context->'customer'->>'account_id' = ANY(CAST(:accounts AS text[])))"
)
_ORDER_KEYS = {
    "newest": ("k_newest",),
    "work": ("k_status", "k_escalated", "k_priority", "k_due", "k_newest"),
}


def _key_params(prefix: str, ints: int) -> str:
    values = [
        *(f"CAST(:{prefix}{i} AS bigint)" for i in range(ints)),
        f'CAST(:{prefix}id AS text) COLLATE "C"',
    ]
    return "(" + ", ".join(values) + ")"


def _key_values(prefix: str, key: Sequence[int | str]) -> dict[str, Any]:
    out: dict[str, Any] = {f"{prefix}{i}": int(v) for i, v in enumerate(key[:-1])}
    out[f"{prefix}id"] = str(key[-1])
    return out


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

    async def page(self, *, query: PageQuery, reach: Reach | None, now: datetime) -> AlertPage:
        """One page in the order's key (``alertpages.key_of``, computed here in SQL), then the filter's
        counts and how many alerts come before the page, in one more statement."""
        keys = _ORDER_KEYS[query.order]
        key_row = f'({", ".join(keys)}, alert_id COLLATE "C")'
        params: dict[str, Any] = {
            "st": list(query.statuses),
            "any_status": not query.statuses,
            "o": query.owner,
            "c": query.customer_id,
            "p": query.priority,
            "esc": query.escalated,
            "within": reach is not None,
            "me": reach.owner_email if reach else None,
            "accounts": sorted(reach.accounts) if reach else [],
            "limit": query.limit,
            "now": now,
        }
        cursor = query.before if query.before is not None else query.after
        position = ""
        if cursor is not None:
            position = (
                f"WHERE {key_row} {'<' if query.before is not None else '>'} {_key_params('k', len(keys))}"
            )
            params.update(_key_values("k", cursor))
        direction = "DESC" if query.before is not None else "ASC"
        ordering = ", ".join(f"{k} {direction}" for k in (*keys, 'alert_id COLLATE "C"'))
        rows = await self._conn.execute(
            text(
                f"WITH f AS ({_KEYED} WHERE {_PAGE_FILTER}) "  # noqa: S608 - fixed SQL fragments; values are bound
                f"SELECT * FROM f {position} ORDER BY {ordering} LIMIT :limit"
            ),
            params,
        )
        found = list(rows.mappings())
        if query.before is not None:
            found.reverse()
        page_keys: list[Key] = [(*(int(r[k]) for k in keys), str(r["alert_id"])) for r in found]
        first = page_keys[0] if page_keys else None
        params.update(_key_values("f", first or (*([0] * len(keys)), "")))
        params["has_first"] = first is not None
        count = (
            await self._conn.execute(
                text(
                    "SELECT count(*) AS total, count(*) FILTER (WHERE status = 'open') AS open, "  # noqa: S608 - fixed SQL fragments; values are bound
                    "count(*) FILTER (WHERE status <> 'resolved' AND acknowledged_at IS NULL "
                    " AND due_at <= :now) AS overdue, "
                    "count(*) FILTER (WHERE status <> 'resolved' AND escalated_at IS NOT NULL) AS escalated, "
                    "count(*) FILTER (WHERE CAST(:has_first AS boolean) "
                    f"AND {key_row} < {_key_params('f', len(keys))}) AS before "
                    f"FROM ({_KEYED} WHERE {_PAGE_FILTER}) f"
                ),
                params,
            )
        ).one()
        columns = _ALERT_COLUMNS.replace(" ", "").split(",")
        return AlertPage(
            alerts=[jsonable({c: r[c] for c in columns}) for r in found],
            keys=page_keys,
            counts=PageCounts(
                total=int(count.total),
                open=int(count.open),
                overdue=int(count.overdue),
                escalated=int(count.escalated),
            ),
            offset=int(count.before),
        )

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
