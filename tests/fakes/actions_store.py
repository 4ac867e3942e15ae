"""In-memory actions stores (``services.actions.ports``) for handler tests; the real ones are
``services.actions.repository`` on PostgreSQL, proven by tests/integration/test_actions.py.

One ``MemoryActions`` holds the tables; ``stores()`` binds every port to them and ``begin()`` is a
transaction that rolls the tables back when its block raises, as PostgreSQL would.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from dataclasses import fields as dataclass_fields
from datetime import UTC, datetime, timedelta
from typing import Any

from services.actions import alertpages
from services.actions.alertpages import AlertPage, PageQuery
from services.actions.engine import AlertDraft, EnrolmentDraft, Fatigue, TimerDraft
from services.actions.facts import CustomerContext, PastRating
from services.actions.health.evidence import Evidence, Observation, RatingPoint
from services.actions.health.transitions import HealthPoint, HealthState
from services.actions.outcomes import DecisionRow
from services.actions.ports import (
    AlertTransition,
    BatchFacts,
    CustomerFacts,
    Enrolled,
    HealthAlert,
    HealthInputs,
    HealthSave,
    InvitationUpdate,
    NewInvitation,
    Reach,
    StoredInvitation,
    StoredRating,
    StoredRuleSet,
    Stores,
    Subject,
)
from services.actions.surveys.decisions import Delivery, PastInvitation
from services.actions.surveys.outcome_events import MarkedInvitation
from services.actions.timers import AlertState, DueTimer
from services.actions.verbatims import Analysis
from shared.events import RatingSubmitted, UsageObserved


@dataclass
class RatingRow:
    rating_id: str
    customer_id: str
    occurred_at: datetime
    normalized: float
    sentiment: str
    has_comment: bool
    survey_id: str | None
    themes: list[str]
    comment_sentiment: str | None
    customer_verified: bool = True
    metric: str = "csat"
    scale: str = "1-5"
    score: int = 0
    revision: int = 0


@dataclass
class TimerRow:
    timer_id: str
    kind: str
    ref: str | None
    customer_id: str | None
    due_at: datetime
    payload: dict[str, Any]
    created_at: datetime
    status: str = "pending"
    outcome: str | None = None
    fired_at: datetime | None = None


@dataclass
class AlertRow:
    draft: AlertDraft
    created_at: datetime
    status: str = "open"
    escalated_at: datetime | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    note: str | None = None

    def as_json(self) -> dict[str, Any]:
        d = self.draft
        row: dict[str, Any] = {
            "alert_id": d.alert_id,
            "rule_id": d.rule_id,
            "rating_id": d.rating_id,
            "customer_id": d.customer_id,
            "owner_email": d.owner_email,
            "owner_name": d.owner_name,
            "priority": d.priority,
            "status": self.status,
            "due_at": d.due_at,
            "escalated_at": self.escalated_at,
            "acknowledged_at": self.acknowledged_at,
            "acknowledged_by": self.acknowledged_by,
            "resolved_at": self.resolved_at,
            "resolved_by": self.resolved_by,
            "note": self.note,
            "context": d.context,
            "created_at": self.created_at,
        }
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


@dataclass
class EnrolmentRow:
    draft: EnrolmentDraft
    enrolled_at: datetime
    status: str = "active"


@dataclass
class Tables:
    ratings: dict[str, RatingRow] = field(default_factory=dict)
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    erased: set[str] = field(default_factory=set)  # ids of erased customers (the tombstones' hashes)
    decisions: dict[str, DecisionRow] = field(default_factory=dict)
    alerts: dict[str, AlertRow] = field(default_factory=dict)
    timers: dict[str, TimerRow] = field(default_factory=dict)
    enrolments: dict[Enrolled, EnrolmentRow] = field(default_factory=dict)
    rule_sets: dict[int, StoredRuleSet] = field(default_factory=dict)
    survey_sets: dict[int, StoredRuleSet] = field(default_factory=dict)
    invitations: dict[str, StoredInvitation] = field(default_factory=dict)
    next_at: dict[str, datetime | None] = field(default_factory=dict)
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    members: set[tuple[str, str]] = field(default_factory=set)
    observations: dict[str, UsageObserved] = field(default_factory=dict)
    health_ratings: dict[str, RatingPoint] = field(default_factory=dict)
    health_current: dict[Subject, dict[str, Any]] = field(default_factory=dict)
    health_history: dict[Subject, list[HealthPoint]] = field(default_factory=dict)
    health_models: dict[int, dict[str, Any]] = field(default_factory=dict)


def _context(customer_id: str, row: Mapping[str, Any]) -> CustomerContext:
    return CustomerContext(
        customer_id=customer_id,
        email=row.get("email"),
        phone=row.get("phone"),
        locale=row.get("locale"),
        timezone=row.get("timezone"),
        tier=row.get("tier"),
        value=row.get("value"),
        owner_email=row.get("owner_email"),
        owner_name=row.get("owner_name"),
        opted_out=bool(row.get("opted_out")),
        attributes=row.get("attributes") or {},
        consent=row.get("consent") or {},
    )


class FakeRatings:
    def __init__(self, t: Tables) -> None:
        self._t = t

    async def insert_new(
        self, *, ratings: Sequence[RatingSubmitted], analyses: Mapping[str, Analysis]
    ) -> set[str]:
        fresh: set[str] = set()
        for r in ratings:
            if r.rating_id in self._t.ratings:
                continue
            found = analyses.get(r.rating_id)
            self._t.ratings[r.rating_id] = RatingRow(
                rating_id=r.rating_id,
                customer_id=r.customer.id,
                occurred_at=r.occurred_at,
                normalized=r.normalized,
                sentiment=r.sentiment.value,
                has_comment=bool(r.comment and r.comment.strip()),
                survey_id=r.survey_id,
                themes=list(found.themes) if found else [],
                comment_sentiment=found.sentiment if found and r.comment else None,
                customer_verified=r.customer_verified,
                metric=r.metric.value,
                scale=r.scale,
                score=r.score,
                revision=r.revision,
            )
            fresh.add(r.rating_id)
        return fresh

    async def revise(
        self, *, ratings: Sequence[RatingSubmitted], analyses: Mapping[str, Analysis]
    ) -> set[str]:
        done: set[str] = set()
        for r in ratings:
            row = self._t.ratings.get(r.rating_id)
            if row is None or row.revision >= r.revision:
                continue
            found = analyses.get(r.rating_id)
            row.normalized, row.sentiment, row.score = r.normalized, r.sentiment.value, r.score
            row.has_comment = bool(r.comment and r.comment.strip())
            row.themes = list(found.themes) if found else []
            row.comment_sentiment = found.sentiment if found and r.comment else None
            row.revision = r.revision
            done.add(r.rating_id)
        return done

    async def batch_facts(
        self,
        *,
        customer_ids: Sequence[str],
        since: datetime,
        per_customer: int,
        now: datetime,
        commented_customers: Sequence[str],
        survey_ids: Sequence[str],
    ) -> BatchFacts:
        for timer in self._t.timers.values():
            answered = timer.customer_id in commented_customers or timer.ref in survey_ids
            if timer.kind == "resurvey_no_answer" and timer.status == "pending" and answered:
                timer.status, timer.outcome, timer.fired_at = "cancelled", "answered", now
        ids = sorted(set(customer_ids))
        return BatchFacts(
            rules_version=max(self._t.rule_sets, default=None),
            contexts={c: _context(c, self._t.customers[c]) for c in ids if c in self._t.customers},
            past={c: p for c in ids if (p := self._past(c, since=since, limit=per_customer))},
            fatigue={c: self._fatigue(c, now=now) for c in ids},
        )

    async def customer_facts(
        self, *, customer_id: str, since: datetime, per_customer: int, now: datetime
    ) -> CustomerFacts:
        row = self._t.customers.get(customer_id)
        return CustomerFacts(
            rules_version=max(self._t.rule_sets, default=None),
            context=_context(customer_id, row) if row is not None else None,
            past=self._past(customer_id, since=since, limit=per_customer),
            fatigue=self._fatigue(customer_id, now=now),
        )

    async def stored(self, *, limit: int, rating_id: str | None = None) -> list[StoredRating]:
        rows = [r for r in self._t.ratings.values() if rating_id is None or r.rating_id == rating_id]
        rows.sort(key=lambda r: (r.occurred_at, r.rating_id), reverse=True)
        return [
            StoredRating(
                rating_id=r.rating_id,
                customer_id=r.customer_id,
                metric=r.metric,
                scale=r.scale,
                score=r.score,
                sentiment=r.sentiment,
                occurred_at=r.occurred_at,
                has_comment=r.has_comment,
                survey_id=r.survey_id,
                themes=tuple(r.themes),
                comment_sentiment=r.comment_sentiment,
            )
            for r in rows[:limit]
        ]

    def _past(self, customer_id: str, *, since: datetime, limit: int) -> list[PastRating]:
        rows = [
            r
            for r in self._t.ratings.values()
            if r.customer_id == customer_id and r.occurred_at >= since and r.customer_verified
        ]
        rows.sort(key=lambda r: (r.occurred_at, r.rating_id), reverse=True)
        return [PastRating(r.rating_id, r.occurred_at, r.normalized, r.sentiment) for r in rows[:limit]]

    def _fatigue(self, customer_id: str, *, now: datetime) -> Fatigue:
        mine = [d for d in self._t.decisions.values() if d.customer_id == customer_id]
        last: dict[str, datetime] = {}
        for d in mine:
            if d.notification_id is not None or d.outcome == "scheduled":
                last[d.rule_id] = max(last.get(d.rule_id, d.created_at), d.created_at)
        day_ago = now - timedelta(hours=24)
        sent = sum(1 for d in mine if d.customer_facing and d.notification_id and d.created_at > day_ago)
        active = frozenset(
            key.sequence
            for key, e in self._t.enrolments.items()
            if key.customer_id == customer_id and e.status == "active" and e.draft.ends_at >= now
        )
        return Fatigue(last_fired=last, sent_24h=sent, active_sequences=active)


class FakeDecisions:
    def __init__(self, t: Tables) -> None:
        self._t = t

    async def existing(self, *, ids: Sequence[str]) -> set[str]:
        return {i for i in ids if i in self._t.decisions}

    async def insert(self, *, rows: Sequence[DecisionRow]) -> None:
        for row in rows:
            self._t.decisions.setdefault(row.decision_id, row)

    async def insert_outcomes(
        self,
        *,
        decisions: Sequence[DecisionRow],
        alerts: Sequence[AlertDraft],
        timers: Sequence[TimerDraft],
        now: datetime,
    ) -> None:
        await self.insert(rows=decisions)
        for a in alerts:
            self._t.alerts.setdefault(a.alert_id, AlertRow(draft=a, created_at=now))
        await FakeTimers(self._t).insert(timers=timers, now=now)

    async def sent_last_24h(self, *, customer_ids: Sequence[str], now: datetime) -> dict[str, int]:
        counts: dict[str, int] = {}
        for d in self._t.decisions.values():
            cid, recent = d.customer_id, d.created_at > now - timedelta(hours=24)
            if cid is not None and cid in customer_ids and d.customer_facing and d.notification_id and recent:
                counts[cid] = counts.get(cid, 0) + 1
        return counts

    async def recent(self, *, customer_id: str | None, limit: int) -> list[dict[str, Any]]:
        rows = [d for d in self._t.decisions.values() if customer_id in (None, d.customer_id)]
        rows.sort(key=lambda d: d.decision_id)
        rows.sort(key=lambda d: d.created_at, reverse=True)
        return [{**d.__dict__, "created_at": d.created_at.isoformat()} for d in rows[:limit]]


class FakeCustomers:
    def __init__(self, t: Tables) -> None:
        self._t = t

    async def contexts(self, *, customer_ids: Sequence[str]) -> dict[str, CustomerContext]:
        return {c: _context(c, self._t.customers[c]) for c in customer_ids if c in self._t.customers}

    async def erased(self, *, customer_ids: Sequence[str]) -> set[str]:
        return {c for c in customer_ids if c in self._t.erased}

    async def upsert(self, *, customer_id: str, fields: dict[str, Any]) -> None:
        self._t.customers[customer_id] = {**fields, "updated_at": datetime.now(UTC)}

    async def get(self, *, customer_id: str) -> dict[str, Any] | None:
        row = self._t.customers.get(customer_id)
        if row is None:
            return None
        return {"customer_id": customer_id, **row, "updated_at": row["updated_at"].isoformat()}


class FakeEnrolments:
    def __init__(self, t: Tables) -> None:
        self._t = t

    async def enrol(self, *, enrolments: Sequence[EnrolmentDraft], now: datetime) -> None:
        for e in enrolments:
            key = Enrolled(e.customer_id, e.sequence)
            old = self._t.enrolments.get(key)
            if old is None or old.status != "active" or old.draft.ends_at < now:
                self._t.enrolments[key] = EnrolmentRow(draft=e, enrolled_at=now)

    async def statuses(self, *, customer_ids: Sequence[str]) -> dict[Enrolled, str]:
        return {k: e.status for k, e in self._t.enrolments.items() if k.customer_id in customer_ids}

    async def complete(self, *, enrolled: Sequence[Enrolled]) -> None:
        for key in enrolled:
            row = self._t.enrolments.get(key)
            if row is not None and row.status == "active":
                row.status = "completed"

    async def stop_all(self, *, customer_id: str) -> None:
        for key, row in self._t.enrolments.items():
            if key.customer_id == customer_id and row.status == "active":
                row.status = "stopped"


class FakeAlerts:
    def __init__(self, t: Tables) -> None:
        self._t = t

    async def lock(self, *, alert_ids: Sequence[str]) -> dict[str, AlertState]:
        out: dict[str, AlertState] = {}
        for alert_id in alert_ids:
            row = self._t.alerts.get(alert_id)
            if row is None:
                continue
            d = row.draft
            out[alert_id] = AlertState(
                alert_id=d.alert_id,
                rule_id=d.rule_id,
                status=row.status,
                owner_email=d.owner_email,
                owner_name=d.owner_name,
                priority=d.priority,
                due_at=d.due_at,
                rating_id=d.rating_id,
                customer_id=d.customer_id,
                context=d.context,
            )
        return out

    async def mark_escalated(self, *, alert_ids: Sequence[str], now: datetime) -> None:
        for alert_id in alert_ids:
            self._t.alerts[alert_id].escalated_at = now

    async def search(
        self,
        *,
        status: str | None,
        owner: str | None,
        customer_id: str | None,
        limit: int,
        reach: Reach | None = None,
    ) -> list[dict[str, Any]]:
        rows = [
            a
            for a in self._t.alerts.values()
            if status in (None, a.status)
            and (owner is None or a.draft.owner_email.lower() == owner.lower())
            and customer_id in (None, a.draft.customer_id)
            and (reach is None or _within(reach, a.draft.owner_email, a.draft.context))
        ]
        rows.sort(key=lambda a: a.draft.alert_id)
        rows.sort(key=lambda a: a.created_at, reverse=True)
        return [a.as_json() for a in rows[:limit]]

    async def page(self, *, query: PageQuery, reach: Reach | None, now: datetime) -> AlertPage:
        rows = [
            a.as_json()
            for a in self._t.alerts.values()
            if (not query.statuses or a.status in query.statuses)
            and (query.owner is None or a.draft.owner_email.lower() == query.owner.lower())
            and query.customer_id in (None, a.draft.customer_id)
            and query.priority in (None, a.draft.priority)
            and (query.escalated is None or (a.escalated_at is not None) == query.escalated)
            and (reach is None or _within(reach, a.draft.owner_email, a.draft.context))
        ]
        return alertpages.page_of(query, rows, now=now)

    async def get(self, *, alert_id: str) -> dict[str, Any] | None:
        row = self._t.alerts.get(alert_id)
        return row.as_json() if row else None

    async def transition(
        self, *, alert_id: str, to: str, by: str | None, note: str | None, now: datetime
    ) -> AlertTransition:
        row = self._t.alerts.get(alert_id)
        if row is None:
            return AlertTransition(None, "not_found")
        if to == "acknowledged":
            if row.status == "resolved":
                return AlertTransition(row.as_json(), "already resolved")
            if row.status == "open":
                row.status, row.acknowledged_at, row.acknowledged_by = "acknowledged", now, by
                row.note = note or row.note
        elif row.status != "resolved":
            row.status, row.resolved_at, row.resolved_by = "resolved", now, by
            row.acknowledged_at = row.acknowledged_at or now
            row.acknowledged_by = row.acknowledged_by or by
            row.note = note or row.note
        for timer in self._t.timers.values():
            if timer.kind == "sla_escalation" and timer.ref == alert_id and timer.status == "pending":
                timer.status, timer.outcome, timer.fired_at = "cancelled", to, now
        return AlertTransition(row.as_json(), None)

    async def assign(
        self, *, alert_id: str, owner_email: str, owner_name: str | None, by: str | None, now: datetime
    ) -> AlertTransition:
        row = self._t.alerts.get(alert_id)
        if row is None:
            return AlertTransition(None, "not_found")
        if row.status == "resolved":
            return AlertTransition(row.as_json(), "already resolved")
        assigned = {"by": by, "at": now.isoformat(), "from": row.draft.owner_email}
        context = {**row.draft.context, "assigned": assigned}
        row.draft = replace(row.draft, owner_email=owner_email, owner_name=owner_name, context=context)
        return AlertTransition(row.as_json(), None)


class FakeTimers:
    def __init__(self, t: Tables) -> None:
        self._t = t

    async def claim_due(self, *, now: datetime, limit: int) -> list[DueTimer]:
        due = [t for t in self._t.timers.values() if t.status == "pending" and t.due_at <= now]
        due.sort(key=lambda t: (t.due_at, t.timer_id))
        return [DueTimer(t.timer_id, t.kind, t.ref, t.customer_id, t.due_at, t.payload) for t in due[:limit]]

    async def mark_fired(self, *, outcomes: Mapping[str, str], now: datetime) -> None:
        for timer_id, outcome in outcomes.items():
            row = self._t.timers[timer_id]
            row.status, row.outcome, row.fired_at = "fired", outcome, now

    async def insert(self, *, timers: Sequence[TimerDraft], now: datetime) -> None:
        for t in timers:
            # The payload goes through JSON in PostgreSQL; a copy keeps the caller's dict apart.
            payload = copy.deepcopy(t.payload)
            row = TimerRow(t.timer_id, t.kind, t.ref, t.customer_id, t.due_at, payload, created_at=now)
            self._t.timers.setdefault(t.timer_id, row)

    async def resurvey_answered(self, *, timer: DueTimer) -> bool:
        row = self._t.timers[timer.timer_id]
        return any(
            r.customer_id == row.customer_id
            and r.customer_verified
            and r.rating_id != (row.payload.get("rating_id") or "")
            and (r.survey_id == row.ref or (r.has_comment and r.occurred_at >= row.created_at))
            for r in self._t.ratings.values()
        )

    async def search(
        self, *, customer_id: str | None, status: str | None, limit: int
    ) -> list[dict[str, Any]]:
        rows = [
            t
            for t in self._t.timers.values()
            if customer_id in (None, t.customer_id) and status in (None, t.status)
        ]
        rows.sort(key=lambda t: (t.due_at, t.timer_id))
        return [
            {
                k: v.isoformat() if isinstance(v, datetime) else v
                for k, v in t.__dict__.items()
                if k != "payload"
            }
            for t in rows[:limit]
        ]


class FakeRuleSets:
    def __init__(self, t: Tables, *, table: str = "rule_sets") -> None:
        self._t = t
        self._table = table

    @property
    def _items(self) -> str:
        return "surveys" if self._table == "survey_sets" else "rules"

    @property
    def _sets(self) -> dict[int, StoredRuleSet]:
        sets: dict[int, StoredRuleSet] = getattr(self._t, self._table)
        return sets

    async def latest_version(self) -> int | None:
        return max(self._sets, default=None)

    async def load(self, *, version: int | None = None) -> StoredRuleSet | None:
        chosen = version if version is not None else max(self._sets, default=None)
        return self._sets.get(chosen) if chosen is not None else None

    async def lock(self) -> None:
        return None

    async def insert(self, *, version: int, document: Any, origin: str, author: str | None = None) -> bool:
        if version in self._sets:
            return False
        stored = StoredRuleSet(version, copy.deepcopy(document), origin, datetime.now(UTC), author)
        self._sets[version] = stored
        return True

    async def versions(self, *, limit: int) -> list[dict[str, Any]]:
        newest = sorted(self._sets.values(), key=lambda r: -r.version)[:limit]
        return [
            {
                "version": r.version,
                "origin": r.origin,
                "author": r.author,
                "created_at": r.created_at.isoformat() if r.created_at else None,
                self._items: len(r.document[self._items]),
            }
            for r in newest
        ]


def _marked(row: StoredInvitation, *, before: str, answered: bool) -> MarkedInvitation:
    return MarkedInvitation(
        invitation_id=row.invitation_id,
        survey_id=row.survey_id,
        customer_id=row.customer_id,
        channel=row.channel,
        segment=dict(row.segment),
        delivery=Delivery(row.delivery),
        delivery_before=Delivery(before),
        sent_at=row.sent_at,
        answered=answered,
        answered_at=row.answered_at,
        answered_with_comment=row.answered_with_comment,
    )


class FakeSurveys:
    """Survey invitations in memory; ``next_at`` kept beside each row, as the table's column."""

    def __init__(self, t: Tables) -> None:
        self._t = t

    async def history(
        self, *, customer_ids: Sequence[str], since: datetime
    ) -> dict[str, list[PastInvitation]]:
        out: dict[str, list[PastInvitation]] = {}
        for row in sorted(self._t.invitations.values(), key=lambda r: r.due_at):
            if row.customer_id in customer_ids and row.due_at >= since:
                out.setdefault(row.customer_id, []).append(
                    PastInvitation(row.invitation_id, row.survey_id, row.due_at)
                )
        return out

    async def insert(self, *, invitations: Sequence[NewInvitation]) -> set[str]:
        added = set()
        for i in invitations:
            if i.invitation_id in self._t.invitations:
                continue
            self._t.invitations[i.invitation_id] = StoredInvitation(
                **{f.name: getattr(i, f.name) for f in dataclass_fields(NewInvitation)},
                status="scheduled",
                delivery="pending",
            )
            self._t.next_at[i.invitation_id] = i.due_at
            added.add(i.invitation_id)
        return added

    async def claim_due(self, *, now: datetime, limit: int) -> list[StoredInvitation]:
        due = [(at, k) for k, at in self._t.next_at.items() if at is not None and at <= now]
        return [self._t.invitations[k] for _, k in sorted(due)[:limit]]

    async def update(self, *, updates: Sequence[InvitationUpdate], now: datetime) -> None:
        for u in updates:
            row = self._t.invitations[u.invitation_id]
            self._t.invitations[u.invitation_id] = replace(
                row,
                status=u.status,
                requested_at=u.requested_at or row.requested_at,
                reminders_sent=row.reminders_sent + (1 if u.reminded else 0),
                stop_reason=u.stop_reason or row.stop_reason,
            )
            self._t.next_at[u.invitation_id] = u.next_at

    async def mark_answered(self, *, answers: Mapping[str, tuple[datetime, bool]]) -> list[MarkedInvitation]:
        marked = []
        for key, (at, comment) in answers.items():
            row = self._t.invitations.get(key)
            if row is None or row.answered_at is not None:
                continue
            self._t.invitations[key] = replace(
                row,
                answered_at=at,
                answered_with_comment=comment,
                sent_at=row.sent_at or row.requested_at,
                delivery="sent" if row.delivery in ("pending", "unknown") else row.delivery,
            )
            marked.append(_marked(self._t.invitations[key], before=row.delivery, answered=True))
        return marked

    async def mark_delivery(self, *, outcomes: Mapping[str, tuple[str, datetime]]) -> list[MarkedInvitation]:
        marked = []
        for key, (delivery, at) in outcomes.items():
            row = self._t.invitations.get(key)
            if row is None or row.delivery not in ("pending", "unknown"):
                continue
            sent_at = (row.sent_at or at) if delivery == "sent" else row.sent_at
            self._t.invitations[key] = replace(row, delivery=delivery, sent_at=sent_at)
            marked.append(_marked(self._t.invitations[key], before=row.delivery, answered=False))
        return marked

    async def list(self, *, survey_id: str | None, since: datetime | None) -> list[StoredInvitation]:
        return [
            r
            for r in self._t.invitations.values()
            if (survey_id is None or r.survey_id == survey_id) and (since is None or r.due_at >= since)
        ]


