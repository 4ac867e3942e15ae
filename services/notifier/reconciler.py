"""The reconciler: asks providers about ``unknown`` deliveries and applies what ``reconcile`` decides.

Only providers with a lookup (``LookupProvider``: SendGrid's Email Activity API) are reconciled; the
others' unknown rows stay for a person, as before. Safe with several replicas and across crashes:

- a look is claimed (``reconcile_token``, a claim that expires) and committed before the provider is
  asked, and rows are taken with SKIP LOCKED, so two replicas never look at one row at once;
- the lookup only reads; its answer is applied in a new transaction, only if the row is still
  ``unknown`` and still this look's (a late provider answer recording ``sent`` meanwhile wins);
- a kill during a look leaves the claim to expire: the row is looked at again, nothing is sent by the
  reconciler itself. "Absent, twice" puts the row back to ``pending`` in one transaction; the
  dispatcher then sends it once like any due delivery (its claim, lease and dedupe record).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import structlog

from services.notifier.metrics import RECONCILED
from services.notifier.ports import UnknownDeliveries, UnknownRow, UnknownStore
from services.notifier.providers import CannotTell, LookupProvider, LookupResult, Provider
from services.notifier.reconcile import (
    Budget,
    GiveUp,
    LookAgain,
    Looked,
    MarkSent,
    ReconcileConfig,
    Requeue,
    decide,
    result_label,
)
from services.notifier.recorder import Effects, Recorder
from services.notifier.transitions import DispatchConfig, Final, counted_slot, exhausted
from shared import metrics as shared_metrics
from shared.consumer import is_transient
from shared.events import Channel, OutcomeStatus
from shared.topics import Topics

log = structlog.get_logger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Reconciler:
    def __init__(
        self,
        *,
        store: UnknownStore,
        providers: Mapping[Channel, Provider],
        topics: Topics,
        dispatch: DispatchConfig,
        config: ReconcileConfig,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store = store
        self._lookups: dict[str, LookupProvider] = {
            p.name: p for p in providers.values() if isinstance(p, LookupProvider)
        }
        self._dispatch = dispatch
        self._cfg = config
        self._clock = clock
        self._recorder = Recorder(topics=topics, clock=clock)
        self._budget = Budget(config.lookups_per_minute, now=time.monotonic())
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        return self._cfg.enabled and bool(self._lookups)

    async def start(self) -> None:
        if self.active:
            self._task = asyncio.create_task(self.run(), name="notifier-reconciler")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()  # a look cut short only leaves its claim to expire
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.reconcile()
            except Exception as exc:  # noqa: BLE001 - the loop must outlive a database or provider outage
                kind = "database" if is_transient(exc) else "reconciler"
                shared_metrics.CONSUMER_ERRORS.labels("notifier-reconciler", kind).inc()
                log.warning("reconcile_failed", error=type(exc).__name__, detail=str(exc)[:200])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._cfg.interval_s)

    async def reconcile(self, *, batch: int = 50) -> int:
        """One pass: claim due unknown rows (within the lookup budget), ask, apply; returns rows looked at."""
        if not self.active:
            return 0
        room = self._budget.take(batch, now=time.monotonic())
        if room == 0:
            return 0
        token = uuid.uuid4().hex
        now = self._clock()
        async with self._store.begin() as tx:
            claimed = await tx.claim_unknown(
                providers=sorted(self._lookups),
                now=now,
                settle_s=self._cfg.settle_s,
                max_age_s=self._cfg.max_age_s,
                limit=room,
                token=token,
                until=now + timedelta(seconds=self._cfg.claim_s),
            )
        self._budget.give_back(room - len(claimed))
        for unknown in claimed:
            if self._stopping.is_set():
                break
            answer = await self._ask(unknown)
            await self._apply(unknown, answer, token)
        return len(claimed)

    async def _ask(self, unknown: UnknownRow) -> LookupResult:
        provider = self._lookups[unknown.row.provider]
        try:
            return await asyncio.wait_for(
                provider.lookup(unknown.row.notification_id), self._dispatch.attempt_timeout_s
            )
        except TimeoutError:
            return CannotTell("timeout", f"{provider.name} lookup timed out")
        except Exception as exc:
            log.exception("lookup_crashed", provider=provider.name)
            return CannotTell("adapter", f"{provider.name} lookup failed: {type(exc).__name__}")

    async def _apply(self, unknown: UnknownRow, answer: LookupResult, token: str) -> None:
        nid = unknown.row.notification_id
        effects = Effects()
        label = "cannot_tell"
        async with self._store.begin() as tx:
            held = await tx.held_unknown(notification_id=nid, token=token)
            if held is None:
                return  # recorded meanwhile (a late answer), or the claim expired and another took it
            row = held.row
            looked = Looked(nid, attempts=row.attempts, absent_at=held.absent_at, now=self._clock())
            step = decide(looked, answer, self._cfg, max_attempts=self._dispatch.max_attempts)
            label = result_label(answer, step)
            await self._step(tx, effects, held, step)
        effects.apply()
        RECONCILED.labels(unknown.row.provider, label).inc()
        log.info("delivery_reconciled", notification_id=nid, provider=unknown.row.provider, result=label)

    async def _step(
        self,
        tx: UnknownDeliveries,
        effects: Effects,
        held: UnknownRow,
        step: MarkSent | Requeue | GiveUp | LookAgain,
    ) -> None:
        row = held.row
        nid = row.notification_id
        if isinstance(step, MarkSent):
            final = Final(
                OutcomeStatus.SENT,
                "reconciled",
                None,
                row.provider,
                token=row.claim_token,
                from_statuses=("unknown",),
                provider_message_id=step.provider_message_id,
            )
            await self._recorder.apply(tx, effects, row, final)
            await tx.mark_reconciled(notification_id=nid, result="found")
        elif isinstance(step, Requeue):
            await tx.requeue_unknown(notification_id=nid, at=step.at)
        elif isinstance(step, GiveUp):
            final = exhausted(
                provider=row.provider,
                token=row.claim_token,
                attempts=row.attempts,
                release=counted_slot(row, self._dispatch),
                detail=step.detail,
            )
            await self._recorder.apply(tx, effects, row, replace(final, from_statuses=("unknown",)))
            await tx.mark_reconciled(notification_id=nid, result="absent")
        else:
            await tx.look_again(notification_id=nid, at=step.at, absent_at=step.absent_at, note=step.note)
