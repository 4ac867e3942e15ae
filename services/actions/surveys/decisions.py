"""Whom to survey, when and how, decided without I/O: an interaction in, an ``Invite`` or a ``Skip`` out.

Decisions are deterministic: sampling hashes the interaction id with the survey id, ids are derived
from both, and the only clock is ``now``. A replay of the same interaction therefore decides the same
(the handler also skips interactions it already decided). The per-customer throttle reads every
invitation of every survey, the ones decided earlier in the same batch included (``remember``).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum
from typing import Any, NamedTuple

from services.actions.rules import flatten, holds
from services.actions.surveys.definitions import StopCondition, SurveyChannel, SurveyDef, SurveySet
from shared.events import InteractionRecorded
from shared.quiethours import zone_for
from shared.vocabulary import LOCALES

SURVEY_NAMESPACE = uuid.UUID("3b9d0f7e-2c4a-4e58-9a61-7d5c2e8f1b04")


class SkipReason(StrEnum):
    CONDITIONS = "conditions"
    ERASED = "erased"
    OPTED_OUT = "opted_out"
    NO_CONSENT = "no_consent"
    TOO_OLD = "too_old"
    NOT_SAMPLED = "not_sampled"
    NO_CHANNEL = "no_channel"
    THROTTLED = "throttled"


@dataclass(frozen=True, slots=True)
class CustomerFacts:
    """What the stored customer context says; it wins over what the interaction claims."""

    email: str | None = None
    phone: str | None = None
    locale: str | None = None
    timezone: str | None = None
    opted_out: bool = False
    erased: bool = False
    consent_contact: bool | None = None


@dataclass(frozen=True, slots=True)
class PastInvitation:
    """An invitation of any survey to the customer, by when it goes (or went) out."""

    invitation_id: str
    survey_id: str
    due_at: datetime


@dataclass(frozen=True, slots=True)
class Invite:
    """Send ``survey_id`` on ``channel`` at ``due_at``; answers are taken until ``expires_at``."""

    invitation_id: str
    survey_id: str
    interaction_id: str
    customer_id: str
    channel: SurveyChannel
    locale: str
    due_at: datetime
    expires_at: datetime
    reminder_at: datetime | None
    reclick_window: timedelta
    #: The send moved to the end of the customer's quiet hours.
    quiet_shifted: bool = False


@dataclass(frozen=True, slots=True)
class Skip:
    survey_id: str
    interaction_id: str
    reason: SkipReason
    detail: str = ""


Decision = Invite | Skip


def invitation_id(survey_id: str, interaction_id: str) -> str:
    """One invitation per (survey, interaction), whoever replays it."""
    return str(uuid.uuid5(SURVEY_NAMESPACE, f"invitation/{survey_id}/{interaction_id}"))


def sample_point(survey_id: str, interaction_id: str) -> float:
    """A uniform number in [0, 1) fixed by the pair: the same interaction is always in or out."""
    digest = hashlib.sha256(f"{survey_id}\x00{interaction_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def in_sample(survey_id: str, interaction_id: str, percent: float) -> bool:
    return percent >= 100 or sample_point(survey_id, interaction_id) < percent / 100


def interaction_facts(interaction: InteractionRecorded, customer: CustomerFacts | None) -> dict[str, Any]:
    """The flat facts a survey's ``when`` reads; the stored context fills what the sender left out."""
    ctx = customer or CustomerFacts()
    consent = interaction.consent.contact if interaction.consent else None
    facts: dict[str, Any] = {
        "type": interaction.type,
        "source": interaction.source,
        "customer.locale": interaction.customer.locale or ctx.locale,
        "customer.has_email": bool(ctx.email or interaction.customer.email),
        "customer.has_phone": bool(ctx.phone or interaction.customer.phone),
        "account.id": interaction.account.id if interaction.account else None,
        "account.tier": interaction.account.tier if interaction.account else None,
        "account.value": interaction.account.value if interaction.account else None,
        "consent.contact": ctx.consent_contact if ctx.consent_contact is not None else consent,
    }
    flatten("attributes", dict(interaction.attributes), facts)
    flatten("segment", dict(interaction.segment), facts)
    return facts


