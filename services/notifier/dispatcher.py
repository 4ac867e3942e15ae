"""The send loop: claims due deliveries, applies the transitions ``transitions`` decides, calls providers.

- The claim (status ``sending``, a claim token and a lease) is committed before a provider is called, so
  a crash between the provider's acceptance and our record leaves ``sending`` behind; when its lease
  expires, ``transitions.recover`` decides (resend where the provider dedupes, otherwise ``unknown``).
- Retries are scheduled in the table, not slept on: a slow or failing provider holds at most
  ``concurrency`` sends of its own channel and never stalls the Kafka partition or other channels.
- Round trips are shared: due rows of every channel are claimed in one statement, their suppression
  entries looked up in one, in-transaction providers (the outbox) deliver a whole batch in the claiming
  transaction, and provider answers that arrive together are recorded in one transaction.
- Outcome and dead-letter events are written to the event outbox in the transaction that changes the
  row, then relayed to Kafka (deterministic CloudEvent ids, at-least-once).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta

import structlog

from services.notifier.metrics import PROVIDER_ATTEMPTS
from services.notifier.ports import (
    Claim,
    DailySlot,
    Deliveries,
    DeliveryRow,
    DeliveryStore,
    Sent,
    SuppressionLookup,
)
from services.notifier.providers import InTransactionProvider, Message, Provider, SendResult, Verdict
from services.notifier.recorder import Attempted, Effects, Recorder
from services.notifier.templating import Templates
from services.notifier.tokens import UnsubscribeTokens
from services.notifier.transitions import (
    Admit,
    Answer,
    Defer,
    DispatchConfig,
    Due,
    Final,
    Send,
    address_of,
    admit,
    compose,
    counted_slot,
    internal_error,
    over_daily_cap,
    record,
    recover,
)
from shared import metrics as shared_metrics
from shared.consumer import is_transient
from shared.envelope import OutgoingRecord
from shared.events import Channel, NotificationRequested, OutcomeStatus
from shared.topics import Topics

log = structlog.get_logger(__name__)

Publish = Callable[[Sequence[OutgoingRecord]], Awaitable[None]]

#: How often attempts whose lease ran out are looked for (leases last tens of seconds).
RECOVER_EVERY = timedelta(seconds=1)
#: The relay runs after every transaction that wrote events, and at least this often for leftovers.
RELAY_EVERY_S = 1.0


class PublisherUnavailable(RuntimeError):
    """The Kafka producer is not connected yet; events stay in the outbox until it is."""


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Job:
    """One claimed attempt: what to send, through whom, and the token proving we still own it."""

    row: DeliveryRow
    note: NotificationRequested
    provider: Provider
    message: Message
    token: str
    attempts: int
    counted_day: date | None
    slot: DailySlot | None = None
    address_key: str | None = None

    def answer(self, result: SendResult) -> Answer:
        return Answer(
            result=result,
            provider=self.provider.name,
            dedupes=self.provider.dedupes,
            token=self.token,
            attempts=self.attempts,
            channel=self.note.channel,
            to=self.message.to,
            customer_id=self.note.customer_id,
            slot=self.slot,
            address_key=self.address_key,
        )


@dataclass
class _Claimed:
    """What one claiming transaction did: metrics to count at commit, sends to start, messages delivered."""

    effects: Effects = field(default_factory=Effects)
    jobs: list[Job] = field(default_factory=list)
    delivered: int = 0

    def merge(self, other: _Claimed) -> None:
        self.effects.merge(other.effects)
        self.jobs += other.jobs
        self.delivered += other.delivered


@dataclass(frozen=True, slots=True)
class _Waiting:
    """A provider's answer waiting to be recorded with the others of its group."""

    job: Job
    result: SendResult
    done: asyncio.Future[None]


