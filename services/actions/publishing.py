"""The records the actions service publishes: notification requests and decision events."""

from __future__ import annotations

from services.actions.outcomes import DecisionRow
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
