"""The events a delivery's transitions publish: its outcomes, and the dead letter of a request given up on.

Their CloudEvent ids are deterministic (the notification id, the status, a deferral's time), so an
event the relay publishes twice (a crash between publishing and deleting it) keeps one id.
"""

from __future__ import annotations

import base64
from datetime import datetime

from services.notifier.ports import TRACE_KEY, DeliveryRow
from shared import events as ev
from shared import tracing
from shared.envelope import OutgoingRecord, encode
from shared.events import NotificationRequested
from shared.topics import Topics


def outcome_record(outcome: ev.NotificationOutcome, *, row: DeliveryRow, topics: Topics) -> OutgoingRecord:
    """The outcome continues the trace of the request (and so of the rating) behind it."""
    event_id = f"{outcome.notification_id}/{outcome.status.value}"
    if outcome.next_attempt_at is not None:  # deferred: one event per deferral
        event_id += f"/{int(outcome.next_attempt_at.timestamp())}"
    with tracing.span(tracing.continue_from(row.request.get(TRACE_KEY))):
        return encode(
            topic=topics.outcomes,
            event_type=ev.NOTIFICATION_OUTCOME,
            source="/notifier",
            event_id=event_id,
            data=outcome,
            key=outcome.customer_id or outcome.notification_id,
            subject=outcome.notification_id,
        )


def dead_letter_record(row: DeliveryRow, *, reason: str, topics: Topics, at: datetime) -> OutgoingRecord:
    """The original request, with where it was read from, for replay once the cause is fixed."""
    letter = ev.DeadLetter(
        consumer="notifier",
        reason=reason[:2000],
        topic=row.source_topic or topics.notifications,
        partition=row.source_partition if row.source_partition is not None else -1,
        offset=row.source_offset if row.source_offset is not None else -1,
        key=row.customer_id,
        value_b64=base64.b64encode(
            NotificationRequested.model_validate(row.request).model_dump_json().encode()
        ).decode(),
        headers={"ce_type": ev.NOTIFICATION_REQUESTED, "ce_id": row.event_id or row.notification_id},
        failed_at=at,
    )
    return encode(
        topic=topics.dlq_notifier,
        event_type=ev.DEAD_LETTER,
        source="/notifier",
        event_id=f"notifier:delivery:{row.notification_id}",
        data=letter,
        key=row.customer_id or row.notification_id,
        extensions={"dlqreason": "delivery_exhausted"},
    )
