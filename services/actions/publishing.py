"""The records the actions service publishes: notification requests and decision events."""

from __future__ import annotations

from datetime import datetime

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


def decided_record(
    topics: Topics,
    *,
    decision_id: str,
    rule_id: str,
    action: str,
    rating_id: str | None,
    customer_id: str | None,
    key: str | None,
    at: datetime,
) -> OutgoingRecord:
    return encode(
        topic=topics.actions,
        event_type=ev.ACTION_DECIDED,
        source="/actions",
        event_id=decision_id,
        data=ev.ActionDecided(
            decision_id=decision_id,
            rule_id=rule_id,
            action=action,
            rating_id=rating_id,
            customer_id=customer_id,
            decided_at=at,
        ),
        key=key,
    )
