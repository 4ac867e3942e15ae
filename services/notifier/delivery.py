"""Delivering notification requests: dedupe record, rendering, provider send with retries, outcome."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog
from prometheus_client import Counter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.notifier.providers import Message, Provider, SendResult
from services.notifier.templating import TemplateMissing, Templates
from shared import events as ev
from shared.consumer import Received
from shared.envelope import OutgoingRecord, encode
from shared.events import Channel, NotificationRequested, OutcomeStatus
from shared.topics import Topics

log = structlog.get_logger(__name__)

NOTIFICATIONS = Counter(
    "csat_notifications_total",
    "Notifications handled, by channel, provider and outcome",
    ["channel", "provider", "outcome"],
)
PROVIDER_ATTEMPTS = Counter(
    "csat_provider_attempts_total",
    "Calls to a provider, by provider and result",
    ["provider", "result"],
)

FINAL = {"sent", "failed", "suppressed", "unknown"}


def address(note: NotificationRequested) -> str | None:
    r = note.recipient
    return {Channel.EMAIL: r.email, Channel.SMS: r.phone, Channel.SLACK: r.url, Channel.WEBHOOK: r.url}[
        note.channel
    ]


def backoff_delay(
    attempt: int, *, base: float = 0.5, cap: float = 30.0, retry_after: float | None = None
) -> float:
    """Exponential backoff with full jitter; a provider's Retry-After wins when it asks for longer."""
    delay = random.uniform(0, min(cap, base * 2**attempt))  # noqa: S311 - jitter, not security
    return max(delay, retry_after or 0.0)


