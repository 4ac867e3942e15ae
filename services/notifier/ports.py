"""What the intake, the dispatcher and the routes need from storage: Protocols and the records they exchange.

``repository.py`` implements them on PostgreSQL, ``tests/fakes/notifier_store.py`` in memory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol

from services.notifier.providers import InTransactionProvider, Message, SendResult
from shared.envelope import OutgoingRecord

#: Key under which the stored request keeps the W3C traceparent of the request event, so the
#: dispatcher's outcome events continue the rating's trace (the request model ignores it).
TRACE_KEY = "_traceparent"

#: The PostgreSQL NOTIFY channel on which a committed intake announces new due deliveries (``wakeup``).
WAKE_CHANNEL = "csat_notifier_due"


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """One delivery record as the dispatcher reads it (``request`` is the stored request's JSON)."""

    notification_id: str
    channel: str
    provider: str
    status: str
    attempts: int
    rule_id: str | None
    customer_id: str | None
    request: dict[str, Any]
    transactional: bool
    claim_token: str | None
    counted_day: date | None
    event_id: str | None
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None


@dataclass(frozen=True, slots=True)
class NewRequest:
    """A request as the intake records it: due at ``due_at``, with where it was read from."""

    notification_id: str
    channel: str
    provider: str
    rule_id: str
    customer_id: str | None
    transactional: bool
    request_json: str
    due_at: datetime
    event_id: str
    source_topic: str
    source_partition: int
    source_offset: int


@dataclass(frozen=True, slots=True)
class Claim:
    """A 'sending' claim: the attempt's token, lease and daily-cap day."""

    notification_id: str
    token: str
    provider: str
    attempts: int
    lease_until: datetime
    counted_day: date | None


@dataclass(frozen=True, slots=True)
class Sent:
    """An attempt accepted inside the transaction that claimed it (a provider writing to our database)."""

    notification_id: str
    token: str
    provider: str
    attempts: int
    counted_day: date | None
    provider_message_id: str | None
    sent_at: datetime


@dataclass(frozen=True, slots=True)
class SuppressionEntry:
    """One line of the suppression list: ``customer`` + customer id, or ``email``/``sms`` + address key."""

    scope: str
    key: str


@dataclass(frozen=True, slots=True)
class SuppressionLookup:
    """Whether a delivery's recipient is on the suppression list, by customer id or by any address key."""

    notification_id: str
    customer_id: str | None
    scope: str | None
    keys: tuple[str, ...]
    customer_keys: tuple[str, ...] = ()  # an erased customer's opt-out, re-keyed by a keyed hash of the id


@dataclass(frozen=True, slots=True)
class DailySlot:
    """The counters one customer-facing message takes on a day: its customer's, its address's (a keyed
    hash, ``email:<hex>``) and its source's; ``None`` where that cap does not apply."""

    day: date
    customer_id: str | None = None
    address_key: str | None = None
    source: str | None = None


@dataclass(frozen=True, slots=True)
class DailyCaps:
    """Customer-facing messages allowed per day: per customer, per recipient address, per source."""

    customer: int = 3
    address: int = 3
    source: int = 10_000


@dataclass(frozen=True, slots=True)
class QueuedEvent:
    """An event waiting in the event outbox for the relay, with its id to delete once published."""

    id: int
    record: OutgoingRecord


@dataclass(frozen=True, slots=True)
class DeliveryPage:
    """Delivery records (JSON-ready, newest first) and the count of records in each status."""

    deliveries: list[dict[str, Any]]
    counts: Mapping[str, int]


class IntakeStore(Protocol):
    """What the intake writes in the consumer's transaction."""

    async def insert_requests(self, *, requests: Sequence[NewRequest]) -> set[str]:
        """Record new requests as 'pending' (waking the dispatchers at commit); returns the new ids."""
        ...


class Deliveries(IntakeStore, Protocol):
    """One transaction on the delivery records, suppression list, daily counts and event outbox."""

    def savepoint(self) -> AbstractAsyncContextManager[None]:
        """A nested transaction, rolled back if the block raises."""
        ...

    async def due_by_channel(self, *, limits: Mapping[str, int], now: datetime) -> list[DeliveryRow]: ...

    async def expired_leases(self, *, now: datetime, limit: int = 100) -> list[DeliveryRow]: ...

    async def suppressions_for(self, *, lookups: Sequence[SuppressionLookup]) -> dict[str, str]:
        """``scope:reason`` of the first matching entry, by notification id (absent: not suppressed)."""
        ...

    async def suppress(
        self,
        *,
        entries: Sequence[SuppressionEntry],
        reason: str,
        source: str,
        customer_id: str | None,
        notification_id: str | None,
    ) -> int: ...

    async def reserve_daily(self, *, slot: DailySlot, caps: DailyCaps) -> str | None:
        """Count one message on every counter of ``slot``, or on none: returns the cap that is full
        (``customer``, ``address`` or ``source``), None when reserved. Atomic under concurrency."""
        ...

    async def release_daily(self, *, notification_id: str, slot: DailySlot) -> None:
        """A message that provably did not go out gives its slot back on every counter."""
        ...

    async def mark_sending_many(self, *, claims: Sequence[Claim]) -> None: ...

    async def deliver_in(
        self, *, provider: InTransactionProvider[Any], messages: Sequence[Message]
    ) -> list[SendResult]:
        """Let a provider that writes to this database deliver inside this transaction."""
        ...

    async def record_sent_many(self, *, sent: Sequence[Sent]) -> set[str]: ...

    async def reschedule(
        self, *, notification_id: str, at: datetime, reason: str, error: str | None, token: str | None = None
    ) -> bool: ...

    async def finish(
        self,
        *,
        notification_id: str,
        status: str,
        reason: str | None,
        detail: str | None,
        provider: str,
        provider_message_id: str | None = None,
        sent_at: datetime | None = None,
        token: str | None = None,
        from_statuses: Sequence[str] = ("pending", "sending"),
    ) -> bool: ...

    async def enqueue_events(self, *, records: Sequence[OutgoingRecord]) -> None: ...

    async def take_events(self, *, limit: int) -> list[QueuedEvent]: ...

    async def delete_events(self, *, ids: Sequence[int]) -> None: ...


@dataclass(frozen=True, slots=True)
class UnknownRow:
    """An ``unknown`` delivery claimed for reconciliation, with when the provider first said absent."""

    row: DeliveryRow
    absent_at: datetime | None


class UnknownDeliveries(Deliveries, Protocol):
    """The reconciler's transaction: unknown rows of providers that can be asked about a message."""

    async def claim_unknown(
        self,
        *,
        providers: Sequence[str],
        now: datetime,
        settle_s: float,
        max_age_s: float,
        limit: int,
        token: str,
        until: datetime,
    ) -> list[UnknownRow]:
        """Take up to ``limit`` unknown rows due for a look (SKIP LOCKED): ``token`` marks them this
        replica's until ``until``, committed before the provider is asked."""
        ...

    async def held_unknown(self, *, notification_id: str, token: str) -> UnknownRow | None:
        """Lock the row if it is still unknown and still this look's (``token``); None otherwise."""
        ...

    async def look_again(
        self, *, notification_id: str, at: datetime, absent_at: datetime | None, note: str | None
    ) -> None:
        """Still unknown: the next look at ``at``, the first "absent" answer, why (``note``)."""
        ...

    async def requeue_unknown(self, *, notification_id: str, at: datetime) -> bool:
        """unknown -> pending at ``at`` (the provider never got it): the dispatcher sends it again."""
        ...

    async def mark_reconciled(self, *, notification_id: str, result: str) -> None:
        """What reconciliation found (``found``, ``absent``), kept on the row; the look is over."""
        ...


class UnknownStore(Protocol):
    """Where the reconciler opens its transactions."""

    def begin(self) -> AbstractAsyncContextManager[UnknownDeliveries]: ...


class DeliveryStore(Protocol):
    """Where the dispatcher opens its transactions."""

    def begin(self) -> AbstractAsyncContextManager[Deliveries]: ...


class DeliveryReads(Protocol):
    """What the outbox and delivery routes read (each call its own transaction)."""

    async def outbox_messages(
        self, *, recipient: str | None, rule_id: str | None, limit: int
    ) -> list[dict[str, Any]]: ...

    async def delivery(self, *, notification_id: str) -> dict[str, Any] | None: ...

    async def deliveries(
        self, *, status: str | None, limit: int, customer_id: str | None = None
    ) -> DeliveryPage: ...


class SuppressionList(Protocol):
    """The suppression list as the admin and unsubscribe routes change it (each call its own transaction)."""

    async def suppressions(self, *, entries: Sequence[SuppressionEntry], limit: int) -> list[dict[str, Any]]:
        """The entries given (all of them when none is given), newest first, JSON-ready."""
        ...

    async def add_suppressions(
        self,
        *,
        entries: Sequence[SuppressionEntry],
        reason: str,
        source: str,
        customer_id: str | None,
        notification_id: str | None,
    ) -> int:
        """Add entries; an existing entry keeps its first reason. Returns how many were new."""
        ...

    async def remove_suppressions(self, *, entries: Sequence[SuppressionEntry]) -> int: ...
