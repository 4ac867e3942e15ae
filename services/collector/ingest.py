"""Ingestion: idempotency claim, publish with acks=all, then confirm; shared by every channel.

No HTTP here: the JSON API, email links, SMS replies and the CSV import all end in ``Ingestor.submit``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import structlog

from services.collector import metrics
from services.collector.ports import Claim, ClaimState, IdempotencyRecords, Publisher, StoreUnavailable
from shared import events as ev
from shared.envelope import OutgoingRecord, encode
from shared.events import RatingSubmitted

log = structlog.get_logger(__name__)


class Outcome(StrEnum):
    ACCEPTED = "accepted"  # published now; the broker acknowledged it
    REPLAYED = "replayed"  # accepted earlier with the same content; nothing published again
    CONFLICT = "conflict"  # the rating_id was used before with different content
    IN_PROGRESS = "in_progress"  # a concurrent attempt with this rating_id has not finished yet


@dataclass(frozen=True, slots=True)
class Submission:
    rating: RatingSubmitted
    source_id: str
    fingerprint: bytes | None  # None when the server chose the id: nothing to deduplicate


def to_record(rating: RatingSubmitted, *, topic: str) -> OutgoingRecord:
    return encode(
        topic=topic,
        event_type=ev.RATING_SUBMITTED,
        source="/collector",
        event_id=rating.rating_id,
        data=rating,
        key=rating.customer.id,
        subject=rating.rating_id,
        time=rating.received_at,
    )


class Confirmer:
    """Marks claimed ids accepted in the background, many per statement, off the request's path.

    Until its batch lands a retry sees the id as pending and waits for it (``Ingestor.wait_s``); if
    the process dies first, the claim expires and a retry republishes, which consumers dedupe.
    """

    def __init__(self, *, store: IdempotencyRecords, delay_s: float = 0.005, max_batch: int = 2000) -> None:
        self.store = store
        self.delay_s = delay_s
        self.max_batch = max_batch
        self._pending: list[str] = []
        self._task: asyncio.Task[None] | None = None

    def add(self, rating_ids: Sequence[str]) -> None:
        self._pending.extend(rating_ids)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush_soon(), name="idempotency-confirm")

    async def _flush_soon(self) -> None:
        await asyncio.sleep(self.delay_s)
        await self.flush()

    async def flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            try:
                await self.store.confirm(rating_ids=batch)
            except StoreUnavailable as exc:
                log.warning("idempotency_confirm_failed", ratings=len(batch), error=str(exc))

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            await self._task
        await self.flush()


class Ingestor:
    """Publishes each rating_id's first submission once; retries get the first answer back.

    A client-chosen id is claimed (row 'pending') before publishing and confirmed ('accepted') after
    the broker's acknowledgement; a failed publish releases it. A claim left by a crashed replica is
    taken over after ``lease_s``; republishing then is harmless because consumers dedupe on rating_id.
    """

    def __init__(
        self,
        *,
        publisher: Publisher,
        store: IdempotencyRecords,
        topic: str,
        wait_s: float,
        lease_s: float,
        degrade: bool = True,
        poll_s: float = 0.05,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.publisher = publisher
        self.store = store
        self.topic = topic
        self.wait_s = wait_s
        self.lease_s = lease_s
        self.degrade = degrade
        self.poll_s = poll_s
        self._sleep = sleep
        self._clock = clock
        self.confirmer = Confirmer(store=store)

    async def submit(self, items: Sequence[Submission]) -> list[Outcome]:
        """One outcome per item; raises BrokerUnavailable or StoreUnavailable when nothing is safe."""
        outcomes: list[Outcome | None] = [None] * len(items)
        direct: list[int] = []
        keyed: list[int] = []
        first: dict[str, int] = {}
        repeats: list[tuple[int, int]] = []
        for i, item in enumerate(items):
            if item.fingerprint is None:
                direct.append(i)
            elif item.rating.rating_id in first:
                repeats.append((i, first[item.rating.rating_id]))
            else:
                first[item.rating.rating_id] = i
                keyed.append(i)

        try:
            claimed = await self._claim(items, keyed, outcomes)
        except StoreUnavailable as exc:
            if not self.degrade:
                raise
            # Ingestion outlives a database outage: publish without the record. Consumers dedupe on
            # rating_id, so a retry is still counted once; only a changed body goes unrefused meanwhile.
            log.warning("idempotency_unchecked", ratings=len(keyed), error=str(exc))
            metrics.UNCHECKED.inc(len(keyed))
            direct = direct + [i for i in keyed if outcomes[i] is None]
            claimed = []
        to_publish = direct + claimed
        if to_publish:
            records = [to_record(items[i].rating, topic=self.topic) for i in to_publish]
            try:
                await self.publisher.publish(records)
            except Exception:
                await self._settle(self.store.release, [items[i].rating.rating_id for i in claimed])
                raise
            self.confirmer.add([items[i].rating.rating_id for i in claimed])
            for i in to_publish:
                outcomes[i] = Outcome.ACCEPTED
        for i, j in repeats:
            same = items[i].fingerprint == items[j].fingerprint and items[i].source_id == items[j].source_id
            earlier = outcomes[j]
            if not same:
                outcomes[i] = Outcome.CONFLICT
            elif earlier in (Outcome.ACCEPTED, Outcome.REPLAYED):
                outcomes[i] = Outcome.REPLAYED
            else:
                outcomes[i] = earlier
        assert all(o is not None for o in outcomes)
        return [o for o in outcomes if o is not None]

    async def _claim(
        self, items: Sequence[Submission], waiting: list[int], outcomes: list[Outcome | None]
    ) -> list[int]:
        claimed: list[int] = []
        deadline = self._clock() + self.wait_s
        while waiting:
            claims = [
                Claim(
                    rating_id=items[i].rating.rating_id,
                    source_id=items[i].source_id,
                    fingerprint=items[i].fingerprint or b"",
                )
                for i in waiting
            ]
            try:
                states = await self.store.claim(claims=claims, lease_s=self.lease_s)
            except StoreUnavailable:
                await self._settle(self.store.release, [items[i].rating.rating_id for i in claimed])
                raise
            still: list[int] = []
            for i in waiting:
                state = states.get(items[i].rating.rating_id, ClaimState.PENDING)
                if state is ClaimState.CLAIMED:
                    claimed.append(i)
                elif state is ClaimState.REPLAY:
                    outcomes[i] = Outcome.REPLAYED
                elif state is ClaimState.CONFLICT:
                    outcomes[i] = Outcome.CONFLICT
                else:
                    still.append(i)
            waiting = still
            if waiting:
                if self._clock() >= deadline:
                    for i in waiting:
                        outcomes[i] = Outcome.IN_PROGRESS
                    break
                await self._sleep(self.poll_s)
        return claimed

    async def close(self) -> None:
        """Land the confirmations still queued (at shutdown)."""
        await self.confirmer.close()

    async def _settle(self, op: Callable[..., Awaitable[None]], rating_ids: list[str]) -> None:
        """Release claims; if the database is away the lease expiry settles them later."""
        if not rating_ids:
            return
        try:
            await op(rating_ids=rating_ids)
        except StoreUnavailable as exc:
            log.warning("idempotency_settle_failed", op=op.__name__, ratings=len(rating_ids), error=str(exc))
