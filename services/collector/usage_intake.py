"""The usage intake: claim each observation_id -> publish on the usage topic (acks=all) -> answer.

The same promise as ratings (``intake.py``): a 202 is only given for an observation the broker
acknowledged, and a retry with the same ``observation_id`` and content is answered as the first time
without a second record (a different content under the same id is a conflict). Observation ids share
the idempotency table with rating ids under a ``usage:`` prefix, so neither can shadow the other.
While the database is away, observations are published unchecked (consumers dedupe on the id).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

import structlog

from services.collector.ports import (
    BrokerUnavailable,
    Claim,
    ClaimState,
    IdempotencyRecords,
    Publisher,
    StoreUnavailable,
)
from shared import events as ev
from shared.envelope import OutgoingRecord, encode
from shared.events import UsageObserved

log = structlog.get_logger(__name__)

#: Prefix of observation ids in the idempotency table shared with ratings.
CLAIM_PREFIX = "usage:"


class UsageOutcome(StrEnum):
    ACCEPTED = "accepted"
    REPLAYED = "replayed"
    CONFLICT = "conflict"
    IN_PROGRESS = "in_progress"


@dataclass(frozen=True, slots=True)
class UsageSubmission:
    event: UsageObserved
    source_id: str
    fingerprint: bytes


class UsageUnavailable(RuntimeError):
    """The broker (or, when configured strict, the database) could not take the batch: nothing recorded."""

    def __init__(self, what: Literal["broker", "database"]) -> None:
        super().__init__(f"the {what} is unavailable")
        self.what = what


def usage_record(event: UsageObserved, *, topic: str) -> OutgoingRecord:
    """An observation as the CloudEvent on the usage topic, keyed by account (else customer) for order."""
    key = event.account_id or event.customer_id or event.observation_id
    return encode(
        topic=topic,
        event_type=ev.USAGE_OBSERVED,
        source="/collector",
        event_id=event.observation_id,
        data=event,
        key=key,
        subject=event.observation_id,
        time=event.received_at,
    )


class UsageIntake:
    """Publishes each observation_id's first submission once; repeats get the first answer back."""

    def __init__(
        self, *, publisher: Publisher, records: IdempotencyRecords, topic: str, lease_s: float, degrade: bool
    ) -> None:
        self.publisher = publisher
        self.records = records
        self.topic = topic
        self.lease_s = lease_s
        self.degrade = degrade

    async def submit(self, items: Sequence[UsageSubmission]) -> list[UsageOutcome]:
        """One outcome per item, in order; raises ``UsageUnavailable`` when nothing could be recorded."""
        outcomes: list[UsageOutcome | None] = [None] * len(items)
        first: dict[str, int] = {}
        repeats: dict[int, int] = {}
        for i, item in enumerate(items):
            oid = item.event.observation_id
            if oid in first:
                repeats[i] = first[oid]
            else:
                first[oid] = i
        unique = list(first.values())
        claims = [
            Claim(
                rating_id=CLAIM_PREFIX + items[i].event.observation_id,
                source_id=items[i].source_id,
                fingerprint=items[i].fingerprint,
            )
            for i in unique
        ]
        claimed: list[int]
        checked = True
        try:
            states = await self.records.claim(claims=claims, lease_s=self.lease_s) if claims else {}
        except StoreUnavailable as exc:
            if not self.degrade:
                raise UsageUnavailable("database") from exc
            log.warning("usage_idempotency_unchecked", observations=len(unique), error=str(exc))
            states = {c.rating_id: ClaimState.CLAIMED for c in claims}
            checked = False
        claimed = []
        for i in unique:
            state = states.get(CLAIM_PREFIX + items[i].event.observation_id, ClaimState.PENDING)
            if state is ClaimState.CLAIMED:
                claimed.append(i)
            elif state is ClaimState.REPLAY:
                outcomes[i] = UsageOutcome.REPLAYED
            elif state is ClaimState.CONFLICT:
                outcomes[i] = UsageOutcome.CONFLICT
            else:
                outcomes[i] = UsageOutcome.IN_PROGRESS
        ids = [CLAIM_PREFIX + items[i].event.observation_id for i in claimed]
        if claimed:
            try:
                await self.publisher.publish(
                    [usage_record(items[i].event, topic=self.topic) for i in claimed]
                )
            except BrokerUnavailable as exc:
                log.warning("usage_publish_failed", observations=len(claimed), error=str(exc))
                if checked:
                    await self._release(ids)
                raise UsageUnavailable("broker") from exc
            if checked:
                try:
                    await self.records.confirm(rating_ids=ids)
                except StoreUnavailable as exc:  # the lease expires; a retry republishes, consumers dedupe
                    log.warning("usage_confirm_failed", observations=len(ids), error=str(exc))
            for i in claimed:
                outcomes[i] = UsageOutcome.ACCEPTED
        for i, j in repeats.items():
            same = items[i].fingerprint == items[j].fingerprint and items[i].source_id == items[j].source_id
            earlier = outcomes[j]
            if not same:
                outcomes[i] = UsageOutcome.CONFLICT
            elif earlier in (UsageOutcome.ACCEPTED, UsageOutcome.REPLAYED):
                outcomes[i] = UsageOutcome.REPLAYED
            else:
                outcomes[i] = earlier
        return [o if o is not None else UsageOutcome.IN_PROGRESS for o in outcomes]

    async def _release(self, ids: list[str]) -> None:
        try:
            await self.records.release(rating_ids=ids)
        except StoreUnavailable as exc:
            log.warning("usage_release_failed", observations=len(ids), error=str(exc))