def language(locale: str | None) -> str:
    """The language of our texts for a locale (``fr-CA`` -> ``fr``), else the first of ``LOCALES``."""
    base = (locale or "").split("-")[0].split("_")[0].lower()
    return base if base in LOCALES else LOCALES[0]


def _channel(survey: SurveyDef, *, email: str | None, phone: str | None) -> SurveyChannel | None:
    """The first channel in the survey's order of preference the customer can be reached on."""
    for channel in survey.channels:
        if (channel is SurveyChannel.EMAIL and email) or (channel is SurveyChannel.SMS and phone):
            return channel
        if channel is SurveyChannel.IN_APP:
            return channel
    return None


class SendTime(NamedTuple):
    due_at: datetime
    quiet_shifted: bool


def send_time(survey: SurveyDef, *, occurred_at: datetime, now: datetime, zone: tzinfo) -> SendTime:
    """``delay`` after the interaction (never in the past), moved out of quiet hours; and whether it moved."""
    due = max(occurred_at + survey.delay, now)
    quiet = survey.quiet
    later = quiet.deferral(due, zone) if quiet else None
    return SendTime(later.astimezone(UTC), True) if later else SendTime(due.astimezone(UTC), False)


@dataclass(frozen=True, slots=True)
class _Recipient:
    """The customer as the decisions see them: facts for conditions, stored context, addresses, zone."""

    facts: Mapping[str, Any]
    ctx: CustomerFacts
    email: str | None
    phone: str | None
    zone: tzinfo


def _throttled(due: datetime, history: Iterable[PastInvitation], days: int) -> PastInvitation | None:
    """An invitation of any survey within ``days`` of this one, before or after it."""
    window = timedelta(days=days)
    for past in history:
        if abs(past.due_at - due) < window:
            return past
    return None


def decide_invitations(
    *,
    interaction: InteractionRecorded,
    surveys: SurveySet,
    history: Sequence[PastInvitation],
    customer: CustomerFacts | None,
    now: datetime,
    default_zone: tzinfo = UTC,
) -> list[Decision]:
    """One decision per enabled survey following the interaction's type, in file order.

    An invitation decided here counts for the next survey's throttle: one interaction never sends two
    surveys within the recontact time.
    """
    ctx = customer or CustomerFacts()
    who = _Recipient(
        facts=interaction_facts(interaction, customer),
        ctx=ctx,
        email=ctx.email or interaction.customer.email,
        phone=ctx.phone or interaction.customer.phone,
        zone=zone_for(ctx.timezone or interaction.customer.timezone, default_zone),
    )
    seen = list(history)
    out: list[Decision] = []
    for survey in surveys.surveys:
        if not survey.enabled or not survey.follows(interaction.type):
            continue
        decided = _decide_one(survey, interaction, who, seen, now)
        out.append(decided)
        if isinstance(decided, Invite):
            seen.append(PastInvitation(decided.invitation_id, decided.survey_id, decided.due_at))
    return out


def _decide_one(
    survey: SurveyDef,
    interaction: InteractionRecorded,
    who: _Recipient,
    history: Sequence[PastInvitation],
    now: datetime,
) -> Decision:
    """The checks in order: conditions, stop conditions and consent, age, sample, channel, throttle."""
    iid = interaction.interaction_id

    def skip(reason: SkipReason, detail: str = "") -> Skip:
        return Skip(survey.id, iid, reason, detail)

    if not holds(survey.when, who.facts):
        return skip(SkipReason.CONDITIONS)
    if who.ctx.erased:
        return skip(SkipReason.ERASED)
    if who.ctx.opted_out:
        return skip(SkipReason.OPTED_OUT)
    if who.facts.get("consent.contact") is False:
        return skip(SkipReason.NO_CONSENT)
    if now - interaction.occurred_at > survey.max_age:
        return skip(SkipReason.TOO_OLD, f"occurred {now - interaction.occurred_at} ago")
    if not in_sample(survey.id, iid, survey.sampling):
        return skip(SkipReason.NOT_SAMPLED, f"{survey.sampling:g} % sampled")
    channel = _channel(survey, email=who.email, phone=who.phone)
    if channel is None:
        return skip(SkipReason.NO_CHANNEL, "no address for " + ", ".join(c.value for c in survey.channels))
    due, shifted = send_time(survey, occurred_at=interaction.occurred_at, now=now, zone=who.zone)
    earlier = _throttled(due, history, survey.recontact_days) if survey.recontact_days else None
    if earlier is not None:
        return skip(SkipReason.THROTTLED, f"{earlier.survey_id} invited at {earlier.due_at.isoformat()}")
    return Invite(
        invitation_id=invitation_id(survey.id, iid),
        survey_id=survey.id,
        interaction_id=iid,
        customer_id=interaction.customer.id,
        channel=channel,
        locale=language(interaction.customer.locale or who.ctx.locale),
        due_at=due,
        expires_at=due + survey.answer_window,
        reminder_at=due + survey.reminder.after if survey.reminder else None,
        reclick_window=survey.reclick_window,
        quiet_shifted=shifted,
    )


