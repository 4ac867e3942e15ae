"""Nurture sequence enrolments in PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.actions.engine import EnrolmentDraft
from services.actions.ports import Enrolled


class PgEnrolments:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def enrol(self, *, enrolments: Sequence[EnrolmentDraft], now: datetime) -> None:
        """Enrol, or re-enrol a customer whose earlier run of the sequence is over."""
        if not enrolments:
            return
        await self._conn.execute(
            text(
                "INSERT INTO actions.enrolments (customer_id, sequence, rule_id, rating_id, steps, "
                "enrolled_at, ends_at) VALUES (:c, :s, :r, :rid, :steps, :now, :ends) "
                "ON CONFLICT (customer_id, sequence) DO UPDATE SET rule_id = EXCLUDED.rule_id, "
                "rating_id = EXCLUDED.rating_id, steps = EXCLUDED.steps, enrolled_at = EXCLUDED.enrolled_at, "
                "ends_at = EXCLUDED.ends_at, status = 'active' "
                "WHERE actions.enrolments.status <> 'active' "
                "OR actions.enrolments.ends_at < EXCLUDED.enrolled_at"
            ),
            [
                {
                    "c": e.customer_id,
                    "s": e.sequence,
                    "r": e.rule_id,
                    "rid": e.rating_id,
                    "steps": e.steps,
                    "now": now,
                    "ends": e.ends_at,
                }
                for e in enrolments
            ],
        )

    async def statuses(self, *, customer_ids: Sequence[str]) -> dict[Enrolled, str]:
        if not customer_ids:
            return {}
        rows = await self._conn.execute(
            text(
                "SELECT customer_id, sequence, status FROM actions.enrolments WHERE customer_id = ANY(:ids)"
            ),
            {"ids": list(set(customer_ids))},
        )
        return {Enrolled(r.customer_id, r.sequence): str(r.status) for r in rows}

    async def complete(self, *, enrolled: Sequence[Enrolled]) -> None:
        if not enrolled:
            return
        await self._conn.execute(
            text(
                "UPDATE actions.enrolments AS e SET status = 'completed' "
                "FROM unnest(CAST(:c AS text[]), CAST(:s AS text[])) AS v(c, s) "
                "WHERE e.customer_id = v.c AND e.sequence = v.s AND e.status = 'active'"
            ),
            {"c": [e.customer_id for e in enrolled], "s": [e.sequence for e in enrolled]},
        )

    async def stop_all(self, *, customer_id: str) -> None:
        """An opted-out customer leaves every nurture sequence (the pending steps would be skipped anyway)."""
        await self._conn.execute(
            text(
                "UPDATE actions.enrolments SET status = 'stopped' "
                "WHERE customer_id = :c AND status = 'active'"
            ),
            {"c": customer_id},
        )
