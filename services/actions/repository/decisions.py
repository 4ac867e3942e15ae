"""The decision log in PostgreSQL, and a batch's decisions, alerts and timers written in one statement."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.actions.engine import AlertDraft, TimerDraft
from services.actions.outcomes import DecisionRow

# Decisions, alerts and timers of a batch, as arrays; each insert is ON CONFLICT DO NOTHING.
_OUTCOMES = text(
    "WITH d AS (INSERT INTO actions.decisions (decision_id, rule_id, action, rating_id, "
    " customer_id, notification_id, created_at, outcome, channel, customer_facing, ref) "
    " SELECT * FROM unnest(CAST(:d_id AS text[]), CAST(:d_rule AS text[]), "
    " CAST(:d_action AS text[]), CAST(:d_rating AS text[]), CAST(:d_customer AS text[]), "
    " CAST(:d_note AS text[]), "
    " CAST(:d_at AS timestamptz[]), CAST(:d_outcome AS text[]), CAST(:d_channel AS text[]), "
    " CAST(:d_facing AS boolean[]), CAST(:d_ref AS text[])) ON CONFLICT DO NOTHING RETURNING 1), "
    "a AS (INSERT INTO actions.alerts (alert_id, rule_id, rating_id, customer_id, owner_email, "
    " owner_name, priority, due_at, context, created_at) "
    " SELECT id, r, rt, c, oe, onm, p, due, CAST(ctx AS jsonb), :now FROM unnest("
    " CAST(:a_id AS text[]), CAST(:a_rule AS text[]), CAST(:a_rating AS text[]), "
    " CAST(:a_customer AS text[]), CAST(:a_owner AS text[]), CAST(:a_owner_name AS text[]), "
    " CAST(:a_priority AS text[]), CAST(:a_due AS timestamptz[]), CAST(:a_context AS text[])) "
    " AS v(id, r, rt, c, oe, onm, p, due, ctx) ON CONFLICT DO NOTHING RETURNING 1), "
    "t AS (INSERT INTO actions.timers (timer_id, kind, ref, customer_id, due_at, payload, "
    " created_at) "
    " SELECT id, k, rf, c, due, CAST(pl AS jsonb), :now FROM unnest(CAST(:t_id AS text[]), "
    " CAST(:t_kind AS text[]), CAST(:t_ref AS text[]), CAST(:t_customer AS text[]), "
    " CAST(:t_due AS timestamptz[]), CAST(:t_payload AS text[])) AS v(id, k, rf, c, due, pl) "
    " ON CONFLICT DO NOTHING RETURNING 1) "
    "SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM a), (SELECT count(*) FROM t)"
)


def _row_params(row: DecisionRow) -> dict[str, Any]:
    return {
        "decision_id": row.decision_id,
        "rule_id": row.rule_id,
        "action": row.action,
        "rating_id": row.rating_id,
        "customer_id": row.customer_id,
        "notification_id": row.notification_id,
        "created_at": row.created_at,
        "outcome": row.outcome,
        "channel": row.channel,
        "customer_facing": row.customer_facing,
        "ref": row.ref,
    }


class PgDecisions:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def existing(self, *, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        rows = await self._conn.execute(
            text("SELECT decision_id FROM actions.decisions WHERE decision_id = ANY(:ids)"),
            {"ids": list(ids)},
        )
        return {r.decision_id for r in rows}

    async def insert(self, *, rows: Sequence[DecisionRow]) -> None:
        if not rows:
            return
        await self._conn.execute(
            text(
                "INSERT INTO actions.decisions (decision_id, rule_id, action, rating_id, customer_id, "
                "notification_id, created_at, outcome, channel, customer_facing, ref) VALUES (:decision_id, "
                ":rule_id, :action, :rating_id, :customer_id, :notification_id, :created_at, :outcome, "
                ":channel, :customer_facing, :ref) ON CONFLICT DO NOTHING"
            ),
            [_row_params(r) for r in rows],
        )

    async def insert_outcomes(
        self,
        *,
        decisions: Sequence[DecisionRow],
        alerts: Sequence[AlertDraft],
        timers: Sequence[TimerDraft],
        now: datetime,
    ) -> None:
        """Decisions, alerts and timers of a batch in one statement, as arrays (one round trip)."""
        if not decisions and not alerts and not timers:
            return
        d, a, t = decisions, alerts, timers
        await self._conn.execute(
            _OUTCOMES,
            {
                "d_id": [r.decision_id for r in d],
                "d_rule": [r.rule_id for r in d],
                "d_action": [r.action for r in d],
                "d_rating": [r.rating_id for r in d],
                "d_customer": [r.customer_id for r in d],
                "d_note": [r.notification_id for r in d],
                "d_at": [r.created_at for r in d],
                "d_outcome": [r.outcome for r in d],
                "d_channel": [r.channel for r in d],
                "d_facing": [r.customer_facing for r in d],
                "d_ref": [r.ref for r in d],
                "a_id": [x.alert_id for x in a],
                "a_rule": [x.rule_id for x in a],
                "a_rating": [x.rating_id for x in a],
                "a_customer": [x.customer_id for x in a],
                "a_owner": [x.owner_email for x in a],
                "a_owner_name": [x.owner_name for x in a],
                "a_priority": [x.priority for x in a],
                "a_due": [x.due_at for x in a],
                "a_context": [json.dumps(x.context, default=str) for x in a],
                "t_id": [x.timer_id for x in t],
                "t_kind": [x.kind for x in t],
                "t_ref": [x.ref for x in t],
                "t_customer": [x.customer_id for x in t],
                "t_due": [x.due_at for x in t],
                "t_payload": [json.dumps(x.payload, default=str) for x in t],
                "now": now,
            },
        )

    async def sent_last_24h(self, *, customer_ids: Sequence[str], now: datetime) -> dict[str, int]:
        """Messages each customer received in the last 24 h (the daily cap)."""
        if not customer_ids:
            return {}
        rows = await self._conn.execute(
            text(
                "SELECT customer_id, count(*) AS n FROM actions.decisions WHERE customer_id = ANY(:ids) "
                "AND customer_facing AND notification_id IS NOT NULL AND created_at > :since "
                "GROUP BY customer_id"
            ),
            {"ids": list(set(customer_ids)), "since": now - timedelta(hours=24)},
        )
        return {r.customer_id: int(r.n) for r in rows}

    async def recent(self, *, customer_id: str | None, limit: int) -> list[dict[str, Any]]:
        rows = await self._conn.execute(
            text(
                "SELECT decision_id, rule_id, action, rating_id, customer_id, notification_id, outcome, "
                "channel, customer_facing, ref, created_at "
                "FROM actions.decisions WHERE (CAST(:c AS text) IS NULL OR customer_id = :c) "
                "ORDER BY created_at DESC, decision_id LIMIT :limit"
            ),
            {"c": customer_id, "limit": limit},
        )
        return [{**dict(r._mapping), "created_at": r.created_at.isoformat()} for r in rows]
