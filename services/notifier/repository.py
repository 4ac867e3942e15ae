"""The notifier's PostgreSQL adapter: delivery schedule, suppression list, daily counts, event outbox.

``PgDeliveries`` is one transaction (the dispatcher's and the intake's port), ``PgNotifierStore`` opens
them and serves the routes' reads and suppression-list changes.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.notifier.ports import (
    WAKE_CHANNEL,
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
    UnknownRow,
)
from services.notifier.providers import InTransactionProvider, Message, SendResult
from shared.db import snapshot_reads
from shared.envelope import OutgoingRecord

_COLUMNS = (
    "notification_id, channel, provider, status, attempts, rule_id, customer_id, request, transactional, "
    "claim_token, counted_day, event_id, source_topic, source_partition, source_offset"
)

#: What the delivery routes show of a record (no request body: it holds the recipient's address).
_DELIVERY_COLUMNS = (
    "notification_id, channel, provider, status, reason, attempts, rule_id, customer_id, transactional, "
    "provider_message_id, last_error, next_attempt_at, created_at, updated_at, sent_at, "
    # Whose customer it concerns: a CSM reads only the records of the accounts they own.
    "request->'context'->'customer'->>'account_id' AS account_id"
)


def _row(r: Any) -> DeliveryRow:
    request = r.request if isinstance(r.request, dict) else json.loads(r.request or "{}")
    return DeliveryRow(
        notification_id=r.notification_id,
        channel=r.channel,
        provider=r.provider,
        status=r.status,
        attempts=int(r.attempts),
        rule_id=r.rule_id,
        customer_id=r.customer_id,
        request=request,
        transactional=bool(r.transactional),
        claim_token=r.claim_token,
        counted_day=r.counted_day,
        event_id=r.event_id,
        source_topic=r.source_topic,
        source_partition=r.source_partition,
        source_offset=r.source_offset,
    )


def _jsonable(row: Any) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in dict(row).items()}


_RESERVE_CUSTOMER = text(
    "INSERT INTO notifier.daily_counts (customer_id, day, sent) VALUES (:c, :d, 1) "
    "ON CONFLICT (customer_id, day) DO UPDATE SET sent = notifier.daily_counts.sent + 1 "
    "WHERE notifier.daily_counts.sent < :cap RETURNING sent"
)
_RESERVE_OTHER = text(
    "INSERT INTO notifier.daily_caps (scope, key, day, sent) VALUES (:scope, :key, :d, 1) "
    "ON CONFLICT (scope, key, day) DO UPDATE SET sent = notifier.daily_caps.sent + 1 "
    "WHERE notifier.daily_caps.sent < :cap RETURNING sent"
)


class _CapFull(Exception):
    """A daily counter is full; raised inside the reservation's savepoint to roll the others back."""

    def __init__(self, cap: str) -> None:
        super().__init__(cap)
        self.cap = cap


def _counters(slot: DailySlot, caps: DailyCaps) -> list[tuple[str, Any, dict[str, Any]]]:
    """The upserts of one reservation, in a fixed order (customer, address, source) so that two
    transactions reserving the same counters take their row locks in the same order."""
    out: list[tuple[str, Any, dict[str, Any]]] = []
    if slot.customer_id is not None and caps.customer:
        out.append(
            ("customer", _RESERVE_CUSTOMER, {"c": slot.customer_id, "d": slot.day, "cap": caps.customer})
        )
    for name, key, cap in (("address", slot.address_key, caps.address), ("source", slot.source, caps.source)):
        if key is not None and cap:
            out.append((name, _RESERVE_OTHER, {"scope": name, "key": key, "d": slot.day, "cap": cap}))
    return out


