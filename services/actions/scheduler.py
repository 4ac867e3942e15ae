"""The timer loop: claims due timers with ``FOR UPDATE SKIP LOCKED`` and fires each exactly once.

One transaction per tick: claim, fire (alert state, context and caps read under the same
transaction), write decisions and follow-up timers, publish the messages (acks=all), mark the timers
fired, commit. A crash before the commit leaves the timers pending and they fire again with the same
deterministic notification ids, which the notifier dedupes; replicas never fire the same timer
concurrently because the claim locks it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer
from prometheus_client import Counter, Histogram
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.actions import repository
from services.actions.engine import CustomerContext, Policy, TimerDraft
from services.actions.publishing import decided_record, notification_record
from services.actions.timers import (
    RESURVEY_NO_ANSWER,
    SEND,
    SLA_ESCALATION,
    AlertState,
    DueTimer,
    Fired,
    fire_escalation,
    fire_no_answer,
    fire_send,
)
from shared.consumer import TRANSIENT_ERRORS
from shared.envelope import OutgoingRecord
from shared.kafka import send_all
from shared.topics import Topics

log = structlog.get_logger(__name__)

TIMERS_FIRED = Counter(
    "csat_timers_fired_total", "Durable timers fired, by kind and outcome", ["kind", "outcome"]
)
TIMER_DELAY = Histogram(
    "csat_timer_delay_seconds",
    "Time from a timer's due time to its firing",
    ["kind"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
)


class Scheduler:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        producer: Callable[[], AIOKafkaProducer | None],
        topics: Topics,
        policy: Policy,
        poll_s: float = 1.0,
        batch: int = 100,
        publish_timeout_s: float = 10.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._engine = engine
        self._producer = producer
        self._topics = topics
        self._policy = policy
        self._poll_s = poll_s
        self._batch = batch
        self._publish_timeout_s = publish_timeout_s
        self._clock = clock
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.last_tick_at: float | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="actions-scheduler")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 15)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _run(self) -> None:
        backoff = self._poll_s
        while not self._stopping.is_set():
            try:
                fired = await self.tick()
                backoff = self._poll_s
            except Exception as exc:
                if not isinstance(exc, TRANSIENT_ERRORS):
                    log.exception("scheduler_tick_failed")
                else:
                    log.warning("scheduler_tick_retry", error=type(exc).__name__)
                await self._sleep(backoff)
                backoff = min(backoff * 2, 30)
                continue
            self.last_tick_at = time.monotonic()
            if fired < self._batch:
                await self._sleep(self._poll_s)

    async def tick(self) -> int:
        """Fire what is due now; returns how many timers were claimed."""
        producer = self._producer()
        if producer is None:
            return 0
        now = self._clock()
        async with self._engine.begin() as conn:
            due = await repository.claim_due_timers(conn, now=now, limit=self._batch)
            if not due:
                return 0
            records: list[OutgoingRecord] = []
            decisions: list[dict[str, Any]] = []
            follow_ups: list[TimerDraft] = []
            state = await _State.load(conn, due, now)
            results: list[tuple[DueTimer, Fired]] = []
            for timer in due:
                fired = await self._fire(conn, timer, now, state)
                results.append((timer, fired))
                follow_ups.extend(fired.timers)
                note = fired.notifications[0] if fired.notifications else None
                decision_id = f"timer/{timer.timer_id}"
                decisions.append(
                    {
                        "decision_id": decision_id,
                        "rule_id": fired.rule_id,
                        "action": fired.action,
                        "rating_id": timer.payload.get("rating_id"),
                        "customer_id": timer.customer_id,
                        "notification_id": note.notification_id if note else None,
                        "created_at": now,
                        "outcome": "notified" if note else fired.outcome,
                        "channel": note.channel.value if note else None,
                        "customer_facing": fired.customer_facing,
                        "ref": timer.timer_id,
                    }
                )
                for n in fired.notifications:
                    records.append(notification_record(self._topics, n, key=timer.customer_id or timer.ref))
                if note is not None:
                    records.append(
                        decided_record(
                            self._topics,
                            decision_id=decision_id,
                            rule_id=fired.rule_id,
                            action=fired.action,
                            rating_id=timer.payload.get("rating_id"),
                            customer_id=timer.customer_id,
                            key=timer.customer_id or timer.ref,
                            at=now,
                        )
                    )
            await repository.mark_timers(conn, {t.timer_id: f.outcome for t, f in results}, now=now)
            await repository.mark_escalated(
                conn, [f.escalated_alert for _, f in results if f.escalated_alert], now=now
            )
            await repository.complete_enrolments(
                conn,
                [
                    (t.customer_id, f.completes_sequence)
                    for t, f in results
                    if f.completes_sequence and t.customer_id
                ],
            )
            await repository.insert_timers(conn, follow_ups, now=now)
            await repository.insert_decisions(conn, decisions)
            await send_all(producer, records, timeout_s=self._publish_timeout_s)
        for timer, fired in results:
            TIMERS_FIRED.labels(timer.kind, fired.outcome).inc()
            TIMER_DELAY.labels(timer.kind).observe(max(0.0, (now - timer.due_at).total_seconds()))
            log.info("timer_fired", kind=timer.kind, timer_id=timer.timer_id, outcome=fired.outcome)
        return len(due)

    async def _fire(self, conn: AsyncConnection, timer: DueTimer, now: datetime, state: _State) -> Fired:
        if timer.kind == SLA_ESCALATION:
            alert = state.alerts.get(str(timer.payload.get("alert_id") or timer.ref))
            return fire_escalation(timer, alert=alert, now=now, policy=self._policy)
        if timer.kind == RESURVEY_NO_ANSWER:
            answered = await repository.resurvey_answered(conn, timer)
            return fire_no_answer(timer, answered=answered, now=now, policy=self._policy)
        if timer.kind == SEND and timer.customer_id:
            cid = timer.customer_id
            sequence = timer.payload.get("sequence")
            status = state.enrolments.get((cid, str(sequence["name"]))) if sequence else None
            fired = fire_send(
                timer,
                ctx=state.contexts.get(cid),
                sent_24h=state.sent.get(cid, 0),
                enrolment_status=status,
                now=now,
                policy=self._policy,
            )
            if fired.notifications:
                state.sent[cid] = state.sent.get(cid, 0) + 1
            return fired
        return Fired("skipped_unknown_kind", str(timer.payload.get("rule_id", "")), timer.kind)


@dataclass(slots=True)
class _State:
    """What the claimed timers need, read in a few queries for the whole tick."""

    alerts: dict[str, AlertState]
    contexts: dict[str, CustomerContext]
    sent: dict[str, int]
    enrolments: dict[tuple[str, str], str]

    @classmethod
    async def load(cls, conn: AsyncConnection, due: list[DueTimer], now: datetime) -> _State:
        alert_ids = [str(t.payload.get("alert_id") or t.ref) for t in due if t.kind == SLA_ESCALATION]
        customers = [t.customer_id for t in due if t.kind == SEND and t.customer_id]
        return cls(
            alerts=await repository.lock_alerts(conn, alert_ids),
            contexts=await repository.load_contexts(conn, customers),
            sent=await repository.sent_last_24h(conn, customers, now=now),
            enrolments=await repository.enrolment_statuses(conn, customers),
        )
