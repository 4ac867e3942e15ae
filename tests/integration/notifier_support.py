"""Shared pieces for the notifier's integration tests: requests, settings, reading delivery records."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

from services.notifier.settings import NotifierSettings
from shared import events as ev
from shared.db import make_engine
from shared.envelope import OutgoingRecord, encode
from shared.events import Channel, NotificationRequested, Recipient
from shared.topics import Topics
from tests.helpers import make_settings
from tests.infra import Infra

FINAL = {"sent", "failed", "suppressed", "unknown"}

CONTEXT: dict[str, Any] = {
    "rating": {
        "rating_id": "r-1",
        "metric": "csat",
        "scale": "1-5",
        "score": 1,
        "sentiment": "negative",
        "touchpoint": "support_chat",
        "comment": "Waited 40 minutes",
        "segment": {"store": "paris-1"},
        "occurred_at": "2026-11-23T10:00:00+00:00",
    },
    "customer": {
        "id": "cus-1",
        "email": "ana@example.com",
        "phone": "+33612345678",
        "tier": "strategic",
        "account_id": "acc-1",
        "account_value": 120000,
    },
    "segment": {"key": "store=paris-1", "attributes": {"store": "paris-1"}, "score": 61.0, "previous": 80.0},
}


def request(
    nid: str,
    *,
    channel: Channel,
    to: str | None,
    template: str,
    customer: str | None = "cus-1",
    transactional: bool = False,
    locale: str = "en",
    timezone: str | None = None,
    rule: str = "test-rule",
) -> NotificationRequested:
    recipient = {
        Channel.EMAIL: Recipient(email=to, timezone=timezone),
        Channel.SMS: Recipient(phone=to, timezone=timezone),
        Channel.SLACK: Recipient(url=to),
        Channel.WEBHOOK: Recipient(url=to),
    }[channel]
    return NotificationRequested(
        notification_id=nid,
        rule_id=rule,
        action="customer_email" if channel is Channel.EMAIL else channel.value,
        channel=channel,
        recipient=recipient,
        template=template,
        locale=locale,
        customer_id=customer,
        rating_id="r-1",
        transactional=transactional,
        context=CONTEXT,
        requested_at=datetime.now(UTC),
    )


def records(topics: Topics, notes: Sequence[NotificationRequested]) -> list[OutgoingRecord]:
    return [
        encode(
            topic=topics.notifications,
            event_type=ev.NOTIFICATION_REQUESTED,
            source="/test",
            event_id=f"req-{n.notification_id}",
            data=n,
            key=n.customer_id or n.notification_id,
        )
        for n in notes
    ]


def notifier_settings(infra: Infra, database_url: str, topics: Topics, **values: Any) -> NotifierSettings:
    """Fast loops for tests: short polling, short backoff, short provider timeouts."""
    base: dict[str, Any] = {
        "kafka_bootstrap": infra.bootstrap,
        "database_url": database_url,
        "topic_prefix": topics.prefix,
        "environment": "test",
        "dispatch_interval_s": 0.05,
        "retry_base_s": 0.1,
        "provider_timeout_s": 0.5,
        "quiet_hours": "off",
        # The fake providers listen on loopback, which the outbound URL guard refuses unless allow-listed.
        "outbound_allow": ["127.0.0.1/32"],
    }
    return make_settings(NotifierSettings, **{**base, **values})


async def deliveries(database_url: str) -> dict[str, dict[str, Any]]:
    engine = make_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT * FROM notifier.deliveries"))
            return {r.notification_id: dict(r._mapping) for r in rows}
    finally:
        await engine.dispose()


async def query(database_url: str, sql: str, **params: Any) -> list[dict[str, Any]]:
    engine = make_engine(database_url)
    try:
        async with engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(text(sql), params)]
    finally:
        await engine.dispose()


def decode_dead_letter_value(letter: dict[str, Any]) -> bytes:
    return base64.b64decode(letter["value_b64"])
