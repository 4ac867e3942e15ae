"""What became of an invitation, as events (``csat.surveys.outcomes.v1``), from the rows the stores
actually changed. Pure.

The stores mark delivery outcomes and answers with ``RETURNING``: only an invitation whose state moved
in this transaction comes back, so a replayed outcome or answer (or a re-click's second answer) changes
nothing and publishes nothing. Event ids are ``survey-outcome-<invitation id>-<outcome>``: a batch replayed
after a crash (its transaction rolled back) publishes the same ids again, which consumers deduplicate.

Published: ``sent``, ``failed``, ``suppressed`` (the notifier's outcome of the invitation's own message)
and ``answered`` (its first answer). An answer proves the message went out: when it comes before the
outcome (``pending``) or after an ``unknown`` one, the store marks the invitation sent and ``sent``
(``inferred``) is published before ``answered``. Not published: ``unknown`` (not final: the notifier
reconciles it to ``sent`` later), ``expired`` (a computed state: sent, unanswered and past ``expires_at``,
which the invited event carries; ``measuring`` counts it) and ``bounced`` (actions never receives one;
a provider refusing the address comes back as ``failed``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from services.actions.surveys.decisions import Delivery
from shared.events import SurveyOutcome, SurveyOutcomeKind

#: The delivery states an outcome event is published for (``unknown`` is not final).
PUBLISHED_DELIVERY: Mapping[Delivery, SurveyOutcomeKind] = {
    Delivery.SENT: SurveyOutcomeKind.SENT,
    Delivery.FAILED: SurveyOutcomeKind.FAILED,
    Delivery.SUPPRESSED: SurveyOutcomeKind.SUPPRESSED,
}
#: The delivery states an answer turns into ``sent`` (the answer proves the message went out).
PROVEN_BY_ANSWER = frozenset({Delivery.PENDING, Delivery.UNKNOWN})


@dataclass(frozen=True, slots=True)
class MarkedInvitation:
    """An invitation a delivery outcome or an answer changed, as the store returned it.

    ``delivery_before`` is the delivery before this change; ``answered``: this change was its first
    answer (``answered_at``, ``answered_with_comment``). ``sent_at``: when it counts as sent, if it does.
    """

    invitation_id: str
    survey_id: str
    customer_id: str
    channel: str
    segment: Mapping[str, str] = field(default_factory=dict)
    delivery: Delivery = Delivery.PENDING
    delivery_before: Delivery = Delivery.PENDING
    sent_at: datetime | None = None
    answered: bool = False
    answered_at: datetime | None = None
    answered_with_comment: bool = False


def outcome_event_id(invitation_id: str, outcome: SurveyOutcomeKind) -> str:
    """One id per (invitation, outcome), whoever replays it."""
    return f"survey-outcome-{invitation_id}-{outcome.value}"


def outcome_events(
    marked: MarkedInvitation, *, at: datetime, reason: str | None = None
) -> list[SurveyOutcome]:
    """The events one change publishes, in order: the delivery's (if it moved to a published state),
    then the answer's. ``at``/``reason``: the notifier's outcome time and code, for a delivery outcome."""
    events: list[SurveyOutcome] = []
    kind = PUBLISHED_DELIVERY.get(marked.delivery)
    if kind is not None and marked.delivery is not marked.delivery_before:
        inferred = marked.answered and kind is SurveyOutcomeKind.SENT
        when = (marked.sent_at or marked.answered_at or at) if inferred else at
        events.append(
            _event(
                marked,
                kind,
                when,
                reason=None if kind is SurveyOutcomeKind.SENT else reason,
                inferred=inferred,
            )
        )
    if marked.answered and marked.answered_at is not None:
        events.append(
            _event(
                marked,
                SurveyOutcomeKind.ANSWERED,
                marked.answered_at,
                has_comment=marked.answered_with_comment,
            )
        )
    return events


def all_outcome_events(
    marked: Iterable[MarkedInvitation],
    *,
    at: Mapping[str, datetime] | None = None,
    reasons: Mapping[str, str | None] | None = None,
    default_at: datetime,
) -> list[SurveyOutcome]:
    """Every change's events, in invitation id order (deterministic whatever order the store returned)."""
    at = at or {}
    reasons = reasons or {}
    out: list[SurveyOutcome] = []
    for m in sorted(marked, key=lambda m: m.invitation_id):
        out += outcome_events(m, at=at.get(m.invitation_id, default_at), reason=reasons.get(m.invitation_id))
    return out


def _event(
    marked: MarkedInvitation,
    kind: SurveyOutcomeKind,
    when: datetime,
    *,
    reason: str | None = None,
    has_comment: bool | None = None,
    inferred: bool = False,
) -> SurveyOutcome:
    return SurveyOutcome(
        invitation_id=marked.invitation_id,
        survey_id=marked.survey_id,
        customer_id=marked.customer_id,
        channel=marked.channel,
        segment=dict(marked.segment),
        outcome=kind,
        occurred_at=when,
        reason=reason,
        has_comment=has_comment,
        inferred=inferred,
    )
