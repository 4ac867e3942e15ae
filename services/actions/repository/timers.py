"""Durable timers in PostgreSQL: claimed with ``FOR UPDATE SKIP LOCKED`` so replicas never fire one twice."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.actions.engine import TimerDraft
from services.actions.repository.rows import jsonable
from services.actions.timers import DueTimer


class PgTimers:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def claim_due(self, *, now: datetime, limit: int) -> list[DueTimer]:
        """Lock due timers; another replica's scheduler skips them (SKIP LOCKED) until this one commits."""
        rows = await self._conn.execute(
            text(
                "SELECT timer_id, kind, ref, customer_id, due_at, payload FROM actions.timers "
                "WHERE status = 'pending' AND due_at <= :now ORDER BY due_at, timer_id LIMIT :limit "
                "FOR UPDATE SKIP LOCKED"
            ),
            {"now": now, "limit": limit},
        )
        return [DueTimer(r.timer_id, r.kind, r.ref, r.customer_id, r.due_at, r.payload) for r in rows]

    async def mark_fired(self, *, outcomes: Mapping[str, str], now: datetime) -> None:
        """Fired, with what came of it (``escalated``, ``sent``, ``skipped_<why>``)."""
        if not outcomes:
            return
        ids = list(outcomes)
        await self._conn.execute(
            text(
                "UPDATE actions.timers AS t SET status = 'fired', outcome = v.o, fired_at = :now "
                "FROM unnest(CAST(:ids AS text[]), CAST(:os AS text[])) AS v(id, o) WHERE t.timer_id = v.id"
            ),
            {"ids": ids, "os": [outcomes[i] for i in ids], "now": now},
        )

    async def insert(self, *, timers: Sequence[TimerDraft], now: datetime) -> None:
        if not timers:
            return
        await self._conn.execute(
            text(
                "INSERT INTO actions.timers (timer_id, kind, ref, customer_id, due_at, payload, created_at) "
                "VALUES (:timer_id, :kind, :ref, :customer_id, :due_at, CAST(:payload AS jsonb), :now) "
                "ON CONFLICT DO NOTHING"
            ),
            [
                {
                    "timer_id": t.timer_id,
                    "kind": t.kind,
                    "ref": t.ref,
                    "customer_id": t.customer_id,
                    "due_at": t.due_at,
                    "payload": json.dumps(t.payload, default=str),
                    "now": now,
                }
                for t in timers
            ],
        )

    async def resurvey_answered(self, *, timer: DueTimer) -> bool:
        """Belt and braces at fire time: a comment or an answer to the survey since the re-survey went out."""
        row = await self._conn.execute(
            text(
                "SELECT EXISTS (SELECT 1 FROM actions.ratings r JOIN actions.timers t ON t.timer_id = :id "
                "WHERE r.customer_id = t.customer_id AND r.customer_verified "
                "AND r.rating_id <> COALESCE(t.payload->>'rating_id', '') "
                "AND (r.survey_id = t.ref OR (r.has_comment AND r.occurred_at >= t.created_at)))"
            ),
            {"id": timer.timer_id},
        )
        return bool(row.scalar_one())

    async def search(
        self, *, customer_id: str | None, status: str | None, limit: int
    ) -> list[dict[str, Any]]:
        rows = await self._conn.execute(
            text(
                "SELECT timer_id, kind, ref, customer_id, due_at, status, outcome, created_at, fired_at "
                "FROM actions.timers WHERE (CAST(:c AS text) IS NULL OR customer_id = :c) "
                "AND (CAST(:s AS text) IS NULL OR status = :s) ORDER BY due_at, timer_id LIMIT :limit"
            ),
            {"c": customer_id, "s": status, "limit": limit},
        )
        return [jsonable(r) for r in rows.mappings()]
