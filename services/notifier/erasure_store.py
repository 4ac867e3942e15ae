"""GDPR erasure of one customer in the notifier (PostgreSQL and the outbox directory).

Messages about the customer keep their delivery record (status, channel, times: what was sent is
accountable) under the erasure's random pseudonym; their request (address, context quoting the
comment), error text, outbox subject and body go, and the recipient too unless the message went to
staff (transactional: a CSM alert). Pending messages are cancelled (``suppressed``, reason ``erased``).
Opt-outs stay effective: email and SMS entries are already keyed hashes; the customer-id entry is
re-keyed with the keyed hash of the id (``AddressKeys.customer_key``), which the send-time check
matches too, so an erased person who opted out is still never contacted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.notifier.policy import AddressKeys
from shared.events import CustomerErased
from shared.retention import Cutoffs

ERASED = "[erased]"
EXPIRED = "[expired]"


class NotifierErasure:
    def __init__(self, *, keys: AddressKeys, outbox_dir: Path | None) -> None:
        self._keys = keys
        self._dir = outbox_dir

    async def scrub(self, conn: AsyncConnection, erased: CustomerErased) -> dict[str, int]:
        c, p = erased.customer_id, erased.pseudonym
        ids = [
            r.notification_id
            for r in await conn.execute(
                text(
                    "SELECT notification_id FROM notifier.deliveries "
                    "WHERE customer_id = :c OR request->>'customer_id' = :c"
                ),
                {"c": c},
            )
        ]
        removed: dict[str, int] = {}
        res = await conn.execute(
            text(
                "UPDATE notifier.outbox o SET subject = :e, body = :e, recipient = CASE "
                "WHEN d.transactional THEN o.recipient ELSE :e END FROM notifier.deliveries d "
                "WHERE o.notification_id = d.notification_id AND o.notification_id = ANY(:ids)"
            ),
            {"e": ERASED, "ids": ids},
        )
        removed["notifier.outbox"] = res.rowcount
        res = await conn.execute(
            text(
                "UPDATE notifier.deliveries SET customer_id = :p, request = NULL, last_error = NULL, "
                "status = CASE WHEN status = 'pending' THEN 'suppressed' ELSE status END, "
                "reason = CASE WHEN status = 'pending' THEN 'erased' ELSE reason END, "
                "next_attempt_at = CASE WHEN status = 'pending' THEN NULL ELSE next_attempt_at END "
                "WHERE notification_id = ANY(:ids)"
            ),
            {"p": p, "ids": ids},
        )
        removed["notifier.deliveries"] = res.rowcount
        res = await conn.execute(
            text(
                "UPDATE notifier.suppressions SET key = :k, customer_id = NULL "
                "WHERE scope = 'customer' AND key = :c"
            ),
            {"c": c, "k": self._keys.customer_key(c)},
        )
        removed["notifier.suppressions"] = res.rowcount
        if erased.opted_out:  # an opt-out the rules' context held: kept here, under the keyed hash
            res = await conn.execute(
                text(
                    "INSERT INTO notifier.suppressions (scope, key, reason, source) "
                    "VALUES ('customer', :k, 'opted_out', 'erasure') ON CONFLICT (scope, key) DO NOTHING"
                ),
                {"k": self._keys.customer_key(c)},
            )
            removed["notifier.suppressions"] += res.rowcount
        res = await conn.execute(
            text("UPDATE notifier.suppressions SET customer_id = NULL WHERE customer_id = :c"), {"c": c}
        )
        removed["notifier.suppressions"] += res.rowcount
        res = await conn.execute(
            text("UPDATE notifier.daily_counts SET customer_id = :p WHERE customer_id = :c"), {"c": c, "p": p}
        )
        removed["notifier.daily_counts"] = res.rowcount
        removed["outbox files"] = self._remove_files(ids)
        return removed

    async def purge_expired(self, conn: AsyncConnection, cut: Cutoffs) -> dict[str, int]:
        """Retention: finished messages' requests and errors past the contact cut-off; outbox copies (they
        quote comments and addresses) past the shorter of the two ages, rows and files alike."""
        removed: dict[str, int] = {}
        res = await conn.execute(
            text(
                "UPDATE notifier.deliveries SET request = NULL, last_error = NULL "
                "WHERE status NOT IN ('pending', 'sending') AND updated_at < :c "
                "AND (request IS NOT NULL OR last_error IS NOT NULL)"
            ),
            {"c": cut.contacts},
        )
        removed["notifier.deliveries"] = res.rowcount
        shorter = max(cut.comments, cut.contacts)  # the later cut-off: the shorter age
        ids = [
            r.notification_id
            for r in await conn.execute(
                text(
                    "UPDATE notifier.outbox SET recipient = :e, subject = :e, body = :e "
                    "WHERE created_at < :c AND body <> :e RETURNING notification_id"
                ),
                {"c": shorter, "e": EXPIRED},
            )
        ]
        removed["notifier.outbox"] = len(ids)
        removed["outbox files"] = self._remove_files(ids)
        return removed

    def _remove_files(self, ids: list[str]) -> int:
        """The outbox directory's copies; a replay after a crash finds them gone already."""
        if self._dir is None:
            return 0
        gone = 0
        for nid in ids:
            path = self._dir / f"{nid}.txt"
            if path.exists():
                path.unlink(missing_ok=True)
                gone += 1
        return gone


_EXPORTS: tuple[tuple[str, str], ...] = (
    (
        "deliveries",
        "SELECT notification_id, channel, provider, status, reason, attempts, rule_id, created_at, "
        "updated_at, sent_at, request FROM notifier.deliveries WHERE customer_id = :c "
        "OR request->>'customer_id' = :c ORDER BY created_at, notification_id",
    ),
    (
        "messages",
        "SELECT o.notification_id, o.channel, o.recipient, o.subject, o.body, o.created_at "
        "FROM notifier.outbox o JOIN notifier.deliveries d USING (notification_id) "
        "WHERE (d.customer_id = :c OR d.request->>'customer_id' = :c) AND NOT d.transactional "
        "ORDER BY o.created_at, o.notification_id",
    ),
    (
        "suppressions",
        "SELECT scope, reason, source, created_at FROM notifier.suppressions WHERE customer_id = :c "
        "OR (scope = 'customer' AND key = :c) ORDER BY created_at",
    ),
)


async def export_customer(conn: AsyncConnection, customer_id: str) -> dict[str, Any]:
    """What the notifier holds for the customer (GDPR art. 15/20); staff alerts about them excluded."""
    out: dict[str, Any] = {}
    for name, sql in _EXPORTS:
        out[name] = [dict(r._mapping) for r in await conn.execute(text(sql), {"c": customer_id})]
    return out
