"""The timer loop: claims due timers with ``FOR UPDATE SKIP LOCKED`` and fires each exactly once.

One transaction per tick: claim, fire (alert state, context and caps read under the same
transaction), write decisions and follow-up timers, publish the messages (acks=all), mark the timers
fired, commit. A crash before the commit leaves the timers pending and they fire again with the same
deterministic notification ids, which the notifier dedupes; replicas never fire the same timer
concurrently because the claim locks it. What firing decides is ``handlers.TimerHandler``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import UTC, datetime

import structlog
from aiokafka import AIOKafkaProducer
from prometheus_client import Counter, Histogram

from services.actions.engine import Policy
from services.actions.handlers import TimerHandler
from services.actions.ports import Transactions
from services.actions.survey_handler import SurveyHandler
from shared.consumer import TRANSIENT_ERRORS
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
        transactions: Transactions,
        producer: Callable[[], AIOKafkaProducer | None],
        topics: Topics,
        policy: Policy,
        poll_s: float = 1.0,
        batch: int = 100,
        publish_timeout_s: float = 10.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        surveys: SurveyHandler | None = None,
    ) -> None:
        self._surveys = surveys
        self._transactions = transactions
        self._producer = producer
        self._fire = TimerHandler(topics=topics, policy=policy)
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
        async with self._transactions.begin() as stores:
            tick = await self._fire(stores, now=now, limit=self._batch)
            invitations, records = 0, list(tick.records)
            if self._surveys is not None:
                invitations, survey_records = await self._surveys.fire(stores, now=now, limit=self._batch)
                records += survey_records
            if not tick.firings and not invitations:
                return 0
            await send_all(producer, records, timeout_s=self._publish_timeout_s)
        for timer, fired in tick.firings:
            TIMERS_FIRED.labels(timer.kind, fired.outcome).inc()
            TIMER_DELAY.labels(timer.kind).observe(max(0.0, (now - timer.due_at).total_seconds()))
            log.info("timer_fired", kind=timer.kind, timer_id=timer.timer_id, outcome=fired.outcome)
        return max(len(tick.firings), invitations)
