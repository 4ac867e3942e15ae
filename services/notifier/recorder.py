"""Writes a delivery's transitions: the row's new state and the events it causes, in the caller's transaction.

Outcome and dead-letter events go to the event outbox in the same transaction as the change they
report (the dispatcher's relay publishes them); metrics wait in ``Effects`` until that transaction commits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from services.notifier.metrics import NOTIFICATIONS, PROVIDER_ATTEMPTS
from services.notifier.outcomes import dead_letter_record, outcome_record
from services.notifier.ports import Deliveries, DeliveryRow, Sent
from services.notifier.transitions import Defer, Final, Reschedule
from shared import events as ev
from shared import metrics as shared_metrics
from shared.envelope import OutgoingRecord
from shared.events import Channel, OutcomeStatus
from shared.logs import scrub
from shared.topics import Topics

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Counted:
    """One ``csat_notifications_total`` increment."""

    channel: str
    provider: str
    outcome: str


@dataclass(frozen=True, slots=True)
class Attempted:
    """One ``csat_provider_attempts_total`` increment (attempts made inside a transaction)."""

    provider: str
    result: str


@dataclass
class Effects:
    """Metrics to count only once the transaction that caused them committed."""

    outcomes: list[Counted] = field(default_factory=list)
    attempts: list[Attempted] = field(default_factory=list)
    dead_letters: int = 0

    def merge(self, other: Effects) -> None:
        self.outcomes += other.outcomes
        self.attempts += other.attempts
        self.dead_letters += other.dead_letters

    def apply(self) -> None:
        for o in self.outcomes:
            NOTIFICATIONS.labels(o.channel, o.provider, o.outcome).inc()
        for a in self.attempts:
            PROVIDER_ATTEMPTS.labels(a.provider, a.result).inc()
        if self.dead_letters:
            shared_metrics.DLQ_RECORDS.labels("notifier", "delivery_exhausted").inc(self.dead_letters)


class Recorder:
    def __init__(self, *, topics: Topics, clock: Callable[[], datetime]) -> None:
        self._topics = topics
        self._clock = clock

    async def apply(
        self, tx: Deliveries, effects: Effects, row: DeliveryRow, step: Final | Defer | Reschedule
    ) -> None:
        if isinstance(step, Final):
            await self._finish(tx, effects, row, step)
        elif isinstance(step, Defer):
            await self._defer(tx, effects, row, step)
        else:
            await tx.reschedule(
                notification_id=row.notification_id,
                at=step.at,
                reason=step.reason,
                error=_scrubbed(step.error),
                token=step.token,
            )

    async def sent(
        self, tx: Deliveries, effects: Effects, *, rows: Mapping[str, DeliveryRow], sent: Sequence[Sent]
    ) -> int:
        """pending -> sent for a batch delivered inside this transaction; returns how many it recorded."""
        done = await tx.record_sent_many(sent=sent)
        events: list[OutgoingRecord] = []
        for s in sent:
            if s.notification_id not in done:
                continue
            row = rows[s.notification_id]
            step = Final(
                OutcomeStatus.SENT,
                None,
                None,
                s.provider,
                s.attempts,
                provider_message_id=s.provider_message_id,
            )
            events.append(self._outcome(row, step, at=s.sent_at))
            effects.outcomes.append(Counted(row.channel, s.provider, OutcomeStatus.SENT.value))
        await tx.enqueue_events(records=events)
        return len(events)

    async def _defer(self, tx: Deliveries, effects: Effects, row: DeliveryRow, step: Defer) -> None:
        await tx.reschedule(
            notification_id=row.notification_id, at=step.until, reason=step.reason, error=None
        )
        outcome = ev.NotificationOutcome(
            notification_id=row.notification_id,
            status=OutcomeStatus.DEFERRED,
            channel=Channel(row.channel),
            provider=step.provider,
            attempts=row.attempts,
            detail=step.detail,
            at=self._clock(),
            reason=step.reason,
            rule_id=row.rule_id,
            customer_id=row.customer_id,
            next_attempt_at=step.until,
        )
        await tx.enqueue_events(records=[outcome_record(outcome, row=row, topics=self._topics)])
        effects.outcomes.append(Counted(row.channel, step.provider, OutcomeStatus.DEFERRED.value))

    async def _finish(self, tx: Deliveries, effects: Effects, row: DeliveryRow, step: Final) -> None:
        """Record a final status and its outcome event in the transaction (unless someone else did)."""
        if step.suppress is not None:
            await tx.suppress(
                entries=step.suppress.entries,
                reason=step.suppress.reason,
                source=step.suppress.source,
                customer_id=row.customer_id,
                notification_id=row.notification_id,
            )
        if step.release is not None:
            await tx.release_daily(notification_id=row.notification_id, slot=step.release)
        now = self._clock()
        done = await tx.finish(
            notification_id=row.notification_id,
            status=step.status.value,
            reason=step.reason,
            detail=_scrubbed(step.detail),
            provider=step.provider,
            provider_message_id=step.provider_message_id,
            sent_at=now if step.status is OutcomeStatus.SENT else None,
            token=step.token,
            from_statuses=step.from_statuses,
        )
        if not done:
            if step.status is OutcomeStatus.SENT:
                log.warning("late_answer_ignored", notification_id=row.notification_id, verdict="accepted")
            return
        events = [self._outcome(row, step, at=now)]
        if step.dead_letter is not None:
            events.append(dead_letter_record(row, reason=step.dead_letter, topics=self._topics, at=now))
            effects.dead_letters += 1
        await tx.enqueue_events(records=events)
        effects.outcomes.append(Counted(row.channel, step.provider, step.status.value))
        if step.status is not OutcomeStatus.SENT:
            log.info(
                "notification_not_sent",
                notification_id=row.notification_id,
                status=step.status.value,
                reason=step.reason,
                provider=step.provider,
            )

    def _outcome(self, row: DeliveryRow, step: Final, *, at: datetime) -> OutgoingRecord:
        outcome = ev.NotificationOutcome(
            notification_id=row.notification_id,
            status=step.status,
            channel=Channel(row.channel),
            provider=step.provider,
            attempts=row.attempts if step.attempts is None else step.attempts,
            detail=_scrubbed(step.detail),
            provider_message_id=step.provider_message_id,
            at=at,
            reason=step.reason,
            rule_id=row.rule_id,
            customer_id=row.customer_id,
        )
        return outcome_record(outcome, row=row, topics=self._topics)


def _scrubbed(text: str | None) -> str | None:
    """Provider error texts can quote the address ("Found inactive addresses: ..."): keep it out of the
    table and the topic, which other teams read and log."""
    return scrub(text)[:500] if text else text
