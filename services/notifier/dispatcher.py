"""The send loop: claims due deliveries, applies consent and fatigue, calls providers, records every outcome.

Life of a delivery (``notifier.deliveries``, one row per notification id):

    pending --claim--> sending --provider answer--> sent | failed | suppressed | unknown
       ^                  |
       +---- retry -------+   (429, 5xx, no connection: ``next_attempt_at`` = backoff or Retry-After)
    pending (quiet hours: ``next_attempt_at`` = the end of the recipient's quiet hours)

- The claim (status ``sending``, a claim token and a lease) is committed before a provider is called, so
  a crash between the provider's acceptance and our record leaves ``sending`` behind. When its lease
  expires, a provider that dedupes (our outbox, the signed webhook) is simply called again; any other
  is recorded ``unknown`` and never called again: a customer never gets the same message twice.
- An answer that may hide an acceptance (read timeout, connection dropped after the request left) is
  treated the same way: retried only where the provider dedupes, otherwise ``unknown``.
- Retries are scheduled in the table, not slept on: a slow or failing provider holds at most
  ``concurrency`` sends of its own channel and never stalls the Kafka partition or other channels.
- After ``max_attempts`` the delivery is ``failed`` and dead-lettered with its reason.
- Outcome and dead-letter events are written to ``notifier.event_outbox`` in the transaction that
  changes the row, then relayed to Kafka (deterministic CloudEvent ids, at-least-once).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.notifier import store
from services.notifier.delivery import TRACE_KEY
from services.notifier.metrics import NOTIFICATIONS, PROVIDER_ATTEMPTS
from services.notifier.policy import (
    QuietHours,
    address_key,
    backoff_delay,
    local_day,
    normalise_address,
    zone_for,
)
from services.notifier.providers import InTransactionProvider, Message, Provider, SendResult, Verdict
from services.notifier.templating import TemplateBroken, TemplateMissing, Templates
from services.notifier.tokens import UnsubscribeClaim, UnsubscribeTokens
from shared import events as ev
from shared import metrics as shared_metrics
from shared import tracing
from shared.consumer import is_transient
from shared.envelope import OutgoingRecord, encode
from shared.events import Channel, NotificationRequested, OutcomeStatus
from shared.logs import scrub
from shared.topics import Topics

log = structlog.get_logger(__name__)

Publish = Callable[[Sequence[OutgoingRecord]], Awaitable[None]]

#: How often attempts whose lease ran out are looked for (leases last tens of seconds).
RECOVER_EVERY = timedelta(seconds=1)
#: The relay runs after every transaction that wrote events, and at least this often for leftovers.
RELAY_EVERY_S = 1.0

#: Channels whose recipients can opt out by address (the suppression list's scopes).
ADDRESS_SCOPE = {Channel.EMAIL: "email", Channel.SMS: "sms"}


class PublisherUnavailable(RuntimeError):
    """The Kafka producer is not connected yet; events stay in the outbox until it is."""


def address(note: NotificationRequested) -> str | None:
    r = note.recipient
    return {Channel.EMAIL: r.email, Channel.SMS: r.phone, Channel.SLACK: r.url, Channel.WEBHOOK: r.url}[
        note.channel
    ]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Job:
    """One claimed attempt: what to send, through whom, and the token proving we still own it."""

    row: store.DeliveryRow
    note: NotificationRequested
    provider: Provider
    message: Message
    token: str
    attempts: int
    counted_day: date | None


@dataclass
class _Tx:
    """Side effects to apply only once the transaction that caused them committed."""

    metrics: list[tuple[str, str, str]] = field(default_factory=list)
    #: Attempts made inside the transaction (in-transaction providers): (provider, result kind).
    attempts: list[tuple[str, str]] = field(default_factory=list)
    #: Rendered and checked, not claimed yet.
    prepared: list[Job] = field(default_factory=list)
    #: Claimed ('sending' committed with the transaction): provider calls to start after the commit.
    jobs: list[Job] = field(default_factory=list)
    #: Delivered and recorded inside the transaction.
    delivered: int = 0

    def mark(self) -> tuple[int, int, int, int, int]:
        return len(self.metrics), len(self.attempts), len(self.prepared), len(self.jobs), self.delivered

    def undo(self, mark: tuple[int, int, int, int, int]) -> None:
        """Forget what a rolled-back savepoint did."""
        m, a, p, j, self.delivered = mark
        del self.metrics[m:], self.attempts[a:], self.prepared[p:], self.jobs[j:]

    def apply(self) -> None:
        for channel, provider, outcome in self.metrics:
            NOTIFICATIONS.labels(channel, provider, outcome).inc()
        for provider, kind in self.attempts:
            PROVIDER_ATTEMPTS.labels(provider, kind).inc()


@dataclass(frozen=True, slots=True)
class DispatchConfig:
    max_attempts: int = 5
    retry_base_s: float = 2.0
    retry_cap_s: float = 600.0
    interval_s: float = 0.2
    concurrency: int = 16
    #: Rows claimed per transaction for in-transaction providers (the outbox), which have no sends in flight.
    batch: int = 200
    #: At most this many provider answers recorded per transaction.
    record_batch: int = 100
    attempt_timeout_s: float = 31.0
    lease_grace_s: float = 30.0
    daily_cap: int = 3
    quiet: QuietHours | None = None
    default_zone: tzinfo = UTC
    public_base_url: str = "http://127.0.0.1:8003"
    unsubscribe_mailto: str | None = None


class Dispatcher:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        providers: Mapping[Channel, Provider],
        templates: Templates,
        tokens: UnsubscribeTokens,
        topics: Topics,
        publish: Publish,
        config: DispatchConfig,
        default_addresses: Mapping[Channel, str] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._engine = engine
        self._providers = providers
        self._by_name = {p.name: p for p in providers.values()}
        # isinstance() on a runtime-checkable Protocol is slow: decide once per provider.
        self._inline = {id(p) for p in providers.values() if isinstance(p, InTransactionProvider)}
        self._templates = templates
        self._tokens = tokens
        self._topics = topics
        self._publish = publish
        self._cfg = config
        self._defaults = dict(default_addresses or {})
        self._clock = clock
        self._inflight: dict[Channel, int] = defaultdict(int)
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.last_tick_at: float | None = None
        # Answers waiting to be recorded, a group per transaction (see ``_record_soon``).
        self._answers: list[tuple[Job, SendResult, asyncio.Future[None]]] = []
        self._recorder: asyncio.Task[None] | None = None
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
            self.last_tick_at = time.monotonic()
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
        tx = _Tx()
        limits: dict[str, int] = {}
        for channel, provider in self._providers.items():
            if id(provider) in self._inline:
                limits[channel.value] = self._cfg.batch
            else:
                limits[channel.value] = self._cfg.concurrency - self._inflight[channel]
        async with self._engine.begin() as conn:
            rows = await store.due_by_channel(conn, limits=limits, now=now)
            for row in rows:
                if not isolate:
                    await self._prepare(conn, tx, row, now)
                    continue
                mark = tx.mark()
                savepoint = await conn.begin_nested()
                try:
                    await self._prepare(conn, tx, row, now)
                    await self._start(conn, tx, tx.prepared[mark[2] :], now)
                    await savepoint.commit()
                except Exception as exc:
                    await savepoint.rollback()
                    tx.undo(mark)
                    if is_transient(exc):
                        raise
                    # One bad row must not stall the others: record it failed with its reason.
                    log.exception("delivery_prepare_failed", notification_id=row.notification_id)
                    await self._final(
                        conn,
                        tx,
                        row,
                        provider=row.provider,
                        status=OutcomeStatus.FAILED,
                        reason="internal",
                        detail=f"internal error: {type(exc).__name__}",
                    )
            if not isolate:
                await self._start(conn, tx, tx.prepared, now)
        tx.apply()
        if tx.metrics:
            self._relay_due = True
        for job in tx.jobs:
            self._inflight[job.note.channel] += 1
            task = asyncio.create_task(self._run(job), name=f"send-{job.row.notification_id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(tx.jobs) + tx.delivered

    async def _start(self, conn: AsyncConnection, tx: _Tx, jobs: Sequence[Job], now: datetime) -> None:
        """Claim prepared jobs: deliver through in-transaction providers now, commit a lease for the rest."""
        inline: dict[int, list[Job]] = defaultdict(list)
        claims: list[Job] = []
        for job in jobs:
            if id(job.provider) in self._inline:
                inline[id(job.provider)].append(job)
            else:
                claims.append(job)
        await self._mark_sending(conn, claims, now)
        tx.jobs.extend(claims)
        for group in inline.values():
            await self._deliver_in(conn, tx, group, now)

    async def _mark_sending(self, conn: AsyncConnection, jobs: Sequence[Job], now: datetime) -> None:
        lease_until = now + timedelta(seconds=self._cfg.attempt_timeout_s + self._cfg.lease_grace_s)
        await store.mark_sending_many(
            conn,
            claims=[
                store.Claim(
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

    async def _deliver_in(self, conn: AsyncConnection, tx: _Tx, jobs: Sequence[Job], now: datetime) -> None:
        """Deliver, record and enqueue the outcomes in the claiming transaction: all of it or none."""
        provider = jobs[0].provider
        assert isinstance(provider, InTransactionProvider)
        results = await provider.deliver_in(conn, [j.message for j in jobs])
        accepted: list[tuple[Job, SendResult]] = []
        for job, result in zip(jobs, results, strict=True):
            tx.attempts.append((provider.name, result.kind))
            if result.verdict is Verdict.ACCEPTED:
                accepted.append((job, result))
            else:  # not from the outbox today; any other answer takes the usual path
                await self._mark_sending(conn, [job], now)
                await self._record_in(conn, tx, job, result)
        at = self._clock()
        done = await store.record_sent_many(
            conn,
            sent=[
                store.Sent(
                    notification_id=j.row.notification_id,
                    token=j.token,
                    provider=provider.name,
                    attempts=j.attempts,
                    counted_day=j.counted_day,
                    provider_message_id=r.provider_message_id,
                    sent_at=at,
                )
                for j, r in accepted
            ],
        )
        events: list[OutgoingRecord] = []
        for job, result in accepted:
            if job.row.notification_id not in done:
                continue
            outcome = ev.NotificationOutcome(
                notification_id=job.row.notification_id,
                status=OutcomeStatus.SENT,
                channel=job.note.channel,
                provider=provider.name,
                attempts=job.attempts,
                detail=None,
                provider_message_id=result.provider_message_id,
                at=at,
                reason=None,
                rule_id=job.row.rule_id,
                customer_id=job.row.customer_id,
            )
            events.append(self._outcome_record(outcome, f"{job.row.notification_id}/sent", job.row))
            tx.metrics.append((job.row.channel, provider.name, OutcomeStatus.SENT.value))
        await store.enqueue_events(conn, records=events)
        tx.delivered += len(events)

    async def _prepare(self, conn: AsyncConnection, tx: _Tx, row: store.DeliveryRow, now: datetime) -> None:
        """Apply consent, quiet hours and the daily cap; render. Resolves the row or prepares a job."""
        note = NotificationRequested.model_validate(row.request)
        provider = self._providers[note.channel]
        to = address(note) or self._defaults.get(note.channel)
        if not to:
            await self._final(
                conn,
                tx,
                row,
                provider=provider.name,
                status=OutcomeStatus.FAILED,
                reason="no_address",
                detail="no recipient address",
            )
            return
        if note.channel is Channel.SMS:
            to = normalise_address("sms", to)  # E.164 as providers want it, without spaces or dashes
        zone = zone_for(note.recipient.timezone, self._cfg.default_zone)
        context = dict(note.context)
        headers: dict[str, str] = {}
        counted_day = row.counted_day
        scope = ADDRESS_SCOPE.get(note.channel)
        if not note.transactional:
            key = address_key(scope, to) if scope else None
            hit = await store.suppression_for(conn, customer_id=note.customer_id, scope=scope, key=key)
            if hit is not None:
                await self._final(
                    conn,
                    tx,
                    row,
                    provider=provider.name,
                    status=OutcomeStatus.SUPPRESSED,
                    reason="opted_out",
                    detail=f"on the suppression list ({hit})",
                )
                return
            if note.channel is Channel.SMS and self._cfg.quiet is not None:
                until = self._cfg.quiet.deferral(now, zone)
                if until is not None:
                    await self._defer(conn, tx, row, note, provider.name, until.astimezone(UTC))
                    return
            if self._cfg.daily_cap and note.customer_id and counted_day is None:
                day = local_day(now, zone)
                if not await store.reserve_daily(
                    conn, customer_id=note.customer_id, day=day, cap=self._cfg.daily_cap
                ):
                    await self._final(
                        conn,
                        tx,
                        row,
                        provider=provider.name,
                        status=OutcomeStatus.SUPPRESSED,
                        reason="daily_cap",
                        detail=f"daily cap of {self._cfg.daily_cap} messages reached",
                    )
                    return
                counted_day = day
            if scope is not None and key is not None:
                token = self._tokens.make(
                    UnsubscribeClaim(
                        customer_id=note.customer_id,
                        scope=scope,
                        address_key=key,
                        notification_id=note.notification_id,
                        locale=note.locale,
                    )
                )
                url = f"{self._cfg.public_base_url.rstrip('/')}/u/{token}"
                context["unsubscribe_url"] = url
                if note.channel is Channel.EMAIL:
                    targets = [f"<{url}>"]
                    if self._cfg.unsubscribe_mailto:
                        targets.append(
                            f"<mailto:{self._cfg.unsubscribe_mailto}?subject=unsubscribe%20{token}>"
                        )
                    headers["List-Unsubscribe"] = ", ".join(targets)
                    headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        try:
            rendered = self._templates.render(note.template, note.locale, context, channel=note.channel.value)
        except (TemplateMissing, TemplateBroken) as exc:
            await self._release(conn, row, note, counted_day)
            await self._final(
                conn,
                tx,
                row,
                provider=provider.name,
                status=OutcomeStatus.FAILED,
                reason="template",
                detail=str(exc),
            )
            return
        token = uuid.uuid4().hex
        attempts = row.attempts + 1
        message = Message(
            notification_id=note.notification_id,
            channel=note.channel,
            to=to,
            subject=rendered.subject,
            body=rendered.body,
            rule_id=note.rule_id,
            customer_id=note.customer_id,
            transactional=note.transactional,
            headers=headers,
            data=note.model_dump(mode="json", exclude={"recipient", "notification_id"}),
        )
        tx.prepared.append(Job(row, note, provider, message, token, attempts, counted_day))

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

    async def _record_soon(self, job: Job, result: SendResult) -> None:
        """Record an answer together with the others that arrive meanwhile: one transaction per group.

        No delay is added: while one group's transaction runs, the next group gathers. Returns once
        this answer is committed (or handed to the lease, as ``_record_with_retry`` does).
        """
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._answers.append((job, result, done))
        if self._recorder is None or self._recorder.done():
            self._recorder = asyncio.create_task(self._record_groups(), name="notifier-recorder")
        await done

    async def _record_groups(self) -> None:
        while self._answers:
            group = self._answers[: self._cfg.record_batch]
            del self._answers[: len(group)]
            try:
                await self._record_group(group)
            except Exception as exc:  # noqa: BLE001 - each answer gets its own transaction and retries
                log.warning("record_group_failed", answers=len(group), error=type(exc).__name__)
                await asyncio.gather(*(self._record_alone(job, result, done) for job, result, done in group))
                self._relay_due = True
                continue
            for _, _, done in group:
                done.set_result(None)

    async def _record_alone(self, job: Job, result: SendResult, done: asyncio.Future[None]) -> None:
        """As before grouping: one transaction, retried through an outage while the lease runs."""
        try:
            await self._record_with_retry(job, result)
        except Exception as err:  # noqa: BLE001 - handed to the waiting send, which logs it
            done.set_exception(err)
        else:
            done.set_result(None)

    async def _record_group(self, group: Sequence[tuple[Job, SendResult, asyncio.Future[None]]]) -> None:
        tx = _Tx()
        async with self._engine.begin() as conn:
            for job, result, _ in group:
                await self._record_in(conn, tx, job, result)
        tx.apply()
        self._relay_due = True

    async def _record_with_retry(self, job: Job, result: SendResult) -> None:
        """Record the provider's answer, retrying through a database outage for as long as the lease runs.

        Past the lease another pass may already have recorded the attempt ``unknown``; an acceptance
        recorded later still upgrades it to ``sent`` (same claim token).
        """
        delay = 0.2
        deadline = time.monotonic() + self._cfg.attempt_timeout_s + self._cfg.lease_grace_s
        while True:
            try:
                await self._record(job, result)
                return
            except Exception as exc:
                if not is_transient(exc):
                    raise
                if time.monotonic() > deadline:
                    log.error("record_failed_lease_will_resolve", notification_id=job.row.notification_id)
                    return
                log.warning("record_retry", notification_id=job.row.notification_id, error=type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5)

    async def _record(self, job: Job, result: SendResult) -> None:
        tx = _Tx()
        async with self._engine.begin() as conn:
            await self._record_in(conn, tx, job, result)
        tx.apply()
        self._relay_due = True

    async def _record_in(self, conn: AsyncConnection, tx: _Tx, job: Job, result: SendResult) -> None:
        """Apply one provider answer to its row (the claim token proves the attempt still owns it)."""
        now = self._clock()
        verdict = result.verdict
        if verdict is Verdict.AMBIGUOUS and job.provider.dedupes:
            verdict = Verdict.RETRY
        row, note, name, token = job.row, job.note, job.provider.name, job.token
        if verdict is Verdict.ACCEPTED:
            recorded = await self._final(
                conn,
                tx,
                row,
                provider=name,
                status=OutcomeStatus.SENT,
                reason=None,
                detail=None,
                provider_message_id=result.provider_message_id,
                token=token,
                attempts=job.attempts,
                from_statuses=("sending", "unknown"),
            )
            if not recorded:
                log.warning("late_answer_ignored", notification_id=row.notification_id, verdict="accepted")
        elif verdict is Verdict.RETRY and job.attempts < self._cfg.max_attempts:
            delay = backoff_delay(
                job.attempts,
                base=self._cfg.retry_base_s,
                cap=self._cfg.retry_cap_s,
                retry_after=result.retry_after_s,
            )
            await store.reschedule(
                conn,
                notification_id=row.notification_id,
                at=now + timedelta(seconds=delay),
                reason=f"retry:{result.kind}",
                error=scrub(result.detail)[:500] if result.detail else None,
                token=token,
            )
        elif verdict is Verdict.RETRY:
            await self._exhausted(
                conn,
                tx,
                row,
                provider=name,
                token=token,
                attempts=job.attempts,
                counted_day=job.counted_day,
                detail=result.detail,
            )
        elif verdict is Verdict.AMBIGUOUS:
            await self._final(
                conn,
                tx,
                row,
                provider=name,
                status=OutcomeStatus.UNKNOWN,
                reason="ambiguous",
                detail=f"{result.detail}; not resent: {name} takes no idempotency key",
                token=token,
                attempts=job.attempts,
            )
        elif verdict is Verdict.RECIPIENT_OPTED_OUT:
            entries = []
            scope = ADDRESS_SCOPE.get(note.channel)
            if scope is not None:
                entries.append((scope, address_key(scope, job.message.to)))
            if note.channel is Channel.SMS and note.customer_id:
                entries.append(("customer", note.customer_id))
            await store.suppress(
                conn,
                entries=entries,
                reason="provider_opt_out",
                source=name,
                customer_id=note.customer_id,
                notification_id=note.notification_id,
            )
            await self._release(conn, row, note, job.counted_day)
            await self._final(
                conn,
                tx,
                row,
                provider=name,
                status=OutcomeStatus.SUPPRESSED,
                reason="provider_opt_out",
                detail=result.detail,
                token=token,
                attempts=job.attempts,
            )
        else:
            await self._release(conn, row, note, job.counted_day)
            await self._final(
                conn,
                tx,
                row,
                provider=name,
                status=OutcomeStatus.FAILED,
                reason="rejected",
                detail=result.detail,
                token=token,
                attempts=job.attempts,
            )

    async def _exhausted(
        self,
        conn: AsyncConnection,
        tx: _Tx,
        row: store.DeliveryRow,
        *,
        provider: str,
        token: str | None,
        attempts: int,
        counted_day: date | None,
        detail: str | None,
    ) -> None:
        reason = f"gave up after {attempts} attempts: {detail or 'no detail'}"
        note = NotificationRequested.model_validate(row.request)
        await self._release(conn, row, note, counted_day)
        done = await self._final(
            conn,
            tx,
            row,
            provider=provider,
            status=OutcomeStatus.FAILED,
            reason="exhausted",
            detail=reason,
            token=token,
            attempts=attempts,
        )
        if done:
            await store.enqueue_events(conn, records=[self._dead_letter(row, reason)])
            shared_metrics.DLQ_RECORDS.labels("notifier", "delivery_exhausted").inc()

    # ---- crash recovery ------------------------------------------------------------------------------
    async def _recover(self, now: datetime) -> None:
        """Resolve attempts whose lease ran out: the process that made them died before recording."""
        tx = _Tx()
        async with self._engine.begin() as conn:
            for row in await store.expired_leases(conn, now=now):
                provider = self._by_name.get(row.provider)
                if provider is not None and provider.dedupes:
                    if row.attempts >= self._cfg.max_attempts:
                        await self._exhausted(
                            conn,
                            tx,
                            row,
                            provider=row.provider,
                            token=row.claim_token,
                            attempts=row.attempts,
                            counted_day=row.counted_day,
                            detail="the last attempt's sender stopped before recording an answer",
                        )
                    else:
                        await store.reschedule(
                            conn, notification_id=row.notification_id, at=now, reason="recovered", error=None
                        )
                    continue
                log.warning("crashed_mid_send", notification_id=row.notification_id, provider=row.provider)
                await self._final(
                    conn,
                    tx,
                    row,
                    provider=row.provider,
                    status=OutcomeStatus.UNKNOWN,
                    reason="crashed_mid_send",
                    detail=f"the notifier stopped after calling {row.provider} and before recording its "
                    "answer; not resent, to avoid a duplicate",
                    from_statuses=("sending",),
                    keep_token=True,
                )
        tx.apply()
        if tx.metrics:
            self._relay_due = True

    # ---- recording -----------------------------------------------------------------------------------
    async def _defer(
        self,
        conn: AsyncConnection,
        tx: _Tx,
        row: store.DeliveryRow,
        note: NotificationRequested,
        provider: str,
        until: datetime,
    ) -> None:
        await store.reschedule(
            conn, notification_id=row.notification_id, at=until, reason="quiet_hours", error=None
        )
        outcome = ev.NotificationOutcome(
            notification_id=row.notification_id,
            status=OutcomeStatus.DEFERRED,
            channel=note.channel,
            provider=provider,
            attempts=row.attempts,
            detail="quiet hours in the recipient's time zone",
            at=self._clock(),
            reason="quiet_hours",
            rule_id=note.rule_id,
            customer_id=note.customer_id,
            next_attempt_at=until,
        )
        event_id = f"{row.notification_id}/deferred/{int(until.timestamp())}"
        await store.enqueue_events(conn, records=[self._outcome_record(outcome, event_id, row)])
        tx.metrics.append((note.channel.value, provider, OutcomeStatus.DEFERRED.value))

    async def _final(
        self,
        conn: AsyncConnection,
        tx: _Tx,
        row: store.DeliveryRow,
        *,
        provider: str,
        status: OutcomeStatus,
        reason: str | None,
        detail: str | None,
        provider_message_id: str | None = None,
        token: str | None = None,
        attempts: int | None = None,
        from_statuses: Sequence[str] = ("pending", "sending"),
        keep_token: bool = False,
    ) -> bool:
        """Record a final status and its outcome event in one transaction; False if someone else did."""
        now = self._clock()
        # Provider error texts can quote the address ("Found inactive addresses: ..."): keep it out of
        # the table and the topic, which other teams read and log.
        detail = scrub(detail)[:500] if detail else detail
        done = await store.finish(
            conn,
            notification_id=row.notification_id,
            status=status.value,
            reason=reason,
            detail=detail,
            provider=provider,
            provider_message_id=provider_message_id,
            sent_at=now if status is OutcomeStatus.SENT else None,
            token=token if not keep_token else row.claim_token,
            from_statuses=from_statuses,
        )
        if not done:
            return False
        outcome = ev.NotificationOutcome(
            notification_id=row.notification_id,
            status=status,
            channel=Channel(row.channel),
            provider=provider,
            attempts=row.attempts if attempts is None else attempts,
            detail=detail,
            provider_message_id=provider_message_id,
            at=now,
            reason=reason,
            rule_id=row.rule_id,
            customer_id=row.customer_id,
        )
        await store.enqueue_events(
            conn, records=[self._outcome_record(outcome, f"{row.notification_id}/{status.value}", row)]
        )
        tx.metrics.append((row.channel, provider, status.value))
        if status is not OutcomeStatus.SENT:
            log.info(
                "notification_not_sent",
                notification_id=row.notification_id,
                status=status.value,
                reason=reason,
                provider=provider,
            )
        return True

    async def _release(
        self, conn: AsyncConnection, row: store.DeliveryRow, note: NotificationRequested, day: date | None
    ) -> None:
        if day is not None and note.customer_id:
            await store.release_daily(
                conn, notification_id=row.notification_id, customer_id=note.customer_id, day=day
            )

    def _outcome_record(
        self, outcome: ev.NotificationOutcome, event_id: str, row: store.DeliveryRow
    ) -> OutgoingRecord:
        """The outcome continues the trace of the request (and so of the rating) behind it."""
        with tracing.span(tracing.continue_from(row.request.get(TRACE_KEY))):
            return encode(
                topic=self._topics.outcomes,
                event_type=ev.NOTIFICATION_OUTCOME,
                source="/notifier",
                event_id=event_id,
                data=outcome,
                key=outcome.customer_id or outcome.notification_id,
                subject=outcome.notification_id,
            )

    def _dead_letter(self, row: store.DeliveryRow, reason: str) -> OutgoingRecord:
        letter = ev.DeadLetter(
            consumer="notifier",
            reason=reason[:2000],
            topic=row.source_topic or self._topics.notifications,
            partition=row.source_partition if row.source_partition is not None else -1,
            offset=row.source_offset if row.source_offset is not None else -1,
            key=row.customer_id,
            value_b64=base64.b64encode(
                NotificationRequested.model_validate(row.request).model_dump_json().encode()
            ).decode(),
            headers={"ce_type": ev.NOTIFICATION_REQUESTED, "ce_id": row.event_id or row.notification_id},
            failed_at=self._clock(),
        )
        return encode(
            topic=self._topics.dlq_notifier,
            event_type=ev.DEAD_LETTER,
            source="/notifier",
            event_id=f"notifier:delivery:{row.notification_id}",
            data=letter,
            key=row.customer_id or row.notification_id,
            extensions={"dlqreason": "delivery_exhausted"},
        )

    # ---- event relay ---------------------------------------------------------------------------------
    async def relay(self, *, batch: int = 500) -> int:
        """Publish outcome and dead-letter events written by committed transactions, then delete them."""
        self._relay_due = False
        self._relayed_at = time.monotonic()
        total = 0
        while True:
            async with self._engine.begin() as conn:
                items = await store.take_events(conn, limit=batch)
                if not items:
                    return total
                try:
                    await self._publish([r for _, r in items])
                except PublisherUnavailable:
                    return total
                await store.delete_events(conn, ids=[i for i, _ in items])
            total += len(items)
            if len(items) < batch:
                return total
