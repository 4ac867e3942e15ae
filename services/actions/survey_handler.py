"""The surveys' use cases on the stores: interactions in -> invitations decided and stored; due invitations
-> notification requests (the invitation, its one reminder); answers and the notifier's outcomes -> the
invitation's state and its outcome events (``surveys.outcome_events``). The decisions are the pure
``surveys.decisions``'; the caller owns the transaction.

Sending is always the scheduler's, also with ``delay: 0``: the invitation row is the durable timer, so a
crash between deciding and sending loses nothing and a replayed interaction finds its row (same id).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import Counter

from services.actions.facts import CustomerContext
from services.actions.ports import InvitationUpdate, NewInvitation, StoredInvitation, Stores
from services.actions.publishing import notification_record, survey_outcome_record
from services.actions.surveybook import CurrentSurveys, SurveyBook
from services.actions.surveys.decisions import (
    CustomerFacts,
    Delivery,
    Go,
    InvitationState,
    Invite,
    PastInvitation,
    Skip,
    decide_invitations,
    decide_reminder,
    decide_send,
)
from services.actions.surveys.definitions import SurveyChannel, SurveyDef
from services.actions.surveys.outcome_events import all_outcome_events
from shared import events as ev
from shared.emaillinks import sign_claims
from shared.envelope import OutgoingRecord, encode
from shared.events import InteractionRecorded, NotificationOutcome, OutcomeStatus, RatingSubmitted
from shared.topics import Topics
from shared.vocabulary import SURVEY_TEMPLATE

SURVEY_DECISIONS = Counter(
    "csat_survey_decisions_total",
    "Survey decisions on interactions, by survey and outcome",
    ["survey", "outcome"],
)
SURVEY_MESSAGES = Counter(
    "csat_survey_messages_total",
    "Due survey invitations and reminders, by kind and outcome (requested or the stop reason)",
    ["kind", "outcome"],
)
SURVEY_OUTCOMES = Counter(
    "csat_survey_outcomes_total",
    "Survey invitation outcome events published (sent, failed, suppressed, answered)",
    ["outcome"],
)

INVITE_PREFIX = "survey-invite-"
REMINDER_PREFIX = "survey-reminder-"
#: A reminder waits for the invitation's outcome this long at a time (the notifier may be slow).
OUTCOME_WAIT = timedelta(seconds=30)

_DELIVERY = {
    OutcomeStatus.SENT: Delivery.SENT,
    OutcomeStatus.FAILED: Delivery.FAILED,
    OutcomeStatus.SUPPRESSED: Delivery.SUPPRESSED,
    OutcomeStatus.UNKNOWN: Delivery.UNKNOWN,
}


@dataclass(frozen=True, slots=True)
class LinkMaker:
    """The collector's one-click link for an invitation: its signed token carries the invitation id as
    the survey id, so every answer to it shares one rating id and names the invitation."""

    base_url: str
    secret: str

    def url(self, row: StoredInvitation, survey: SurveyDef) -> str:
        claims: dict[str, Any] = {
            "s": row.invitation_id,
            "c": row.customer_id,
            "m": survey.metric.value,
            "k": survey.scale,
            "x": int(row.expires_at.timestamp()),
            "l": row.locale,
            "t": row.channel,
            "q": survey.question.get(row.locale) or next(iter(survey.question.values())),
            # The survey's re-click window travels with the link, like its scale: the collector holds
            # no survey definitions.
            "w": int(survey.reclick_window.total_seconds()),
        }
        if row.segment:
            claims["g"] = dict(row.segment)
        return f"{self.base_url.rstrip('/')}/v1/email/{sign_claims(self.secret, claims)}"


def facts_of(ctx: CustomerContext | None, *, erased: bool = False) -> CustomerFacts | None:
    """The stored context as survey facts; ``erased``: the customer's erasure tombstone exists."""
    if ctx is None:
        return CustomerFacts(erased=True) if erased else None
    consent = ctx.consent or {}
    return CustomerFacts(
        email=ctx.email,
        phone=ctx.phone,
        locale=ctx.locale,
        timezone=ctx.timezone,
        opted_out=ctx.opted_out,
        erased=erased,
        consent_contact=consent.get("contact"),
    )