def remember(history: Sequence[PastInvitation], decisions: Iterable[Decision]) -> list[PastInvitation]:
    """The customer's invitations once these decisions are taken, for their next interaction in the batch."""
    return [
        *history,
        *(PastInvitation(d.invitation_id, d.survey_id, d.due_at) for d in decisions if isinstance(d, Invite)),
    ]


# ---- after the invitation: send, remind, expire ----------------------------------------------------
class Delivery(StrEnum):
    """What the notifier reported for the invitation's message."""

    PENDING = "pending"
    SENT = "sent"
    BOUNCED = "bounced"
    FAILED = "failed"
    SUPPRESSED = "suppressed"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class InvitationState:
    """An invitation as stored: when it went, what came of it, whether it was answered or reminded."""

    invitation_id: str
    survey_id: str
    channel: SurveyChannel
    due_at: datetime
    expires_at: datetime
    reminder_at: datetime | None
    delivery: Delivery = Delivery.PENDING
    answered_at: datetime | None = None
    reminders_sent: int = 0


@dataclass(frozen=True, slots=True)
class Go:
    """Send now (the invitation when its delay ran out, or its one reminder)."""


@dataclass(frozen=True, slots=True)
class Stop:
    """Do not send; ``reason`` is logged with the decision (``answered``, ``expired``, ``opted_out``...)."""

    reason: str


def _stopped(
    survey: SurveyDef | None, ctx: CustomerFacts, state: InvitationState, now: datetime
) -> Stop | None:
    """The survey's stop conditions, then the end of its answer window."""
    if survey is None or not survey.enabled:
        return Stop("survey_disabled")
    stops = set(survey.stop_on)
    if StopCondition.ERASED in stops and ctx.erased:
        return Stop("erased")
    if StopCondition.OPTED_OUT in stops and ctx.opted_out:
        return Stop("opted_out")
    if StopCondition.ANSWERED in stops and state.answered_at is not None:
        return Stop("answered")
    if ctx.consent_contact is False:
        return Stop("no_consent")
    if now >= state.expires_at:
        return Stop("expired")
    return None


def decide_send(
    state: InvitationState, *, survey: SurveyDef | None, customer: CustomerFacts | None, now: datetime
) -> Go | Stop:
    """When a delayed invitation is due: the customer may have opted out or been erased meanwhile."""
    return _stopped(survey, customer or CustomerFacts(), state, now) or Go()


def decide_reminder(
    state: InvitationState, *, survey: SurveyDef | None, customer: CustomerFacts | None, now: datetime
) -> Go | Stop:
    """The one reminder: only for a delivered, unanswered, open invitation to a customer still reachable."""
    if state.reminder_at is None or state.reminders_sent >= 1:
        return Stop("already_reminded" if state.reminders_sent else "no_reminder")
    if now < state.reminder_at:
        return Stop("not_due")
    stopped = _stopped(survey, customer or CustomerFacts(), state, now)
    if stopped is not None:
        return stopped
    if state.delivery is not Delivery.SENT:
        return Stop(f"not_delivered_{state.delivery.value}")
    return Go()


def answer_open(state: InvitationState, *, now: datetime) -> bool:
    """Answers are taken until ``expires_at`` (the collector answers 410 after it)."""
    return now < state.expires_at
