"""The records the actions service publishes: notification requests, decision events and survey outcomes."""

from __future__ import annotations

from services.actions.outcomes import DecisionRow
from services.actions.surveys.outcome_events import outcome_event_id
from shared import events as ev
from shared.envelope import OutgoingRecord, encode
from shared.topics import Topics


def notification_record(
    topics: Topics, note: ev.NotificationRequested, *, key: str | None = None
) -> OutgoingRecord:
    """Keyed by customer (ordering per customer); segment alerts by their segment key."""
    return encode(
        topic=topics.notifications,
        event_type=ev.NOTIFICATION_REQUESTED,
        source="/actions",
        event_id=note.notification_id,
        data=note,
        key=key or note.customer_id,
        subject=note.notification_id,
    )


def decided_record(topics: Topics, row: DecisionRow, *, key: str | None) -> OutgoingRecord:
    """What a rule (or a fired timer) decided, for other systems to follow."""
    return encode(
        topic=topics.actions,
        event_type=ev.ACTION_DECIDED,
        source="/actions",
        event_id=row.decision_id,
        data=ev.ActionDecided(
            decision_id=row.decision_id,
            rule_id=row.rule_id,
            action=row.action,
            rating_id=row.rating_id,
            customer_id=row.customer_id,
            decided_at=row.created_at,
        ),
        key=key,
    )


def survey_outcome_record(topics: Topics, outcome: ev.SurveyOutcome) -> OutgoingRecord:
    """Keyed by customer like the invited event, so an invitation's events stay in order."""
    return encode(
        topic=topics.surveys_outcomes,
        event_type=ev.SURVEY_OUTCOME,
        source="/actions",
        event_id=outcome_event_id(outcome.invitation_id, outcome.outcome),
        data=outcome,
        key=outcome.customer_id,
        subject=outcome.invitation_id,
    )