class FakeHealth:
    """Accounts, the health model's inputs and the health computed, in memory."""

    def __init__(self, t: Tables) -> None:
        self._t = t

    async def add_observations(self, *, observations: Sequence[UsageObserved]) -> list[UsageObserved]:
        fresh: dict[str, UsageObserved] = {}
        for o in observations:
            if o.observation_id not in self._t.observations:
                self._t.observations[o.observation_id] = fresh[o.observation_id] = o
        return list(fresh.values())

    async def add_ratings(self, *, ratings: Sequence[RatingSubmitted]) -> list[RatingSubmitted]:
        fresh: dict[str, RatingSubmitted] = {}
        for r in ratings:
            if r.rating_id not in self._t.health_ratings:
                self._t.health_ratings[r.rating_id] = RatingPoint.of(r)
                fresh[r.rating_id] = r
        self._t.members.update(
            (r.account.id, r.customer.id) for r in fresh.values() if r.account is not None and r.account.id
        )
        return list(fresh.values())

    async def join(self, *, members: Sequence[tuple[str, str]]) -> None:
        self._t.members.update(members)

    async def accounts_of(self, *, customer_ids: Sequence[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for a, c in sorted(self._t.members):
            if c in customer_ids:
                out.setdefault(c, []).append(a)
        return out

    def _contacts(self, subject: Subject) -> set[str]:
        if subject.kind == "customer":
            return {subject.id}
        return {c for a, c in self._t.members if a == subject.id}

    def _evidence(self, subject: Subject) -> Evidence:
        contacts = self._contacts(subject)
        ratings = tuple(
            sorted(
                (r for r in self._t.health_ratings.values() if r.customer_id in contacts),
                key=lambda r: (r.occurred_at, r.rating_id),
            )
        )
        observations = tuple(
            Observation.of(o)
            for o in sorted(self._t.observations.values(), key=lambda o: (o.observed_at, o.observation_id))
            if o.customer_id in contacts
            or (subject.kind == "account" and o.account_id == subject.id and o.customer_id is None)
        )
        alerts = sum(
            1
            for a in self._t.alerts.values()
            if a.draft.customer_id in contacts
            and a.status != "resolved"
            and a.draft.rule_id != "health_falls"
        )
        return Evidence(ratings, observations, alerts)

    async def evidence(self, *, subjects: Sequence[Subject]) -> dict[Subject, Evidence]:
        return {s: self._evidence(s) for s in subjects}

    async def states(
        self, *, subjects: Sequence[Subject]
    ) -> dict[Subject, tuple[HealthState | None, list[HealthPoint]]]:
        out: dict[Subject, tuple[HealthState | None, list[HealthPoint]]] = {}
        for subject in subjects:
            row = self._t.health_current.get(subject)
            out[subject] = (row["state"] if row else None, list(self._t.health_history.get(subject, [])))
        return out

    async def inputs(
        self, *, subjects: Sequence[Subject], customers: Sequence[str] = (), known_version: int | None
    ) -> HealthInputs:
        latest = await self.latest_model()
        model = None if latest is None else (latest[0], None if latest[0] == known_version else latest[1])
        accounts = await self.accounts_of(customer_ids=customers)
        found = sorted(
            {Subject("account", a) for c in customers for a in accounts.get(c, [])}
            | {Subject("customer", c) for c in customers if not accounts.get(c)},
            key=lambda s: (s.kind, s.id),
        )
        evidence = await self.evidence(subjects=list(dict.fromkeys([*subjects, *found])))
        moved = [s for s, e in evidence.items() if e.ratings or e.observations]
        stored = await self.accounts(account_ids=[s.id for s in moved if s.kind == "account"])
        return HealthInputs(
            model=model,
            evidence=evidence,
            states=await self.states(subjects=moved),
            owners={a: (row.get("owner_email"), row.get("owner_name")) for a, row in stored.items()},
        )

    async def save(self, *, saves: Sequence[HealthSave]) -> None:
        for x in saves:
            self._t.health_current[x.subject] = {
                "state": x.state,
                "delta_30d": x.delta_30d,
                "model_version": x.model_version,
                "explanation": x.explanation,
            }
            if (point := x.point) is not None:
                history = [p for p in self._t.health_history.get(x.subject, []) if p.at != point.at]
                self._t.health_history[x.subject] = sorted([*history, point], key=lambda p: p.at)

    async def account(self, *, account_id: str) -> dict[str, Any] | None:
        row = self._t.accounts.get(account_id)
        return {"account_id": account_id, **row} if row is not None else None

    async def accounts(self, *, account_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        return {a: {"account_id": a, **self._t.accounts[a]} for a in account_ids if a in self._t.accounts}

    async def upsert_account(self, *, account_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        self._t.accounts[account_id] = dict(fields)
        return {"account_id": account_id, **fields}

    async def open_alert(self, *, alert: HealthAlert, now: datetime) -> bool:
        if alert.alert_id in self._t.alerts:
            return False
        draft = AlertDraft(
            alert_id=alert.alert_id,
            rule_id="health_falls",
            rating_id=None,
            customer_id=alert.subject.id if alert.subject.kind == "customer" else None,
            owner_email=alert.owner_email,
            owner_name=alert.owner_name,
            priority=alert.priority,
            due_at=None,
            context=alert.context,
        )
        self._t.alerts[alert.alert_id] = AlertRow(draft=draft, created_at=now)
        return True

    async def open_alerts(self, *, alerts: Sequence[HealthAlert], now: datetime) -> set[str]:
        return {a.alert_id for a in alerts if await self.open_alert(alert=a, now=now)}

    async def owner_of(self, *, subject: Subject) -> str | None:
        table = self._t.accounts if subject.kind == "account" else self._t.customers
        owner = table.get(subject.id, {}).get("owner_email")
        return str(owner) if owner else None

    async def at_risk(
        self, *, owner: str | None, limit: int, reach: Reach | None = None
    ) -> list[dict[str, Any]]:
        rows = []
        for subject, row in self._t.health_current.items():
            state: HealthState = row["state"]
            if state.band is None or state.band.value not in ("at_risk", "critical") or state.score is None:
                continue
            ctx = (
                self._t.accounts.get(subject.id, {})
                if subject.kind == "account"
                else self._t.customers.get(subject.id, {})
            )
            if owner is not None and (ctx.get("owner_email") or "").lower() != owner.lower():
                continue
            if reach is not None:
                mine = (ctx.get("owner_email") or "").lower() == (reach.owner_email or "").lower() != ""
                if not mine and not (subject.kind == "account" and subject.id in reach.accounts):
                    continue
            value = ctx.get("value")
            rows.append(
                {
                    "subject_kind": subject.kind,
                    "subject_id": subject.id,
                    "score": state.score,
                    "band": state.band.value,
                    "value": value,
                    "owner_email": ctx.get("owner_email"),
                    "priority": (value if value is not None else 1) * (100 - state.score),
                }
            )
        rows.sort(key=lambda r: (-float(r["priority"] or 0), float(r["score"] or 0), str(r["subject_id"])))
        return rows[:limit]

    async def health(self, *, subject: Subject) -> dict[str, Any] | None:
        row = self._t.health_current.get(subject)
        if row is None:
            return None
        state: HealthState = row["state"]
        return {
            "subject_kind": subject.kind,
            "subject_id": subject.id,
            "at": state.at.isoformat(),
            "score": state.score,
            "band": state.band.value if state.band else None,
            "transitions": state.transitions,
            "delta_30d": row["delta_30d"],
            "explanation": row["explanation"],
            "history": [
                {"at": p.at.isoformat(), "score": p.score, "band": p.band.value if p.band else None}
                for p in self._t.health_history.get(subject, [])
            ],
        }

    async def rule_facts(self, *, subjects: Sequence[Subject]) -> dict[Subject, dict[str, Any]]:
        out: dict[Subject, dict[str, Any]] = {}
        for subject in subjects:
            row = self._t.health_current.get(subject)
            if row is None:
                continue
            state: HealthState = row["state"]
            before = [p.band for p in self._t.health_history.get(subject, []) if p.band != state.band]
            out[subject] = {
                "score": state.score,
                "band": state.band.value if state.band else None,
                "previous_band": before[-1].value if before and before[-1] else None,
                "delta_30d": row["delta_30d"],
            }
        return out

    async def latest_model(self) -> tuple[int, Any] | None:
        if not self._t.health_models:
            return None
        version = max(self._t.health_models)
        return version, self._t.health_models[version]["document"]

    async def save_model(self, *, document: Any, origin: str, author: str | None) -> int:
        version = max(self._t.health_models, default=0) + 1
        self._t.health_models[version] = {
            "document": copy.deepcopy(document),
            "origin": origin,
            "author": author,
            "created_at": datetime.now(UTC).isoformat(),
        }
        return version

    async def models(self, *, limit: int) -> list[dict[str, Any]]:
        return [
            {"version": v, **{k: r[k] for k in ("origin", "author", "created_at")}}
            for v, r in sorted(self._t.health_models.items(), reverse=True)
        ][:limit]


class MemoryActions:
    """The actions database in memory; ``begin`` rolls back what its block wrote when the block raises."""

    def __init__(self) -> None:
        self.tables = Tables()

    def stores(self) -> Stores:
        t = self.tables
        return Stores(
            ratings=FakeRatings(t),
            decisions=FakeDecisions(t),
            customers=FakeCustomers(t),
            enrolments=FakeEnrolments(t),
            alerts=FakeAlerts(t),
            timers=FakeTimers(t),
            rule_sets=FakeRuleSets(t),
            survey_sets=FakeRuleSets(t, table="survey_sets"),
            surveys=FakeSurveys(t),
            health=FakeHealth(t),
        )

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[Stores]:
        before = copy.deepcopy(self.tables)
        try:
            yield self.stores()
        except BaseException:
            self.tables.__dict__.update(before.__dict__)
            raise

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Stores]:
        yield self.stores()

    @asynccontextmanager
    async def read_only(self) -> AsyncIterator[Stores]:
        """Any write inside fails the block (as PostgreSQL's READ ONLY transaction refuses it)."""
        before = copy.deepcopy(self.tables)
        yield self.stores()
        if self.tables != before:
            raise AssertionError("a read-only transaction wrote")


def _within(reach: Reach, owner_email: str | None, context: Mapping[str, Any]) -> bool:
    """What the SQL of ``PgAlerts.search`` keeps for a CSM: their address, or one of their accounts."""
    customer = context.get("customer") if isinstance(context, Mapping) else None
    account = customer.get("account_id") if isinstance(customer, Mapping) else None
    mine = bool(owner_email and reach.owner_email and owner_email.lower() == reach.owner_email.lower())
    return mine or (account is not None and account in reach.accounts)