class Deliverer:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        providers: Mapping[Channel, Provider],
        templates: Templates,
        topics: Topics,
        max_attempts: int = 3,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._engine = engine
        self._providers = providers
        self._templates = templates
        self._topics = topics
        self._max_attempts = max_attempts
        self._sleep = sleep

    async def handle(self, conn: AsyncConnection, batch: Sequence[Received]) -> list[OutgoingRecord]:
        notes: dict[str, NotificationRequested] = {}
        for item in batch:
            if isinstance(item.envelope.data, NotificationRequested):
                notes.setdefault(item.envelope.data.notification_id, item.envelope.data)
        if not notes:
            return []
        rows = await conn.execute(
            text(
                "SELECT notification_id, status, provider, attempts, provider_message_id, last_error, "
                "updated_at FROM notifier.deliveries WHERE notification_id = ANY(:ids)"
            ),
            {"ids": list(notes)},
        )
        existing = {r.notification_id: r for r in rows}
        out: list[OutgoingRecord] = []
        for note in notes.values():
            record = await self._deliver(conn, note, existing.get(note.notification_id))
            if record is not None:
                out.append(record)
        return out

    async def _deliver(
        self, conn: AsyncConnection, note: NotificationRequested, row: Any
    ) -> OutgoingRecord | None:
        provider = self._providers[note.channel]
        status = row.status if row is not None else None
        if status in FINAL:
            NOTIFICATIONS.labels(note.channel.value, provider.name, "duplicate").inc()
            # Its outcome may not have been published (a crash after the outcome was recorded on its
            # own, below): publish it again; its event id is deterministic, so consumers dedupe.
            return self._outcome(
                note,
                row.provider,
                OutcomeStatus(status),
                row.attempts,
                row.last_error,
                row.provider_message_id,
                at=row.updated_at,
            )
        if status == "sending" and not provider.idempotent:
            # We crashed after claiming: the provider may or may not have sent it. Never send twice.
            return await self._finish(
                conn,
                note,
                provider.name,
                OutcomeStatus.UNKNOWN,
                0,
                "crashed mid-send earlier; not resent to avoid a duplicate",
            )
        to = address(note)
        if not to:
            return await self._finish(
                conn, note, provider.name, OutcomeStatus.FAILED, 0, "no recipient address"
            )
        try:
            rendered = self._templates.render(note.template, note.locale, note.context)
        except TemplateMissing as exc:
            return await self._finish(conn, note, provider.name, OutcomeStatus.FAILED, 0, str(exc))
        message = Message(
            notification_id=note.notification_id,
            channel=note.channel,
            to=to,
            subject=rendered.subject,
            body=rendered.body,
            rule_id=note.rule_id,
        )
        if not provider.idempotent:
            await self._claim(note, provider.name)
        result = SendResult(accepted=False, detail="not attempted")
        attempts = 0
        for attempt in range(self._max_attempts):
            attempts = attempt + 1
            result = await provider.send(message, conn=conn)
            PROVIDER_ATTEMPTS.labels(
                provider.name,
                "accepted" if result.accepted else "retryable" if result.retryable else "rejected",
            ).inc()
            if result.accepted or not result.retryable or attempts == self._max_attempts:
                break
            await self._sleep(backoff_delay(attempt, retry_after=result.retry_after_s))
        status_out = OutcomeStatus.SENT if result.accepted else OutcomeStatus.FAILED
        if not provider.idempotent:
            # Record the provider's answer at once, like the claim: a crash later in this batch must
            # not turn a message that went out into "unknown" when the batch is replayed.
            async with self._engine.begin() as own:
                return await self._finish(
                    own, note, provider.name, status_out, attempts, result.detail, result.provider_message_id
                )
        return await self._finish(
            conn, note, provider.name, status_out, attempts, result.detail, result.provider_message_id
        )

    async def _claim(self, note: NotificationRequested, provider: str) -> None:
        """Commit a 'sending' record before calling a provider, so a crash cannot lead to a resend."""
        async with self._engine.begin() as claim:
            await claim.execute(
                text(
                    "INSERT INTO notifier.deliveries (notification_id, channel, provider, status, rule_id, "
                    "customer_id) VALUES (:id, :channel, :provider, 'sending', :rule, :customer) "
                    "ON CONFLICT (notification_id) DO NOTHING"
                ),
                {
                    "id": note.notification_id,
                    "channel": note.channel.value,
                    "provider": provider,
                    "rule": note.rule_id,
                    "customer": note.customer_id,
                },
            )

    async def _finish(
        self,
        conn: AsyncConnection,
        note: NotificationRequested,
        provider: str,
        status: OutcomeStatus,
        attempts: int,
        detail: str | None,
        provider_message_id: str | None = None,
    ) -> OutgoingRecord:
        now = datetime.now(UTC)
        await conn.execute(
            text(
                "INSERT INTO notifier.deliveries (notification_id, channel, provider, status, attempts, "
                "rule_id, customer_id, provider_message_id, last_error, sent_at, updated_at) "
                "VALUES (:id, :channel, :provider, :status, :attempts, :rule, :customer, :pmid, :error, "
                ":sent_at, now()) "
                "ON CONFLICT (notification_id) DO UPDATE SET status = EXCLUDED.status, "
                "attempts = notifier.deliveries.attempts + EXCLUDED.attempts, "
                "provider_message_id = EXCLUDED.provider_message_id, last_error = EXCLUDED.last_error, "
                "sent_at = EXCLUDED.sent_at, updated_at = now()"
            ),
            {
                "id": note.notification_id,
                "channel": note.channel.value,
                "provider": provider,
                "status": status.value,
                "attempts": attempts,
                "rule": note.rule_id,
                "customer": note.customer_id,
                "pmid": provider_message_id,
                "error": None if status is OutcomeStatus.SENT else detail,
                "sent_at": now if status is OutcomeStatus.SENT else None,
            },
        )
        NOTIFICATIONS.labels(note.channel.value, provider, status.value).inc()
        if status is not OutcomeStatus.SENT:
            log.warning(
                "notification_not_sent",
                notification_id=note.notification_id,
                status=status.value,
                provider=provider,
                detail=detail,
            )
        return self._outcome(note, provider, status, attempts, detail, provider_message_id, at=now)

    def _outcome(
        self,
        note: NotificationRequested,
        provider: str,
        status: OutcomeStatus,
        attempts: int,
        detail: str | None,
        provider_message_id: str | None,
        *,
        at: datetime,
    ) -> OutgoingRecord:
        outcome = ev.NotificationOutcome(
            notification_id=note.notification_id,
            status=status,
            channel=note.channel,
            provider=provider,
            attempts=attempts,
            detail=detail,
            provider_message_id=provider_message_id,
            at=at,
        )
        return encode(
            topic=self._topics.outcomes,
            event_type=ev.NOTIFICATION_OUTCOME,
            source="/notifier",
            event_id=f"{note.notification_id}/{status.value}",
            data=outcome,
            key=note.customer_id or note.notification_id,
        )
