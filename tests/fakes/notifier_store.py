"""The notifier's storage ports in memory (the real adapter is ``services.notifier.repository``).

Transactions run one at a time (as if SERIALIZABLE) on a copy of the committed state, which replaces it
at commit: an exception rolls everything back, a savepoint only its own block. ``MemoryOutbox`` is the
embedded outbox provider writing into the same transaction, so its messages exist exactly when the
claim commits, as on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from services.notifier.ports import (
    Claim,
    DailyCaps,
    DailySlot,
    DeliveryPage,
    DeliveryRow,
    NewRequest,
    QueuedEvent,
    Sent,
    SuppressionEntry,
    SuppressionLookup,
)
from services.notifier.providers import InTransactionProvider, Message, SendResult, accepted
from shared.envelope import OutgoingRecord


class StoreDown(OSError):
    """The database is unreachable (an ``OSError``: the dispatcher treats it as transient)."""


@dataclass
class Record:
    """One ``notifier.deliveries`` row, every column."""

    notification_id: str
    channel: str
    provider: str
    rule_id: str | None
    customer_id: str | None
    transactional: bool
    request: dict[str, Any]
    event_id: str | None
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None
    next_attempt_at: datetime | None
    status: str = "pending"
    attempts: int = 0
    claim_token: str | None = None
    counted_day: date | None = None
    lease_until: datetime | None = None
    reason: str | None = None
    last_error: str | None = None
    provider_message_id: str | None = None
    sent_at: datetime | None = None
    updated: int = 0

    def row(self) -> DeliveryRow:
        return DeliveryRow(
            notification_id=self.notification_id,
            channel=self.channel,
            provider=self.provider,
            status=self.status,
            attempts=self.attempts,
            rule_id=self.rule_id,
            customer_id=self.customer_id,
            request=copy.deepcopy(self.request),
            transactional=self.transactional,
            claim_token=self.claim_token,
            counted_day=self.counted_day,
            event_id=self.event_id,
            source_topic=self.source_topic,
            source_partition=self.source_partition,
            source_offset=self.source_offset,
        )

    def public(self) -> dict[str, Any]:
        """What the delivery routes show (the request stays private)."""
        names = ("notification_id", "channel", "provider", "status", "reason", "attempts", "rule_id",
                 "customer_id", "transactional", "provider_message_id", "last_error")  # fmt: skip
        out = {n: getattr(self, n) for n in names}
        out["next_attempt_at"] = self.next_attempt_at.isoformat() if self.next_attempt_at else None
        out["sent_at"] = self.sent_at.isoformat() if self.sent_at else None
        context = self.request.get("context") if isinstance(self.request, dict) else None
        customer = context.get("customer") if isinstance(context, dict) else None
        out["account_id"] = customer.get("account_id") if isinstance(customer, dict) else None
        return out


@dataclass
class Suppressed:
    scope: str
    key: str
    reason: str
    source: str
    customer_id: str | None
    notification_id: str | None
    created: int


@dataclass
class State:
    deliveries: dict[str, Record] = field(default_factory=dict)
    suppressions: dict[SuppressionEntry, Suppressed] = field(default_factory=dict)
    daily: dict[tuple[str, date], int] = field(default_factory=dict)
    #: The per-address and per-source counters: (scope, key, day) -> messages.
    caps: dict[tuple[str, str, date], int] = field(default_factory=dict)
    events: dict[int, OutgoingRecord] = field(default_factory=dict)
    outbox: dict[str, Message] = field(default_factory=dict)
    seq: int = 0

    def tick(self) -> int:
        self.seq += 1
        return self.seq


class MemoryDeliveries:
    """One transaction: the ``Deliveries`` port on a private copy of the state."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.woke = False

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        before = copy.deepcopy(self.state)
        try:
            yield
        except BaseException:
            self.state = before
            raise

    async def insert_requests(self, *, requests: Sequence[NewRequest]) -> set[str]:
        new = set()
        for r in requests:
            if r.notification_id in self.state.deliveries:
                continue
            self.state.deliveries[r.notification_id] = Record(
                notification_id=r.notification_id,
                channel=r.channel,
                provider=r.provider,
                rule_id=r.rule_id,
                customer_id=r.customer_id,
                transactional=r.transactional,
                request=json.loads(r.request_json),
                event_id=r.event_id,
                source_topic=r.source_topic,
                source_partition=r.source_partition,
                source_offset=r.source_offset,
                next_attempt_at=r.due_at,
                updated=self.state.tick(),
            )
            new.add(r.notification_id)
        self.woke = self.woke or bool(new)
        return new

    async def due_by_channel(self, *, limits: Mapping[str, int], now: datetime) -> list[DeliveryRow]:
        due: list[Record] = []
        for channel, n in limits.items():
            mine = [
                r
                for r in self.state.deliveries.values()
                if r.channel == channel and r.status == "pending" and r.next_attempt_at is not None
                and r.next_attempt_at <= now
            ]  # fmt: skip
            due += sorted(mine, key=lambda r: (r.next_attempt_at, r.updated))[: max(n, 0)]
        return [r.row() for r in sorted(due, key=lambda r: (r.next_attempt_at, r.updated))]

    async def expired_leases(self, *, now: datetime, limit: int = 100) -> list[DeliveryRow]:
        expired = [
            r
            for r in self.state.deliveries.values()
            if r.status == "sending" and (r.lease_until is None or r.lease_until < now)
        ]
        expired.sort(key=lambda r: (r.lease_until is not None, r.lease_until or now))
        return [r.row() for r in expired[:limit]]

    async def suppressions_for(self, *, lookups: Sequence[SuppressionLookup]) -> dict[str, str]:
        found = {}
        for q in lookups:
            hits = [
                s
                for s in self.state.suppressions.values()
                if (s.scope == "customer" and (s.key == q.customer_id or s.key in q.customer_keys))
                or (s.scope == q.scope and s.key in q.keys)
            ]
            if hits:
                first = min(hits, key=lambda s: s.created)
                found[q.notification_id] = f"{first.scope}:{first.reason}"
        return found

    async def suppress(
        self,
        *,
        entries: Sequence[SuppressionEntry],
        reason: str,
        source: str,
        customer_id: str | None,
        notification_id: str | None,
    ) -> int:
        added = 0
        for entry in entries:
            if entry not in self.state.suppressions:
                self.state.suppressions[entry] = Suppressed(
                    entry.scope, entry.key, reason, source, customer_id, notification_id, self.state.tick()
                )
                added += 1
        return added

    async def reserve_daily(self, *, slot: DailySlot, caps: DailyCaps) -> str | None:
        counters: list[tuple[str, dict[Any, int], Any, int]] = []
        if slot.customer_id is not None and caps.customer:
            counters.append(("customer", self.state.daily, (slot.customer_id, slot.day), caps.customer))
        for name, key, cap in (
            ("address", slot.address_key, caps.address),
            ("source", slot.source, caps.source),
        ):
            if key is not None and cap:
                counters.append((name, self.state.caps, (name, key, slot.day), cap))
        for name, table, key, cap in counters:
            if table.get(key, 0) >= cap:
                return name
        for _name, table, key, _cap in counters:
            table[key] = table.get(key, 0) + 1
        return None

    async def release_daily(self, *, notification_id: str, slot: DailySlot) -> None:
        keys: list[tuple[dict[Any, int], Any]] = [(self.state.daily, (slot.customer_id, slot.day))]
        keys += [(self.state.caps, ("address", slot.address_key, slot.day))]
        keys += [(self.state.caps, ("source", slot.source, slot.day))]
        for table, key in keys:
            if key in table:
                table[key] = max(table[key] - 1, 0)
        if notification_id in self.state.deliveries:
            self.state.deliveries[notification_id].counted_day = None

    async def mark_sending_many(self, *, claims: Sequence[Claim]) -> None:
        for c in claims:
            r = self.state.deliveries[c.notification_id]
            r.status, r.claim_token, r.provider, r.attempts = "sending", c.token, c.provider, c.attempts
            r.lease_until, r.counted_day, r.updated = c.lease_until, c.counted_day, self.state.tick()

    async def deliver_in(
        self, *, provider: InTransactionProvider[Any], messages: Sequence[Message]
    ) -> list[SendResult]:
        assert isinstance(provider, MemoryOutbox), "only the memory outbox delivers into the memory store"
        return await provider.deliver_in(self, messages)

    async def record_sent_many(self, *, sent: Sequence[Sent]) -> set[str]:
        done = set()
        for s in sent:
            r = self.state.deliveries.get(s.notification_id)
            if r is None or r.status != "pending":
                continue
            r.status, r.reason, r.last_error, r.provider, r.claim_token = (
                "sent",
                None,
                None,
                s.provider,
                s.token,
            )
            r.attempts, r.counted_day, r.provider_message_id, r.sent_at = (
                s.attempts, s.counted_day, s.provider_message_id, s.sent_at
            )  # fmt: skip
            r.lease_until, r.next_attempt_at, r.updated = None, None, self.state.tick()
            done.add(s.notification_id)
        return done

    async def reschedule(
        self, *, notification_id: str, at: datetime, reason: str, error: str | None, token: str | None = None
    ) -> bool:
        r = self.state.deliveries.get(notification_id)
        if r is None or (token is not None and (r.claim_token != token or r.status != "sending")):
            return False
        r.status, r.next_attempt_at, r.reason, r.last_error = "pending", at, reason, error or r.last_error
        r.claim_token, r.lease_until, r.updated = None, None, self.state.tick()
        return True

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
    ) -> bool:
        r = self.state.deliveries.get(notification_id)
        if r is None or r.status not in from_statuses or (token is not None and r.claim_token != token):
            return False
        r.status, r.reason, r.provider = status, reason, provider
        r.last_error = None if status == "sent" else detail
        r.provider_message_id = provider_message_id or r.provider_message_id
        r.sent_at, r.lease_until, r.next_attempt_at, r.updated = sent_at, None, None, self.state.tick()
        return True

    async def enqueue_events(self, *, records: Sequence[OutgoingRecord]) -> None:
        for record in records:
            self.state.events[self.state.tick()] = record

    async def take_events(self, *, limit: int) -> list[QueuedEvent]:
        return [QueuedEvent(id=i, record=r) for i, r in sorted(self.state.events.items())[:limit]]

    async def delete_events(self, *, ids: Sequence[int]) -> None:
        for i in ids:
            self.state.events.pop(i, None)