class Dispatcher:
    def __init__(
        self,
        *,
        store: DeliveryStore,
        providers: Mapping[Channel, Provider],
        templates: Templates,
        tokens: UnsubscribeTokens,
        topics: Topics,
        publish: Publish,
        config: DispatchConfig,
        default_addresses: Mapping[Channel, str] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store = store
        self._providers = providers
        self._by_name = {p.name: p for p in providers.values()}
        # isinstance() on a runtime-checkable Protocol is slow: decide once per provider.
        self._inline = {id(p) for p in providers.values() if isinstance(p, InTransactionProvider)}
        self._templates = templates
        self._tokens = tokens
        self._publish = publish
        self._cfg = config
        self._defaults = dict(default_addresses or {})
        self._clock = clock
        self._recorder = Recorder(topics=topics, clock=clock)
        self._inflight: dict[Channel, int] = defaultdict(int)
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Answers waiting to be recorded, a group per transaction (see ``_record_soon``).
        self._answers: list[_Waiting] = []
        self._grouping: asyncio.Task[None] | None = None
        self._recovered_at: datetime | None = None
        self._relay_due = True
        self._relayed_at = 0.0

    # ---- lifecycle -----------------------------------------------------------------------------------
    async def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="notifier-dispatcher")

    async def stop(self) -> None:
        """Let in-flight sends record their answers, publish what is left, then stop."""
        self._stopping.set()
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 5)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
        await self.drain(self._cfg.attempt_timeout_s + 2)
        try:
            await asyncio.wait_for(self.relay(), 10)
        except Exception as exc:  # noqa: BLE001 - shutting down; the outbox keeps the events for next start
            log.info("final_relay_skipped", error=type(exc).__name__)

    async def drain(self, timeout_s: float | None = None) -> None:
        """Wait for the sends in flight to record their answers."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)

    def wake(self) -> None:
        self._wake.set()

    def check(self) -> None:
        """Readiness: the loop is alive."""
        if self._task is None or self._task.done():
            raise RuntimeError("dispatcher not running")

    async def run(self) -> None:
        delay = self._cfg.interval_s
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                await self.tick()
                delay = self._cfg.interval_s
            except Exception as exc:  # noqa: BLE001 - the loop must outlive a database or broker outage
                kind = "database" if is_transient(exc) else "dispatcher"
                shared_metrics.CONSUMER_ERRORS.labels("notifier-dispatcher", kind).inc()
                log.warning("dispatch_tick_failed", error=type(exc).__name__, detail=str(exc)[:200])
                delay = min(max(delay * 2, 0.5), 10.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def tick(self) -> int:
        """One pass: recover crashed attempts, start due sends, relay events; returns the sends started.

        Leases run for tens of seconds, so expired ones are looked for at most once a second; the relay
        runs after any transaction that wrote events, and at least once a second for leftovers.
        """
        now = self._clock()
        if self._recovered_at is None or now - self._recovered_at >= RECOVER_EVERY:
            await self._recover(now)
            self._recovered_at = now
        started = 0
        if not self._stopping.is_set():
            started = await self._claim(now)
        if self._relay_due or time.monotonic() - self._relayed_at >= RELAY_EVERY_S:
            try:
                await self.relay()
            except Exception as exc:  # noqa: BLE001 - a broker outage must not slow sending; events wait in the table
                shared_metrics.CONSUMER_ERRORS.labels("notifier-dispatcher", "broker").inc()
                log.warning("relay_failed", error=type(exc).__name__)
        return started

    def _committed(self, effects: Effects) -> None:
        effects.apply()
        if effects.outcomes:
            self._relay_due = True

    # ---- claiming ------------------------------------------------------------------------------------
    async def _claim(self, now: datetime) -> int:
        """Claim due rows in one transaction; if one row breaks the batch, redo it row by row."""
        try:
            return await self._claim_batch(now, isolate=False)
        except Exception as exc:
            if is_transient(exc):
                raise
            log.warning("claim_batch_failed_isolating", error=type(exc).__name__)
            return await self._claim_batch(now, isolate=True)

    async def _claim_batch(self, now: datetime, *, isolate: bool) -> int:
        """Check, render and claim due rows; deliver in-transaction ones at once; start the other sends.

        Without ``isolate`` every statement covers the whole batch. With it, each row runs in its own
        savepoint, so a row that fails is recorded ``failed`` and the others still go.
        """
        claimed = _Claimed()
        async with self._store.begin() as tx:
            rows = await tx.due_by_channel(limits=self._room(), now=now)
            if isolate:
                for row in rows:
                    await self._claim_alone(tx, claimed, row, now)
            else:
                await self._start(tx, claimed, await self._prepare(tx, claimed.effects, rows, now), now)
        self._committed(claimed.effects)
        for job in claimed.jobs:
            self._inflight[job.note.channel] += 1
            task = asyncio.create_task(self._run(job), name=f"send-{job.row.notification_id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(claimed.jobs) + claimed.delivered

    def _room(self) -> dict[str, int]:
        """Rows to claim per channel: a batch for in-transaction providers, free send slots for others."""
        room: dict[str, int] = {}
        for channel, provider in self._providers.items():
            if id(provider) in self._inline:
                room[channel.value] = self._cfg.batch
            else:
                room[channel.value] = self._cfg.concurrency - self._inflight[channel]
        return room

    async def _claim_alone(self, tx: Deliveries, claimed: _Claimed, row: DeliveryRow, now: datetime) -> None:
        """Prepare and claim one row in a savepoint; one that fails is recorded ``failed`` with its reason."""
        mine = _Claimed()
        try:
            async with tx.savepoint():
                await self._start(tx, mine, await self._prepare(tx, mine.effects, [row], now), now)
        except Exception as exc:
            if is_transient(exc):
                raise
            # One bad row must not stall the others: record it failed with its reason.
            log.exception("delivery_prepare_failed", notification_id=row.notification_id)
            await self._recorder.apply(tx, claimed.effects, row, internal_error(row, exc))
        else:
            claimed.merge(mine)

    async def _prepare(
        self, tx: Deliveries, effects: Effects, rows: Sequence[DeliveryRow], now: datetime
    ) -> list[Job]:
        """Load the facts of due rows, let ``transitions`` decide each, and return the jobs to claim."""
        dues = []
        for row in rows:
            note = NotificationRequested.model_validate(row.request)
            provider = self._providers[note.channel].name
            to = address_of(note, self._defaults.get(note.channel), self._cfg.address_keys)
            dues.append(Due(row=row, note=note, provider=provider, address=to, suppressed=None, now=now))
        lookups = [
            SuppressionLookup(
                d.row.notification_id,
                d.note.customer_id,
                d.address.scope,
                d.address.candidates,
                self._cfg.address_keys.customer_candidates(d.note.customer_id) if d.note.customer_id else (),
            )
            for d in dues
            if d.address is not None and not d.note.transactional
        ]
        suppressed = await tx.suppressions_for(lookups=lookups) if lookups else {}
        jobs = []
        for due in dues:
            step = await self._admit(tx, replace(due, suppressed=suppressed.get(due.row.notification_id)))
            if not isinstance(step, Send):
                await self._recorder.apply(tx, effects, due.row, step)
                continue
            job = Job(
                row=due.row,
                note=due.note,
                provider=self._providers[due.note.channel],
                message=step.message,
                token=uuid.uuid4().hex,
                attempts=step.attempts,
                counted_day=step.counted_day,
                slot=step.slot,
                address_key=step.address_key,
            )
            jobs.append(job)
        return jobs

    async def _admit(self, tx: Deliveries, due: Due) -> Send | Final | Defer:
        """Consent, quiet hours and the daily caps (reserving their slots), then the message itself."""
        step = admit(due, self._cfg)
        if isinstance(step, Admit) and step.reserve is not None:
            full = await tx.reserve_daily(slot=step.reserve, caps=self._cfg.caps)
            if full is not None:
                return over_daily_cap(due, self._cfg, cap=full)
        if isinstance(step, Admit):
            return compose(due, step, self._cfg, templates=self._templates, tokens=self._tokens)
        return step

    async def _start(self, tx: Deliveries, claimed: _Claimed, jobs: Sequence[Job], now: datetime) -> None:
        """Claim prepared jobs: deliver through in-transaction providers now, commit a lease for the rest."""
        inline: dict[int, list[Job]] = defaultdict(list)
        claims: list[Job] = []
        for job in jobs:
            if id(job.provider) in self._inline:
                inline[id(job.provider)].append(job)
            else:
                claims.append(job)
        await self._mark_sending(tx, claims, now)
        claimed.jobs.extend(claims)
        for group in inline.values():
            claimed.delivered += await self._deliver_in(tx, claimed.effects, group, now)

    async def _mark_sending(self, tx: Deliveries, jobs: Sequence[Job], now: datetime) -> None:
        lease_until = now + timedelta(seconds=self._cfg.attempt_timeout_s + self._cfg.lease_grace_s)
        await tx.mark_sending_many(
            claims=[
                Claim(
                    notification_id=j.row.notification_id,
                    token=j.token,
                    provider=j.provider.name,
                    attempts=j.attempts,
                    lease_until=lease_until,
                    counted_day=j.counted_day,
                )
                for j in jobs
            ],
        )

    async def _deliver_in(self, tx: Deliveries, effects: Effects, jobs: Sequence[Job], now: datetime) -> int:
        """Deliver, record and enqueue the outcomes in the claiming transaction: all of it or none."""
        provider = jobs[0].provider
        assert isinstance(provider, InTransactionProvider)
        results = await tx.deliver_in(provider=provider, messages=[j.message for j in jobs])
        at = self._clock()
        sent = []
        for job, result in zip(jobs, results, strict=True):
            effects.attempts.append(Attempted(provider.name, result.kind))
            if result.verdict is not Verdict.ACCEPTED:  # not from the outbox today: the usual path
                await self._mark_sending(tx, [job], now)
                step = record(job.answer(result), self._cfg, now=self._clock())
                await self._recorder.apply(tx, effects, job.row, step)
                continue
            sent.append(
                Sent(
                    notification_id=job.row.notification_id,
                    token=job.token,
                    provider=provider.name,
                    attempts=job.attempts,
                    counted_day=job.counted_day,
                    provider_message_id=result.provider_message_id,
                    sent_at=at,
                )
            )
        rows = {j.row.notification_id: j.row for j in jobs}
        return await self._recorder.sent(tx, effects, rows=rows, sent=sent)

    # ---- sending -------------------------------------------------------------------------------------
    async def _run(self, job: Job) -> None:
        try:
            try:
                result = await asyncio.wait_for(job.provider.send(job.message), self._cfg.attempt_timeout_s)
            except TimeoutError:
                result = SendResult(Verdict.AMBIGUOUS, "timeout_after_send", detail="attempt deadline passed")
            except Exception as exc:  # an adapter bug after the request left: treat as ambiguous
                log.exception("provider_send_crashed", provider=job.provider.name)
                result = SendResult(
                    Verdict.AMBIGUOUS, "timeout_after_send", detail=f"adapter: {type(exc).__name__}"
                )
            PROVIDER_ATTEMPTS.labels(job.provider.name, result.kind).inc()
            try:
                await self._record_soon(job, result)
            except Exception:  # a bug while recording: the lease resolves the attempt, never a resend
                log.exception("record_crashed", notification_id=job.row.notification_id)
        finally:
            self._inflight[job.note.channel] -= 1
            self._wake.set()

    # ---- recording answers ---------------------------------------------------------------------------
    async def _record_soon(self, job: Job, result: SendResult) -> None:
        """Record an answer together with the others that arrive meanwhile: one transaction per group.

        No delay is added: while one group's transaction runs, the next group gathers. Returns once
        this answer is committed (or handed to the lease, as ``_record_with_retry`` does).
        """
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._answers.append(_Waiting(job, result, done))
        if self._grouping is None or self._grouping.done():
            self._grouping = asyncio.create_task(self._record_groups(), name="notifier-recorder")
        await done

    async def _record_groups(self) -> None:
        while self._answers:
            group = self._answers[: self._cfg.record_batch]
            del self._answers[: len(group)]
            try:
                await self._record(group)
            except Exception as exc:  # noqa: BLE001 - each answer gets its own transaction and retries
                log.warning("record_group_failed", answers=len(group), error=type(exc).__name__)
                await asyncio.gather(*(self._record_alone(w) for w in group))
                self._relay_due = True
                continue
            for waiting in group:
                waiting.done.set_result(None)

    async def _record_alone(self, waiting: _Waiting) -> None:
        """As before grouping: one transaction, retried through an outage while the lease runs."""
        try:
            await self._record_with_retry(waiting)
        except Exception as err:  # noqa: BLE001 - handed to the waiting send, which logs it
            waiting.done.set_exception(err)
        else:
            waiting.done.set_result(None)

    async def _record_with_retry(self, waiting: _Waiting) -> None:
        """Record the provider's answer, retrying through a database outage for as long as the lease runs.

        Past the lease another pass may already have recorded the attempt ``unknown``; an acceptance
        recorded later still upgrades it to ``sent`` (same claim token).
        """
        delay = 0.2
        deadline = time.monotonic() + self._cfg.attempt_timeout_s + self._cfg.lease_grace_s
        nid = waiting.job.row.notification_id
        while True:
            try:
                await self._record([waiting])
                return
            except Exception as exc:
                if not is_transient(exc):
                    raise
                if time.monotonic() > deadline:
                    log.error("record_failed_lease_will_resolve", notification_id=nid)
                    return
                log.warning("record_retry", notification_id=nid, error=type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5)

    async def _record(self, group: Sequence[_Waiting]) -> None:
        """Apply each answer of a group to its row in one transaction (the claim token proves ownership)."""
        effects = Effects()
        async with self._store.begin() as tx:
            for waiting in group:
                step = record(waiting.job.answer(waiting.result), self._cfg, now=self._clock())
                await self._recorder.apply(tx, effects, waiting.job.row, step)
        effects.apply()
        self._relay_due = True

    # ---- crash recovery ------------------------------------------------------------------------------
    async def _recover(self, now: datetime) -> None:
        """Resolve attempts whose lease ran out: the process that made them died before recording."""
        effects = Effects()
        async with self._store.begin() as tx:
            for row in await tx.expired_leases(now=now):
                provider = self._by_name.get(row.provider)
                dedupes = provider is not None and provider.dedupes
                release = counted_slot(row, self._cfg)
                step = recover(row, dedupes=dedupes, cfg=self._cfg, now=now, release=release)
                if isinstance(step, Final) and step.status is OutcomeStatus.UNKNOWN:
                    log.warning(
                        "crashed_mid_send", notification_id=row.notification_id, provider=row.provider
                    )
                await self._recorder.apply(tx, effects, row, step)
        self._committed(effects)

    # ---- event relay ---------------------------------------------------------------------------------
    async def relay(self, *, batch: int = 500) -> int:
        """Publish outcome and dead-letter events written by committed transactions, then delete them."""
        self._relay_due = False
        self._relayed_at = time.monotonic()
        total = 0
        while True:
            async with self._store.begin() as tx:
                items = await tx.take_events(limit=batch)
                if not items:
                    return total
                try:
                    await self._publish([e.record for e in items])
                except PublisherUnavailable:
                    return total
                await tx.delete_events(ids=[e.id for e in items])
            total += len(items)
            if len(items) < batch:
                return total