class PgDeliveries:
    """The ``Deliveries`` port on one connection, inside the transaction its caller opened."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        async with self.conn.begin_nested():
            yield

    async def insert_requests(self, *, requests: Sequence[NewRequest]) -> set[str]:
        """Record new requests as 'pending'; the primary key makes a replayed request a no-op."""
        if not requests:
            return set()
        rows = await self.conn.execute(
            text(
                "WITH ins AS (INSERT INTO notifier.deliveries (notification_id, channel, provider, status, "
                "attempts, rule_id, customer_id, transactional, request, next_attempt_at, event_id, "
                "source_topic, source_partition, source_offset) "
                "SELECT id, ch, prov, 'pending', 0, rule, cust, tx, CAST(req AS jsonb), due, eid, st, sp, so "
                "FROM unnest(CAST(:ids AS text[]), CAST(:chs AS text[]), CAST(:provs AS text[]), "
                "CAST(:rules AS text[]), CAST(:custs AS text[]), CAST(:txs AS boolean[]), "
                "CAST(:reqs AS text[]), CAST(:dues AS timestamptz[]), CAST(:eids AS text[]), "
                "CAST(:sts AS text[]), CAST(:sps AS int[]), CAST(:sos AS bigint[])) "
                "AS v(id, ch, prov, rule, cust, tx, req, due, eid, st, sp, so) "
                "ON CONFLICT (notification_id) DO NOTHING RETURNING notification_id) "
                # Wakes every dispatcher LISTENing on this database when (and only if) the transaction
                # commits; PostgreSQL folds identical notifications of one transaction into one.
                "SELECT notification_id, pg_notify(:wake, '') FROM ins"
            ),
            {
                "ids": [r.notification_id for r in requests],
                "chs": [r.channel for r in requests],
                "provs": [r.provider for r in requests],
                "rules": [r.rule_id for r in requests],
                "custs": [r.customer_id for r in requests],
                "txs": [r.transactional for r in requests],
                "reqs": [r.request_json for r in requests],
                "dues": [r.due_at for r in requests],
                "eids": [r.event_id for r in requests],
                "sts": [r.source_topic for r in requests],
                "sps": [r.source_partition for r in requests],
                "sos": [r.source_offset for r in requests],
                "wake": WAKE_CHANNEL,
            },
        )
        return {r.notification_id for r in rows}

    async def due_by_channel(self, *, limits: Mapping[str, int], now: datetime) -> list[DeliveryRow]:
        """Lock up to ``limits[channel]`` due deliveries of each channel in one round trip (SKIP LOCKED)."""
        wanted = {c: n for c, n in limits.items() if n > 0}
        if not wanted:
            return []
        rows = await self.conn.execute(
            text(
                f"SELECT d.* FROM unnest(CAST(:channels AS text[]), CAST(:limits AS int[])) AS c(channel, n) "  # noqa: S608 - constant columns
                f"CROSS JOIN LATERAL (SELECT {_COLUMNS}, next_attempt_at FROM notifier.deliveries "
                "WHERE status = 'pending' AND next_attempt_at <= :now AND channel = c.channel "
                "ORDER BY next_attempt_at LIMIT c.n FOR UPDATE SKIP LOCKED) AS d ORDER BY d.next_attempt_at"
            ),
            {"channels": list(wanted), "limits": list(wanted.values()), "now": now},
        )
        return [_row(r) for r in rows]

    async def expired_leases(self, *, now: datetime, limit: int = 100) -> list[DeliveryRow]:
        """Attempts whose sender vanished (crash, kill) before recording the provider's answer."""
        rows = await self.conn.execute(
            text(
                f"SELECT {_COLUMNS} FROM notifier.deliveries WHERE status = 'sending' "  # noqa: S608 - constant columns
                "AND (lease_until IS NULL OR lease_until < :now) "
                "ORDER BY lease_until NULLS FIRST LIMIT :limit FOR UPDATE SKIP LOCKED"
            ),
            {"now": now, "limit": limit},
        )
        return [_row(r) for r in rows]

    async def mark_sending_many(self, *, claims: Sequence[Claim]) -> None:
        """Commit-before-call claims of many rows in one statement: status 'sending', token and lease."""
        if not claims:
            return
        await self.conn.execute(
            text(
                "UPDATE notifier.deliveries AS d SET status = 'sending', claim_token = v.token, "
                "provider = v.provider, attempts = v.attempts, lease_until = v.lease, counted_day = v.day, "
                "updated_at = now() FROM unnest(CAST(:ids AS text[]), CAST(:tokens AS text[]), "
                "CAST(:provs AS text[]), CAST(:attempts AS int[]), CAST(:leases AS timestamptz[]), "
                "CAST(:days AS date[])) AS v(id, token, provider, attempts, lease, day) "
                "WHERE d.notification_id = v.id"
            ),
            {
                "ids": [c.notification_id for c in claims],
                "tokens": [c.token for c in claims],
                "provs": [c.provider for c in claims],
                "attempts": [c.attempts for c in claims],
                "leases": [c.lease_until for c in claims],
                "days": [c.counted_day for c in claims],
            },
        )

    async def deliver_in(
        self, *, provider: InTransactionProvider[AsyncConnection], messages: Sequence[Message]
    ) -> list[SendResult]:
        return await provider.deliver_in(self.conn, messages)

    async def record_sent_many(self, *, sent: Sequence[Sent]) -> set[str]:
        """pending -> sent for rows this transaction holds locked; returns the ids it changed."""
        if not sent:
            return set()
        rows = await self.conn.execute(
            text(
                "UPDATE notifier.deliveries AS d SET status = 'sent', reason = NULL, last_error = NULL, "
                "provider = v.provider, claim_token = v.token, attempts = v.attempts, counted_day = v.day, "
                "provider_message_id = v.pmid, sent_at = v.at, lease_until = NULL, next_attempt_at = NULL, "
                "updated_at = now() FROM unnest(CAST(:ids AS text[]), CAST(:tokens AS text[]), "
                "CAST(:provs AS text[]), CAST(:attempts AS int[]), CAST(:days AS date[]), "
                "CAST(:pmids AS text[]), CAST(:ats AS timestamptz[])) "
                "AS v(id, token, provider, attempts, day, pmid, at) "
                "WHERE d.notification_id = v.id AND d.status = 'pending' RETURNING d.notification_id"
            ),
            {
                "ids": [x.notification_id for x in sent],
                "tokens": [x.token for x in sent],
                "provs": [x.provider for x in sent],
                "attempts": [x.attempts for x in sent],
                "days": [x.counted_day for x in sent],
                "pmids": [x.provider_message_id for x in sent],
                "ats": [x.sent_at for x in sent],
            },
        )
        return {r.notification_id for r in rows}

    async def reschedule(
        self, *, notification_id: str, at: datetime, reason: str, error: str | None, token: str | None = None
    ) -> bool:
        """Back to 'pending' until ``at`` (retry, quiet hours); with ``token``, only if it owns the row."""
        result = await self.conn.execute(
            text(
                "UPDATE notifier.deliveries SET status = 'pending', next_attempt_at = :at, reason = :reason, "
                "last_error = COALESCE(:error, last_error), claim_token = NULL, lease_until = NULL, "
                "updated_at = now() WHERE notification_id = :id "
                "AND (CAST(:token AS text) IS NULL OR (claim_token = :token AND status = 'sending'))"
            ),
            {"id": notification_id, "at": at, "reason": reason, "error": error, "token": token},
        )
        return bool(result.rowcount)

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
        """Record a final status; with ``token``, only if that attempt still owns the record."""
        result = await self.conn.execute(
            text(
                "UPDATE notifier.deliveries SET status = :status, reason = :reason, provider = :provider, "
                "last_error = CASE WHEN :status = 'sent' THEN NULL ELSE :detail END, "
                "provider_message_id = COALESCE(:pmid, provider_message_id), sent_at = :sent_at, "
                "lease_until = NULL, next_attempt_at = NULL, updated_at = now() "
                "WHERE notification_id = :id AND status = ANY(CAST(:from_statuses AS text[])) "
                "AND (CAST(:token AS text) IS NULL OR claim_token = :token)"
            ),
            {
                "id": notification_id,
                "status": status,
                "reason": reason,
                "detail": detail,
                "provider": provider,
                "pmid": provider_message_id,
                "sent_at": sent_at,
                "token": token,
                "from_statuses": list(from_statuses),
            },
        )
        return bool(result.rowcount)

    # ---- reconciling unknown deliveries ---------------------------------------------------------------
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
        """Unknown rows due for a look (first look: a settle delay after they became unknown), marked
        this look's until ``until`` in one statement; SKIP LOCKED shares them between replicas."""
        if not providers or limit <= 0:
            return []
        rows = await self.conn.execute(
            text(
                "UPDATE notifier.deliveries SET reconcile_token = :token, reconcile_at = :until "  # noqa: S608 - constant columns
                "WHERE notification_id IN (SELECT notification_id FROM notifier.deliveries "
                "WHERE status = 'unknown' AND provider = ANY(CAST(:providers AS text[])) "
                "AND created_at >= CAST(:now AS timestamptz) - make_interval(secs => :max_age) "
                "AND COALESCE(reconcile_at, updated_at + make_interval(secs => :settle)) "
                "<= CAST(:now AS timestamptz) "
                "ORDER BY created_at LIMIT :limit FOR UPDATE SKIP LOCKED) "
                f"RETURNING {_COLUMNS}, absent_at"
            ),
            {
                "token": token,
                "until": until,
                "providers": list(providers),
                "now": now,
                "max_age": max_age_s,
                "settle": settle_s,
                "limit": limit,
            },
        )
        return [UnknownRow(row=_row(r), absent_at=r.absent_at) for r in rows]

    async def held_unknown(self, *, notification_id: str, token: str) -> UnknownRow | None:
        rows = await self.conn.execute(
            text(
                f"SELECT {_COLUMNS}, absent_at FROM notifier.deliveries "  # noqa: S608 - constant columns
                "WHERE notification_id = :id AND status = 'unknown' AND reconcile_token = :token FOR UPDATE"
            ),
            {"id": notification_id, "token": token},
        )
        r = rows.first()
        return None if r is None else UnknownRow(row=_row(r), absent_at=r.absent_at)

    async def look_again(
        self, *, notification_id: str, at: datetime, absent_at: datetime | None, note: str | None
    ) -> None:
        await self.conn.execute(
            text(
                "UPDATE notifier.deliveries SET reconcile_at = :at, absent_at = :absent, "
                "reconcile_token = NULL, last_error = COALESCE(:note, last_error) "
                "WHERE notification_id = :id AND status = 'unknown'"
            ),
            {"id": notification_id, "at": at, "absent": absent_at, "note": note},
        )

    async def requeue_unknown(self, *, notification_id: str, at: datetime) -> bool:
        result = await self.conn.execute(
            text(
                "UPDATE notifier.deliveries SET status = 'pending', next_attempt_at = :at, "
                "reason = 'reconciled_absent', claim_token = NULL, lease_until = NULL, "
                "reconcile_token = NULL, reconcile_at = NULL, absent_at = NULL, reconciled = 'absent', "
                "updated_at = now() WHERE notification_id = :id AND status = 'unknown'"
            ),
            {"id": notification_id, "at": at},
        )
        return bool(result.rowcount)

    async def mark_reconciled(self, *, notification_id: str, result: str) -> None:
        await self.conn.execute(
            text(
                "UPDATE notifier.deliveries SET reconciled = :result, reconcile_token = NULL, "
                "reconcile_at = NULL, absent_at = NULL WHERE notification_id = :id"
            ),
            {"id": notification_id, "result": result},
        )

    # ---- suppression list -----------------------------------------------------------------------------
    async def suppressions_for(self, *, lookups: Sequence[SuppressionLookup]) -> dict[str, str]:
        """The entry that stops each recipient (``scope:reason``), for a whole batch in one round trip."""
        if not lookups:
            return {}
        # One input row per (lookup, candidate key): an address may be stored under an older key.
        flat = [(q, key) for q in lookups for key in (q.keys or (None,))]
        rows = await self.conn.execute(
            text(
                "SELECT q.nid, s.scope, s.reason, s.created_at FROM unnest(CAST(:nids AS text[]), "
                "CAST(:customers AS text[]), CAST(:scopes AS text[]), CAST(:keys AS text[]), "
                "CAST(:ckeys AS text[])) AS q(nid, customer, scope, key, ckeys) CROSS JOIN LATERAL "
                "(SELECT scope, reason, created_at FROM notifier.suppressions WHERE (scope = 'customer' "
                "AND (key = q.customer OR key = ANY(string_to_array(q.ckeys, ' ')))) "
                "OR (scope = q.scope AND key = q.key) ORDER BY created_at LIMIT 1) AS s "
                "ORDER BY s.created_at"
            ),
            {
                "nids": [q.notification_id for q, _ in flat],
                "customers": [q.customer_id for q, _ in flat],
                "scopes": [q.scope for q, _ in flat],
                "keys": [key for _, key in flat],
                # Hex digests behind "h:": a space never occurs in them (one text per row for unnest).
                "ckeys": [" ".join(q.customer_keys) for q, _ in flat],
            },
        )
        found: dict[str, str] = {}
        for r in rows:
            found.setdefault(r.nid, f"{r.scope}:{r.reason}")
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
        """Add entries; an existing entry keeps its first reason. Returns how many were new."""
        if not entries:
            return 0
        result = await self.conn.execute(
            text(
                "INSERT INTO notifier.suppressions (scope, key, reason, source, customer_id, "
                "notification_id) "
                "SELECT scope, key, :reason, :source, :customer, :nid "
                "FROM unnest(CAST(:scopes AS text[]), CAST(:keys AS text[])) AS e(scope, key) "
                "ON CONFLICT (scope, key) DO NOTHING"
            ),
            {
                "scopes": [e.scope for e in entries],
                "keys": [e.key for e in entries],
                "reason": reason,
                "source": source,
                "customer": customer_id,
                "nid": notification_id,
            },
        )
        return result.rowcount or 0

    # ---- daily caps -----------------------------------------------------------------------------------
    async def reserve_daily(self, *, slot: DailySlot, caps: DailyCaps) -> str | None:
        """One more message on each of the slot's counters unless one is full: all of them or none.

        Each counter is a conditional upsert (atomic under concurrency); a full one rolls the savepoint
        back, so the counters taken before it are given back at once.
        """
        counters = _counters(slot, caps)
        try:
            async with self.savepoint():
                for name, statement, params in counters:
                    row = (await self.conn.execute(statement, params)).first()
                    if row is None:
                        raise _CapFull(name)
        except _CapFull as full:
            return full.cap
        return None

    async def release_daily(self, *, notification_id: str, slot: DailySlot) -> None:
        """A message that provably did not go out gives its slot back on every counter."""
        if slot.customer_id is not None:
            await self.conn.execute(
                text(
                    "UPDATE notifier.daily_counts SET sent = greatest(sent - 1, 0) "
                    "WHERE customer_id = :c AND day = :d"
                ),
                {"c": slot.customer_id, "d": slot.day},
            )
        others = [
            (scope, key) for scope, key in (("address", slot.address_key), ("source", slot.source)) if key
        ]
        if others:
            await self.conn.execute(
                text(
                    "UPDATE notifier.daily_caps SET sent = greatest(sent - 1, 0) FROM unnest("
                    "CAST(:scopes AS text[]), CAST(:keys AS text[])) AS r(scope, key) "
                    "WHERE daily_caps.scope = r.scope AND daily_caps.key = r.key AND daily_caps.day = :d"
                ),
                {"scopes": [o[0] for o in others], "keys": [o[1] for o in others], "d": slot.day},
            )
        await self.conn.execute(
            text("UPDATE notifier.deliveries SET counted_day = NULL WHERE notification_id = :id"),
            {"id": notification_id},
        )

    # ---- event outbox ---------------------------------------------------------------------------------
    async def enqueue_events(self, *, records: Sequence[OutgoingRecord]) -> None:
        """Write events in the same transaction as the change they report; the relay publishes them."""
        if not records:
            return
        # One statement for the lot; WITH ORDINALITY keeps their order in the id sequence (the relay's).
        await self.conn.execute(
            text(
                "INSERT INTO notifier.event_outbox (topic, key, value, headers) "
                "SELECT t, k, v, CAST(h AS jsonb) FROM unnest(CAST(:topics AS text[]), "
                "CAST(:keys AS bytea[]), CAST(:values AS bytea[]), CAST(:headers AS text[])) "
                "WITH ORDINALITY AS e(t, k, v, h, n) ORDER BY n"
            ),
            {
                "topics": [r.topic for r in records],
                "keys": [r.key for r in records],
                "values": [r.value for r in records],
                "headers": [
                    json.dumps([[k, base64.b64encode(v).decode()] for k, v in r.headers]) for r in records
                ],
            },
        )

    async def take_events(self, *, limit: int) -> list[QueuedEvent]:
        rows = await self.conn.execute(
            text(
                "SELECT id, topic, key, value, headers FROM notifier.event_outbox ORDER BY id LIMIT :limit "
                "FOR UPDATE SKIP LOCKED"
            ),
            {"limit": limit},
        )
        out = []
        for r in rows:
            headers = r.headers if isinstance(r.headers, list) else json.loads(r.headers)
            record = OutgoingRecord(
                topic=r.topic,
                key=bytes(r.key) if r.key is not None else None,
                value=bytes(r.value),
                headers=[(str(k), base64.b64decode(v)) for k, v in headers],
            )
            out.append(QueuedEvent(id=int(r.id), record=record))
        return out

    async def delete_events(self, *, ids: Sequence[int]) -> None:
        await self.conn.execute(
            text("DELETE FROM notifier.event_outbox WHERE id = ANY(CAST(:ids AS bigint[]))"),
            {"ids": list(ids)},
        )