class MemoryNotifierStore:
    """``DeliveryStore``, ``DeliveryReads`` and ``SuppressionList`` over one in-memory state."""

    def __init__(self) -> None:
        self.state = State()
        self._lock = asyncio.Lock()
        #: Set to make every new transaction fail as an unreachable database does.
        self.down = False
        #: Commits that inserted requests (PostgreSQL would NOTIFY the dispatchers at each).
        self.wakes = 0
        self.commits = 0

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[MemoryDeliveries]:
        async with self._lock:
            if self.down:
                raise StoreDown("database unreachable")
            tx = MemoryDeliveries(copy.deepcopy(self.state))
            yield tx
            self.state = tx.state
            self.commits += 1
            self.wakes += tx.woke

    # ---- reading the committed state in tests -------------------------------------------------------
    def record(self, notification_id: str) -> Record:
        return self.state.deliveries[notification_id]

    def statuses(self) -> dict[str, str]:
        return {nid: r.status for nid, r in self.state.deliveries.items()}

    # ---- DeliveryReads --------------------------------------------------------------------------------
    async def outbox_messages(
        self, *, recipient: str | None, rule_id: str | None, limit: int
    ) -> list[dict[str, Any]]:
        messages = [
            m
            for m in reversed(self.state.outbox.values())
            if (recipient is None or m.to == recipient) and (rule_id is None or m.rule_id == rule_id)
        ]
        return [
            {"notification_id": m.notification_id, "channel": m.channel.value, "recipient": m.to,
             "subject": m.subject, "body": m.body, "rule_id": m.rule_id, "headers": dict(m.headers)}
            for m in messages[:limit]
        ]  # fmt: skip

    async def delivery(self, *, notification_id: str) -> dict[str, Any] | None:
        r = self.state.deliveries.get(notification_id)
        return None if r is None else r.public()

    async def deliveries(
        self, *, status: str | None, limit: int, customer_id: str | None = None
    ) -> DeliveryPage:
        mine = [r for r in self.state.deliveries.values() if customer_id in (None, r.customer_id)]
        rows = sorted(mine, key=lambda r: r.updated, reverse=True)
        counts: dict[str, int] = {}
        for r in mine:
            counts[r.status] = counts.get(r.status, 0) + 1
        chosen = [r.public() for r in rows if status is None or r.status == status][:limit]
        return DeliveryPage(deliveries=chosen, counts=counts)

    # ---- SuppressionList ------------------------------------------------------------------------------
    async def suppressions(self, *, entries: Sequence[SuppressionEntry], limit: int) -> list[dict[str, Any]]:
        items = [s for e, s in self.state.suppressions.items() if not entries or e in entries]
        items.sort(key=lambda s: s.created, reverse=True)
        return [
            {"scope": s.scope, "key": s.key, "reason": s.reason, "source": s.source,
             "customer_id": s.customer_id, "notification_id": s.notification_id}
            for s in items[:limit]
        ]  # fmt: skip

    async def add_suppressions(
        self,
        *,
        entries: Sequence[SuppressionEntry],
        reason: str,
        source: str,
        customer_id: str | None,
        notification_id: str | None,
    ) -> int:
        async with self.begin() as tx:
            return await tx.suppress(
                entries=entries,
                reason=reason,
                source=source,
                customer_id=customer_id,
                notification_id=notification_id,
            )

    async def remove_suppressions(self, *, entries: Sequence[SuppressionEntry]) -> int:
        async with self.begin() as tx:
            return sum(tx.state.suppressions.pop(e, None) is not None for e in set(entries))


class MemoryOutbox:
    """The embedded outbox provider on the memory store: keyed by notification id, first copy kept."""

    name = "outbox"
    dedupes = True

    def __init__(self, store: MemoryNotifierStore) -> None:
        self._store = store

    async def send(self, message: Message) -> SendResult:
        async with self._store.begin() as tx:
            return (await self.deliver_in(tx, [message]))[0]

    async def deliver_in(self, conn: object, messages: Sequence[Message]) -> list[SendResult]:
        assert isinstance(conn, MemoryDeliveries)
        results = []
        for m in messages:
            conn.state.outbox.setdefault(m.notification_id, m)
            results.append(accepted(f"outbox-{list(conn.state.outbox).index(m.notification_id) + 1}"))
        return results

    async def aclose(self) -> None:
        return None
