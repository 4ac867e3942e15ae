"""Builders shared by the notifier's unit tests: requests, stored rows, a clock the test moves."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from services.notifier.ports import DeliveryRow
from shared.events import Channel, NotificationRequested, Recipient

CONTEXT = {
    "rating": {"rating_id": "r-1", "metric": "csat", "scale": "1-5", "score": 2, "comment": "Slow"},
    "customer": {"id": "cus-1", "email": "ana@example.com"},
}


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def note(
    nid: str,
    *,
    channel: Channel = Channel.EMAIL,
    to: str | None = "ana@example.com",
    template: str = "thank_you",
    customer: str | None = "cus-1",
    transactional: bool = False,
    locale: str = "en",
    timezone: str | None = None,
    requested_at: datetime,
    not_before: datetime | None = None,
    source: str | None = None,
) -> NotificationRequested:
    recipient = {
        Channel.EMAIL: Recipient(email=to, timezone=timezone),
        Channel.SMS: Recipient(phone=to, timezone=timezone),
        Channel.SLACK: Recipient(url=to),
        Channel.WEBHOOK: Recipient(url=to),
    }[channel]
    return NotificationRequested(
        notification_id=nid,
        rule_id="test-rule",
        action=channel.value,
        channel=channel,
        recipient=recipient,
        template=template,
        locale=locale,
        customer_id=customer,
        source=source,
        transactional=transactional,
        context=CONTEXT,
        requested_at=requested_at,
        not_before=not_before,
    )


def row_for(
    request: NotificationRequested,
    *,
    provider: str = "outbox",
    status: str = "pending",
    attempts: int = 0,
    claim_token: str | None = None,
    counted_day: date | None = None,
) -> DeliveryRow:
    """The row the intake would have stored for ``request``."""
    return DeliveryRow(
        notification_id=request.notification_id,
        channel=request.channel.value,
        provider=provider,
        status=status,
        attempts=attempts,
        rule_id=request.rule_id,
        customer_id=request.customer_id,
        request=json.loads(request.model_dump_json()),
        transactional=request.transactional,
        claim_token=claim_token,
        counted_day=counted_day,
        event_id=f"req-{request.notification_id}",
        source_topic="csat.notifications.requested.v1",
        source_partition=0,
        source_offset=7,
    )
