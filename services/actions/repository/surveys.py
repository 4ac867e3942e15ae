"""Survey definitions' versions and survey invitations in PostgreSQL.

An invitation row is its own durable timer: ``next_at`` is when the scheduler must look at it again
(its send, then its reminder), claimed with ``FOR UPDATE SKIP LOCKED`` so replicas never fire one twice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.actions.ports import InvitationUpdate, NewInvitation, StoredInvitation, StoredRuleSet
from services.actions.repository.rows import jsonable
from services.actions.surveys.decisions import Delivery, PastInvitation
from services.actions.surveys.outcome_events import MarkedInvitation

_COLUMNS = (
    "invitation_id, survey_id, interaction_id, customer_id, channel, locale, segment, recipient, source, "
    "due_at, expires_at, reminder_at, status, delivery, reminders_sent, requested_at, sent_at, "
    "answered_at, answered_with_comment, stop_reason"
)


def _marked(r: Any, *, before: str, answered: bool) -> MarkedInvitation:
    return MarkedInvitation(
        invitation_id=r.invitation_id,
        survey_id=r.survey_id,
        customer_id=r.customer_id,
        channel=r.channel,
        segment=dict(r.segment or {}),
        delivery=Delivery(r.delivery),
        delivery_before=Delivery(before),
        sent_at=r.sent_at,
        answered=answered,
        answered_at=r.answered_at,
        answered_with_comment=bool(r.answered_with_comment),
    )


def _stored(r: Any) -> StoredInvitation:
    return StoredInvitation(
        invitation_id=r.invitation_id,
        survey_id=r.survey_id,
        interaction_id=r.interaction_id,
        customer_id=r.customer_id,
        channel=r.channel,
        locale=r.locale,
        segment=dict(r.segment or {}),
        recipient=dict(r.recipient or {}),
        source=r.source,
        due_at=r.due_at,
        expires_at=r.expires_at,
        reminder_at=r.reminder_at,
        status=r.status,
        delivery=r.delivery,
        reminders_sent=int(r.reminders_sent),
        requested_at=r.requested_at,
        sent_at=r.sent_at,
        answered_at=r.answered_at,
        answered_with_comment=bool(r.answered_with_comment),
        stop_reason=r.stop_reason,
    )


class PgSurveySets:
    """Versions of the survey set; writers serialise on an advisory lock (as the rules do)."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def latest_version(self) -> int | None:
        value = (await self._conn.execute(text("SELECT max(version) FROM actions.survey_sets"))).scalar_one()
        return int(value) if value is not None else None

    async def load(self, *, version: int | None = None) -> StoredRuleSet | None:
        row = (
            await self._conn.execute(
                text(
                    "SELECT version, document, origin, created_at, author FROM actions.survey_sets "
                    "WHERE CAST(:v AS integer) IS NULL OR version = :v ORDER BY version DESC LIMIT 1"
                ),
                {"v": version},
            )
        ).first()
        if row is None:
            return None
        return StoredRuleSet(int(row.version), row.document, str(row.origin), row.created_at, row.author)

    async def lock(self) -> None:
        await self._conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('actions.survey_sets'))"))

    async def insert(self, *, version: int, document: Any, origin: str, author: str | None = None) -> bool:
        result = await self._conn.execute(
            text(
                "INSERT INTO actions.survey_sets (version, document, origin, author) "
                "VALUES (:v, CAST(:d AS jsonb), :o, :a) ON CONFLICT DO NOTHING"
            ),
            {"v": version, "d": json.dumps(document, default=str), "o": origin, "a": author},
        )
        return bool(result.rowcount)

    async def versions(self, *, limit: int) -> list[dict[str, Any]]:
        rows = await self._conn.execute(
            text(
                "SELECT version, origin, author, created_at, "
                "jsonb_array_length(document->'surveys') AS surveys "
                "FROM actions.survey_sets ORDER BY version DESC LIMIT :limit"
            ),
            {"limit": limit},
        )
        return [jsonable(r) for r in rows.mappings()]


