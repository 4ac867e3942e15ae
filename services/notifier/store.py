"""The notifier's tables: delivery schedule, suppression list, daily counts, and the event outbox."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.envelope import OutgoingRecord

_COLUMNS = (
    "notification_id, channel, provider, status, attempts, rule_id, customer_id, request, transactional, "
    "claim_token, counted_day, event_id, source_topic, source_partition, source_offset"
)


#: PostgreSQL NOTIFY channel on which the intake announces new due deliveries (sent at commit).
WAKE_CHANNEL = "csat_notifier_due"


@dataclass(frozen=True, slots=True)
class DeliveryRow:
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


async def insert_requests(conn: AsyncConnection, *, requests: Sequence[NewRequest]) -> set[str]:
    """Record new requests as 'pending'; the primary key makes a replayed request a no-op."""
    if not requests:
        return set()
    rows = await conn.execute(
        text(
            "WITH ins AS (INSERT INTO notifier.deliveries (notification_id, channel, provider, status, "
            "attempts, rule_id, customer_id, transactional, request, next_attempt_at, event_id, "
            "source_topic, source_partition, source_offset) "
            "SELECT id, ch, prov, 'pending', 0, rule, cust, tx, CAST(req AS jsonb), due, eid, st, sp, so "
            "FROM unnest(CAST(:ids AS text[]), CAST(:chs AS text[]), CAST(:provs AS text[]), "
            "CAST(:rules AS text[]), CAST(:custs AS text[]), CAST(:txs AS boolean[]), CAST(:reqs AS text[]), "
            "CAST(:dues AS timestamptz[]), CAST(:eids AS text[]), CAST(:sts AS text[]), "
            "CAST(:sps AS int[]), CAST(:sos AS bigint[])) "
            "AS v(id, ch, prov, rule, cust, tx, req, due, eid, st, sp, so) "
            "ON CONFLICT (notification_id) DO NOTHING RETURNING notification_id) "
            # Wakes every dispatcher LISTENing on this database when (and only if) the transaction commits;
            # PostgreSQL folds identical notifications of one transaction into one.
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


async def due_by_channel(
    conn: AsyncConnection, *, limits: Mapping[str, int], now: datetime
) -> list[DeliveryRow]:
    """Lock up to ``limits[channel]`` due deliveries of each channel in one round trip (SKIP LOCKED)."""
    wanted = {c: n for c, n in limits.items() if n > 0}
    if not wanted:
        return []
    rows = await conn.execute(
        text(
            f"SELECT d.* FROM unnest(CAST(:channels AS text[]), CAST(:limits AS int[])) AS c(channel, n) "  # noqa: S608 - constant columns
            f"CROSS JOIN LATERAL (SELECT {_COLUMNS}, next_attempt_at FROM notifier.deliveries "
            "WHERE status = 'pending' AND next_attempt_at <= :now AND channel = c.channel "
            "ORDER BY next_attempt_at LIMIT c.n FOR UPDATE SKIP LOCKED) AS d ORDER BY d.next_attempt_at"
        ),
        {"channels": list(wanted), "limits": list(wanted.values()), "now": now},
    )
    return [_row(r) for r in rows]


@dataclass(frozen=True, slots=True)
class Claim:
    """A 'sending' claim: the attempt's token, lease and daily-cap day."""

    notification_id: str
    token: str
    provider: str
    attempts: int
    lease_until: datetime
    counted_day: date | None