class SurveyHandler:
    def __init__(
        self,
        *,
        book: SurveyBook,
        topics: Topics,
        links: LinkMaker,
        brand: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._book = book
        self._topics = topics
        self._links = links
        self._brand = brand
        self._clock = clock

    # ---- interactions -> invitations ------------------------------------------------------------
    async def on_interactions(
        self, stores: Stores, interactions: Sequence[InteractionRecorded], now: datetime
    ) -> int:
        """Decide every interaction in order (a customer's earlier invitation throttles the next one);
        returns how many invitations were stored for the first time."""
        current = await self._book.current(survey_sets=stores.survey_sets)
        following = [
            i for i in interactions if any(s.enabled and s.follows(i.type) for s in current.surveys.surveys)
        ]
        if not following:
            return 0
        cids = list(dict.fromkeys(i.customer.id for i in following))
        contexts = await stores.customers.contexts(customer_ids=cids)
        erased = await stores.customers.erased(customer_ids=cids)
        longest = max((s.recontact_days for s in current.surveys.surveys), default=0)
        history = await stores.surveys.history(customer_ids=cids, since=now - timedelta(days=longest))
        new: list[NewInvitation] = []
        for interaction in following:
            cid = interaction.customer.id
            ctx = contexts.get(cid)
            decisions = decide_invitations(
                interaction=interaction,
                surveys=current.surveys,
                history=history.get(cid, []),
                customer=facts_of(ctx, erased=cid in erased),
                now=now,
            )
            for d in decisions:
                if isinstance(d, Skip):
                    SURVEY_DECISIONS.labels(d.survey_id, d.reason.value).inc()
                    continue
                SURVEY_DECISIONS.labels(d.survey_id, "invited").inc()
                new.append(_new_invitation(d, interaction, ctx))
            history[cid] = [
                *history.get(cid, []),
                *(_past(d) for d in decisions if isinstance(d, Invite)),
            ]
        return len(await stores.surveys.insert(invitations=new))

    # ---- answers and outcomes ------------------------------------------------------------------
    async def on_answers(
        self, stores: Stores, ratings: Sequence[RatingSubmitted], now: datetime
    ) -> list[OutgoingRecord]:
        """A rating whose survey id is an invitation's answers it (the first answer counts); the outcome
        events of the invitations it answered (``sent`` first when the answer proves the sending)."""
        answers: dict[str, tuple[datetime, bool]] = {}
        for r in ratings:
            if r.survey_id and r.survey_id not in answers:
                answers[r.survey_id] = (r.received_at, bool(r.comment))
        if not answers:
            return []
        marked = await stores.surveys.mark_answered(answers=answers)
        return self._outcome_records(all_outcome_events(marked, default_at=now))

    async def on_outcomes(
        self, stores: Stores, outcomes: Sequence[NotificationOutcome], now: datetime
    ) -> list[OutgoingRecord]:
        """The invitation message's outcome (not the reminder's): a reminder needs it delivered. Returns
        the outcome events of the invitations whose delivery it changed."""
        found: dict[str, tuple[str, datetime]] = {}
        reasons: dict[str, str | None] = {}
        for o in outcomes:
            delivery = _DELIVERY.get(o.status)
            if delivery is not None and o.notification_id.startswith(INVITE_PREFIX):
                iid = o.notification_id.removeprefix(INVITE_PREFIX)
                found[iid] = (delivery.value, o.at)
                reasons[iid] = o.reason
        if not found:
            return []
        marked = await stores.surveys.mark_delivery(outcomes=found)
        at = {iid: when for iid, (_, when) in found.items()}
        return self._outcome_records(all_outcome_events(marked, at=at, reasons=reasons, default_at=now))

    def _outcome_records(self, outcomes: Sequence[ev.SurveyOutcome]) -> list[OutgoingRecord]:
        for o in outcomes:
            SURVEY_OUTCOMES.labels(o.outcome.value).inc()
        return [survey_outcome_record(self._topics, o) for o in outcomes]

    # ---- due invitations -> messages -----------------------------------------------------------
    async def fire(self, stores: Stores, *, now: datetime, limit: int) -> tuple[int, list[OutgoingRecord]]:
        """Claim due invitations, decide each (send, remind or stop), return the records to publish."""
        due = await stores.surveys.claim_due(now=now, limit=limit)
        if not due:
            return 0, []
        current = await self._book.current(survey_sets=stores.survey_sets)
        cids = list({r.customer_id for r in due})
        contexts = await stores.customers.contexts(customer_ids=cids)
        # An invitation decided while its customer was being erased escaped the erasure's update.
        erased = await stores.customers.erased(customer_ids=cids)
        updates: list[InvitationUpdate] = []
        records: list[OutgoingRecord] = []
        for row in due:
            ctx = contexts.get(row.customer_id)
            update, note = self._fire_one(row, current, ctx, now, erased=row.customer_id in erased)
            updates.append(update)
            if note is not None:
                records.append(notification_record(self._topics, note, key=row.customer_id))
            survey = current.get(row.survey_id)
            if row.status == "scheduled" and update.status == "requested" and survey is not None:
                # The invitation went out (in_app too: the widget asks): the scorer's response rate
                # counts it, published before the commit like the request (a replay: same event id).
                records.append(self._invited_record(row, survey, now=now))
        await stores.surveys.update(updates=updates, now=now)
        return len(due), records

    def _fire_one(
        self,
        row: StoredInvitation,
        current: CurrentSurveys,
        ctx: CustomerContext | None,
        now: datetime,
        *,
        erased: bool = False,
    ) -> tuple[InvitationUpdate, ev.NotificationRequested | None]:
        survey = current.get(row.survey_id)
        state = InvitationState(
            invitation_id=row.invitation_id,
            survey_id=row.survey_id,
            channel=SurveyChannel(row.channel),
            due_at=row.due_at,
            expires_at=row.expires_at,
            reminder_at=row.reminder_at,
            delivery=Delivery(row.delivery),
            answered_at=row.answered_at,
            reminders_sent=row.reminders_sent,
        )
        reminder = row.status != "scheduled"
        kind = "reminder" if reminder else "invitation"
        decided = (decide_reminder if reminder else decide_send)(
            state, survey=survey, customer=facts_of(ctx, erased=erased), now=now
        )
        if not isinstance(decided, Go):
            if decided.reason == "not_delivered_pending" and now + OUTCOME_WAIT < row.expires_at:
                # The invitation's outcome has not come back yet: look again shortly.
                return InvitationUpdate(row.invitation_id, row.status, now + OUTCOME_WAIT), None
            SURVEY_MESSAGES.labels(kind, decided.reason).inc()
            status = row.status if reminder else "stopped"
            return InvitationUpdate(row.invitation_id, status, None, stop_reason=decided.reason), None
        assert survey is not None  # decide_* stop a survey that is gone
        SURVEY_MESSAGES.labels(kind, "requested").inc()
        note = self._request(row, survey, reminder=reminder, now=now)
        if reminder:
            return InvitationUpdate(row.invitation_id, row.status, None, reminded=True), note
        next_at = row.reminder_at if survey.reminder is not None else None
        return InvitationUpdate(row.invitation_id, "requested", next_at, requested_at=now), note

    def _invited_record(self, row: StoredInvitation, survey: SurveyDef, *, now: datetime) -> OutgoingRecord:
        return encode(
            topic=self._topics.surveys_invited,
            event_type=ev.SURVEY_INVITED,
            source="/actions",
            event_id=f"survey-invited-{row.invitation_id}",
            data=ev.SurveyInvited(
                invitation_id=row.invitation_id,
                survey_id=survey.id,
                metric=survey.metric,
                scale=survey.scale,
                channel=row.channel,
                segment=dict(row.segment),
                invited_at=now,
                expires_at=row.expires_at,
                source=row.source,
            ),
            key=row.customer_id,
            subject=row.invitation_id,
        )

    def _request(
        self, row: StoredInvitation, survey: SurveyDef, *, reminder: bool, now: datetime
    ) -> ev.NotificationRequested | None:
        if reminder and row.channel == SurveyChannel.IN_APP.value:
            return None  # the widget shows the invitation on every visit until it is answered
        prefix = REMINDER_PREFIX if reminder else INVITE_PREFIX
        question = survey.question.get(row.locale) or next(iter(survey.question.values()))
        follow_up = (survey.follow_up or {}).get(row.locale) if survey.follow_up else None
        return ev.NotificationRequested(
            notification_id=prefix + row.invitation_id,
            rule_id=f"survey:{survey.id}",
            action="survey_reminder" if reminder else "survey_invitation",
            channel=ev.Channel(row.channel),
            recipient=ev.Recipient(
                email=row.recipient.get("email"),
                phone=row.recipient.get("phone"),
                timezone=row.recipient.get("timezone"),
            ),
            template=SURVEY_TEMPLATE,
            locale=row.locale,
            customer_id=row.customer_id,
            source=row.source,
            context={
                "survey": {
                    "id": survey.id,
                    "invitation_id": row.invitation_id,
                    "metric": survey.metric.value,
                    "scale": survey.scale,
                    "question": question,
                    "follow_up": follow_up,
                    "answer_url": self._links.url(row, survey),
                    "expires_at": row.expires_at.isoformat(),
                    "reminder": reminder,
                    "brand": self._brand,
                }
            },
            requested_at=now,
        )


def _past(d: Invite) -> PastInvitation:
    return PastInvitation(d.invitation_id, d.survey_id, d.due_at)


def _new_invitation(
    d: Invite, interaction: InteractionRecorded, ctx: CustomerContext | None
) -> NewInvitation:
    customer = interaction.customer
    return NewInvitation(
        invitation_id=d.invitation_id,
        survey_id=d.survey_id,
        interaction_id=d.interaction_id,
        customer_id=d.customer_id,
        channel=d.channel.value,
        locale=d.locale,
        segment=dict(interaction.segment),
        recipient={
            "email": (ctx.email if ctx else None) or customer.email,
            "phone": (ctx.phone if ctx else None) or customer.phone,
            "timezone": (ctx.timezone if ctx else None) or customer.timezone,
        },
        source=interaction.source,
        due_at=d.due_at,
        expires_at=d.expires_at,
        reminder_at=d.reminder_at,
    )