class PgNotifierStore:
    """Opens the dispatcher's transactions; serves the routes' reads and suppression-list changes."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._reads = snapshot_reads(engine)  # a page's rows and its counts from one snapshot

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[PgDeliveries]:
        async with self.engine.begin() as conn:
            yield PgDeliveries(conn)

    async def outbox_messages(
        self, *, recipient: str | None, rule_id: str | None, limit: int
    ) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT notification_id, channel, recipient, subject, body, rule_id, headers, created_at "
                    "FROM notifier.outbox WHERE (CAST(:r AS text) IS NULL OR recipient = :r) "
                    "AND (CAST(:rule AS text) IS NULL OR rule_id = :rule) ORDER BY id DESC LIMIT :limit"
                ),
                {"r": recipient, "rule": rule_id, "limit": limit},
            )
            return [_jsonable(r._mapping) for r in rows]

    async def delivery(self, *, notification_id: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                text(
                    f"SELECT {_DELIVERY_COLUMNS} FROM notifier.deliveries "  # noqa: S608 - constant columns
                    "WHERE notification_id = :id"
                ),
                {"id": notification_id},
            )
            row = rows.mappings().first()
        return None if row is None else _jsonable(row)

    async def deliveries(
        self, *, status: str | None, limit: int, customer_id: str | None = None
    ) -> DeliveryPage:
        """Newest first; ``customer_id`` narrows rows and counts to one customer's messages."""
        who = "(CAST(:customer AS text) IS NULL OR customer_id = :customer)"
        async with self._reads.connect() as conn:
            rows = await conn.execute(
                text(
                    f"SELECT {_DELIVERY_COLUMNS} FROM notifier.deliveries "  # noqa: S608 - constant columns
                    f"WHERE (CAST(:status AS text) IS NULL OR status = :status) AND {who} "
                    "ORDER BY updated_at DESC LIMIT :limit"
                ),
                {"status": status, "limit": limit, "customer": customer_id},
            )
            items = [_jsonable(r._mapping) for r in rows]
            counts = await conn.execute(
                text(f"SELECT status, count(*) AS n FROM notifier.deliveries WHERE {who} GROUP BY status"),  # noqa: S608 - constant clause
                {"customer": customer_id},
            )
            return DeliveryPage(deliveries=items, counts={r.status: int(r.n) for r in counts})

    async def suppressions(self, *, entries: Sequence[SuppressionEntry], limit: int) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            if entries:
                rows = await conn.execute(
                    text(
                        "SELECT scope, key, reason, source, customer_id, notification_id, created_at "
                        "FROM notifier.suppressions s JOIN unnest(CAST(:scopes AS text[]), "
                        "CAST(:keys AS text[])) AS q(scope, key) USING (scope, key) "
                        "ORDER BY created_at DESC LIMIT :limit"
                    ),
                    {"scopes": [e.scope for e in entries], "keys": [e.key for e in entries], "limit": limit},
                )
            else:
                rows = await conn.execute(
                    text(
                        "SELECT scope, key, reason, source, customer_id, notification_id, created_at "
                        "FROM notifier.suppressions ORDER BY created_at DESC LIMIT :limit"
                    ),
                    {"limit": limit},
                )
            return [{**dict(r._mapping), "created_at": r.created_at.isoformat()} for r in rows]

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
        if not entries:
            return 0
        async with self.engine.begin() as conn:
            result = await conn.execute(
                text(
                    "DELETE FROM notifier.suppressions AS s USING unnest(CAST(:scopes AS text[]), "
                    "CAST(:keys AS text[])) AS q(scope, key) WHERE s.scope = q.scope AND s.key = q.key"
                ),
                {"scopes": [e.scope for e in entries], "keys": [e.key for e in entries]},
            )
            return result.rowcount or 0