async def mark_sending_many(conn: AsyncConnection, *, claims: Sequence[Claim]) -> None:
    """Commit-before-call claims of many rows in one statement: status 'sending', token and lease."""
    if not claims:
        return
    await conn.execute(
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


async def record_sent_many(conn: AsyncConnection, *, sent: Sequence[Sent]) -> set[str]:
    """pending -> sent for rows this transaction holds locked; returns the ids it changed."""
    if not sent:
        return set()
    rows = await conn.execute(
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


async def expired_leases(conn: AsyncConnection, *, now: datetime, limit: int = 100) -> list[DeliveryRow]:
    """Attempts whose sender vanished (crash, kill) before recording the provider's answer."""
    rows = await conn.execute(
        text(
            f"SELECT {_COLUMNS} FROM notifier.deliveries WHERE status = 'sending' "  # noqa: S608 - constant columns
            "AND (lease_until IS NULL OR lease_until < :now) "
            "ORDER BY lease_until NULLS FIRST LIMIT :limit FOR UPDATE SKIP LOCKED"
        ),
        {"now": now, "limit": limit},
    )
    return [_row(r) for r in rows]


async def reschedule(
    conn: AsyncConnection,
    *,
    notification_id: str,
    at: datetime,
    reason: str,
    error: str | None,
    token: str | None = None,
) -> bool:
    """Back to 'pending' until ``at`` (retry, quiet hours); with ``token``, only if that attempt owns it."""
    result = await conn.execute(
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
    conn: AsyncConnection,
    *,
    notification_id: str,
    status: str,
    reason: str | None,
    detail: str | None,
    provider: str,
    provider_message_id: str | None = None,
    sent_at: datetime | None = None,
    token: str | None = None,
    from_statuses: Iterable[str] = ("pending", "sending"),
) -> bool:
    """Record a final status; with ``token``, only if that attempt still owns the record."""
    result = await conn.execute(
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


# ---- suppression list ---------------------------------------------------------------------------------
async def suppression_for(
    conn: AsyncConnection, *, customer_id: str | None, scope: str | None, key: str | None
) -> str | None:
    """The reason this recipient must not get customer-facing messages, or None."""
    row = (
        await conn.execute(
            text(
                "SELECT scope, reason FROM notifier.suppressions WHERE "
                "(scope = 'customer' AND key = :customer) OR (scope = :scope AND key = :key) "
                "ORDER BY created_at LIMIT 1"
            ),
            {"customer": customer_id, "scope": scope, "key": key},
        )
    ).first()
    return None if row is None else f"{row.scope}:{row.reason}"


async def suppress(
    conn: AsyncConnection,
    *,
    entries: Iterable[tuple[str, str]],
    reason: str,
    source: str,
    customer_id: str | None,
    notification_id: str | None,
) -> int:
    """Add (scope, key) entries; an existing entry keeps its first reason."""
    added = 0
    for scope, key in entries:
        result = await conn.execute(
            text(
                "INSERT INTO notifier.suppressions (scope, key, reason, source, customer_id, "
                "notification_id) VALUES (:scope, :key, :reason, :source, :customer, :nid) "
                "ON CONFLICT (scope, key) DO NOTHING"
            ),
            {
                "scope": scope,
                "key": key,
                "reason": reason,
                "source": source,
                "customer": customer_id,
                "nid": notification_id,
            },
        )
        added += result.rowcount or 0
    return added


async def unsuppress(conn: AsyncConnection, *, entries: Iterable[tuple[str, str]]) -> int:
    removed = 0
    for scope, key in entries:
        result = await conn.execute(
            text("DELETE FROM notifier.suppressions WHERE scope = :scope AND key = :key"),
            {"scope": scope, "key": key},
        )
        removed += result.rowcount or 0
    return removed


async def list_suppressions(
    conn: AsyncConnection, *, entries: Sequence[tuple[str, str]], limit: int
) -> list[dict[str, Any]]:
    if entries:
        rows = await conn.execute(
            text(
                "SELECT scope, key, reason, source, customer_id, notification_id, created_at "
                "FROM notifier.suppressions s JOIN unnest(CAST(:scopes AS text[]), CAST(:keys AS text[])) "
                "AS q(scope, key) USING (scope, key) ORDER BY created_at DESC LIMIT :limit"
            ),
            {"scopes": [s for s, _ in entries], "keys": [k for _, k in entries], "limit": limit},
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


# ---- daily cap ------------------------------------------------------------------------------------------
async def reserve_daily(conn: AsyncConnection, *, customer_id: str, day: date, cap: int) -> bool:
    """Count one more message for the customer's day unless the cap is reached (atomic under concurrency)."""
    row = (
        await conn.execute(
            text(
                "INSERT INTO notifier.daily_counts (customer_id, day, sent) VALUES (:c, :d, 1) "
                "ON CONFLICT (customer_id, day) DO UPDATE SET sent = notifier.daily_counts.sent + 1 "
                "WHERE notifier.daily_counts.sent < :cap RETURNING sent"
            ),
            {"c": customer_id, "d": day, "cap": cap},
        )
    ).first()
    return row is not None


async def release_daily(conn: AsyncConnection, *, notification_id: str, customer_id: str, day: date) -> None:
    """A message that provably did not go out gives its slot back."""
    await conn.execute(
        text(
            "UPDATE notifier.daily_counts SET sent = greatest(sent - 1, 0) "
            "WHERE customer_id = :c AND day = :d"
        ),
        {"c": customer_id, "d": day},
    )
    await conn.execute(
        text("UPDATE notifier.deliveries SET counted_day = NULL WHERE notification_id = :id"),
        {"id": notification_id},
    )


# ---- event outbox ---------------------------------------------------------------------------------------
async def enqueue_events(conn: AsyncConnection, *, records: Sequence[OutgoingRecord]) -> None:
    """Write events in the same transaction as the change they report; the relay publishes them."""
    if not records:
        return
    # One statement for the lot; WITH ORDINALITY keeps their order in the id sequence (the relay's order).
    await conn.execute(
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


async def take_events(conn: AsyncConnection, *, limit: int) -> list[tuple[int, OutgoingRecord]]:
    rows = await conn.execute(
        text(
            "SELECT id, topic, key, value, headers FROM notifier.event_outbox ORDER BY id LIMIT :limit "
            "FOR UPDATE SKIP LOCKED"
        ),
        {"limit": limit},
    )
    out = []
    for r in rows:
        headers = r.headers if isinstance(r.headers, list) else json.loads(r.headers)
        out.append(
            (
                int(r.id),
                OutgoingRecord(
                    topic=r.topic,
                    key=bytes(r.key) if r.key is not None else None,
                    value=bytes(r.value),
                    headers=[(str(k), base64.b64decode(v)) for k, v in headers],
                ),
            )
        )
    return out


async def delete_events(conn: AsyncConnection, *, ids: Sequence[int]) -> None:
    await conn.execute(
        text("DELETE FROM notifier.event_outbox WHERE id = ANY(CAST(:ids AS bigint[]))"), {"ids": list(ids)}
    )


async def counts_by_status(conn: AsyncConnection) -> Mapping[str, int]:
    rows = await conn.execute(text("SELECT status, count(*) AS n FROM notifier.deliveries GROUP BY status"))
    return {r.status: int(r.n) for r in rows}