class PgSurveys:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def history(
        self, *, customer_ids: Sequence[str], since: datetime
    ) -> dict[str, list[PastInvitation]]:
        if not customer_ids:
            return {}
        rows = await self._conn.execute(
            text(
                "SELECT invitation_id, survey_id, customer_id, due_at FROM actions.survey_invitations "
                "WHERE customer_id = ANY(:ids) AND due_at >= :since ORDER BY due_at"
            ),
            {"ids": list(customer_ids), "since": since},
        )
        out: dict[str, list[PastInvitation]] = {}
        for r in rows:
            out.setdefault(r.customer_id, []).append(PastInvitation(r.invitation_id, r.survey_id, r.due_at))
        return out

    async def insert(self, *, invitations: Sequence[NewInvitation]) -> set[str]:
        if not invitations:
            return set()
        rows = await self._conn.execute(
            text(
                "INSERT INTO actions.survey_invitations (invitation_id, survey_id, interaction_id, "
                "customer_id, channel, locale, segment, recipient, source, due_at, expires_at, reminder_at, "
                "next_at) "
                "SELECT x.invitation_id, x.survey_id, x.interaction_id, x.customer_id, x.channel, x.locale, "
                "x.segment, x.recipient, x.source, x.due_at, x.expires_at, x.reminder_at, x.due_at "
                "FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS x(invitation_id text, survey_id text, "
                "interaction_id text, customer_id text, channel text, locale text, segment jsonb, "
                "recipient jsonb, source text, due_at timestamptz, expires_at timestamptz, "
                "reminder_at timestamptz) "
                "ON CONFLICT (invitation_id) DO NOTHING RETURNING invitation_id"
            ),
            {
                "rows": json.dumps(
                    [
                        {
                            "invitation_id": i.invitation_id,
                            "survey_id": i.survey_id,
                            "interaction_id": i.interaction_id,
                            "customer_id": i.customer_id,
                            "channel": i.channel,
                            "locale": i.locale,
                            "segment": dict(i.segment),
                            "recipient": dict(i.recipient),
                            "source": i.source,
                            "due_at": i.due_at.isoformat(),
                            "expires_at": i.expires_at.isoformat(),
                            "reminder_at": i.reminder_at.isoformat() if i.reminder_at else None,
                        }
                        for i in invitations
                    ]
                )
            },
        )
        return {r.invitation_id for r in rows}

    async def claim_due(self, *, now: datetime, limit: int) -> list[StoredInvitation]:
        rows = await self._conn.execute(
            text(
                f"SELECT {_COLUMNS} FROM actions.survey_invitations "  # noqa: S608 - constant column list
                "WHERE next_at IS NOT NULL AND next_at <= :now ORDER BY next_at, invitation_id "
                "LIMIT :limit FOR UPDATE SKIP LOCKED"
            ),
            {"now": now, "limit": limit},
        )
        return [_stored(r) for r in rows]

    async def update(self, *, updates: Sequence[InvitationUpdate], now: datetime) -> None:
        for u in updates:
            await self._conn.execute(
                text(
                    "UPDATE actions.survey_invitations SET status = :status, next_at = :next_at, "
                    "requested_at = COALESCE(:requested_at, requested_at), "
                    "reminders_sent = reminders_sent + CASE WHEN :reminded THEN 1 ELSE 0 END, "
                    "stop_reason = COALESCE(:stop_reason, stop_reason) WHERE invitation_id = :id"
                ),
                {
                    "id": u.invitation_id,
                    "status": u.status,
                    "next_at": u.next_at,
                    "requested_at": u.requested_at,
                    "reminded": u.reminded,
                    "stop_reason": u.stop_reason,
                },
            )

    async def mark_answered(self, *, answers: Mapping[str, tuple[datetime, bool]]) -> list[MarkedInvitation]:
        if not answers:
            return []
        # The rows are locked (in id order) by the sub-select, which also keeps their delivery before
        # this change: RETURNING sees only the new one, and the outcome events need both.
        rows = await self._conn.execute(
            text(
                "UPDATE actions.survey_invitations i SET answered_at = p.at, "
                "answered_with_comment = p.comment, "
                "sent_at = COALESCE(i.sent_at, i.requested_at), "
                "delivery = CASE WHEN i.delivery IN ('pending', 'unknown') THEN 'sent' ELSE i.delivery END "
                "FROM (SELECT o.invitation_id, o.delivery AS was_delivery, x.at, x.comment "
                "FROM actions.survey_invitations o JOIN jsonb_to_recordset(CAST(:rows AS jsonb)) "
                "AS x(id text, at timestamptz, comment boolean) ON o.invitation_id = x.id "
                "WHERE o.answered_at IS NULL ORDER BY o.invitation_id FOR UPDATE OF o) AS p "
                "WHERE i.invitation_id = p.invitation_id AND i.answered_at IS NULL "
                "RETURNING i.invitation_id, i.survey_id, i.customer_id, i.channel, i.segment, i.delivery, "
                "i.sent_at, i.answered_at, i.answered_with_comment, p.was_delivery"
            ),
            {
                "rows": json.dumps(
                    [{"id": k, "at": at.isoformat(), "comment": c} for k, (at, c) in answers.items()]
                )
            },
        )
        return [_marked(r, before=r.was_delivery, answered=True) for r in rows]

    async def mark_delivery(self, *, outcomes: Mapping[str, tuple[str, datetime]]) -> list[MarkedInvitation]:
        if not outcomes:
            return []
        rows = await self._conn.execute(
            text(
                "UPDATE actions.survey_invitations i SET delivery = p.delivery, "
                "sent_at = CASE WHEN p.delivery = 'sent' THEN COALESCE(i.sent_at, p.at) ELSE i.sent_at END "
                "FROM (SELECT o.invitation_id, o.delivery AS was_delivery, x.delivery, x.at "
                "FROM actions.survey_invitations o JOIN jsonb_to_recordset(CAST(:rows AS jsonb)) "
                "AS x(id text, delivery text, at timestamptz) ON o.invitation_id = x.id "
                "WHERE o.delivery IN ('pending', 'unknown') ORDER BY o.invitation_id FOR UPDATE OF o) AS p "
                "WHERE i.invitation_id = p.invitation_id AND i.delivery IN ('pending', 'unknown') "
                "RETURNING i.invitation_id, i.survey_id, i.customer_id, i.channel, i.segment, i.delivery, "
                "i.sent_at, i.answered_at, i.answered_with_comment, p.was_delivery"
            ),
            {
                "rows": json.dumps(
                    [{"id": k, "delivery": d, "at": at.isoformat()} for k, (d, at) in outcomes.items()]
                )
            },
        )
        return [_marked(r, before=r.was_delivery, answered=False) for r in rows]

    async def list(self, *, survey_id: str | None, since: datetime | None) -> list[StoredInvitation]:
        rows = await self._conn.execute(
            text(
                f"SELECT {_COLUMNS} FROM actions.survey_invitations "  # noqa: S608 - constant column list
                "WHERE (CAST(:survey AS text) IS NULL OR survey_id = :survey) "
                "AND (CAST(:since AS timestamptz) IS NULL OR due_at >= :since)"
            ),
            {"survey": survey_id, "since": since},
        )
        return [_stored(r) for r in rows]
