"""GDPR erasure of one customer in the actions service.

The customer's contact record goes; ratings, decisions, alerts, timers and enrolments stay (the
history counts) under the erasure's random pseudonym, with alert context and notes emptied (they quote
the comment and the address), pending timers cancelled and active sequences stopped.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.events import CustomerErased
from shared.retention import Cutoffs

_STEPS: tuple[tuple[str, str], ...] = (
    ("actions.customers", "DELETE FROM actions.customers WHERE customer_id = :c"),
    (
        # The survey stop condition ``erased``: only a hash of the id stays, so an interaction that
        # arrives later (or an invitation decided concurrently) is never sent.
        "actions.erased_customers",
        "INSERT INTO actions.erased_customers (customer_hash) VALUES (sha256(convert_to(:c, 'UTF8'))) "
        "ON CONFLICT DO NOTHING",
    ),
    ("actions.ratings", "UPDATE actions.ratings SET customer_id = :p WHERE customer_id = :c"),
    ("actions.decisions", "UPDATE actions.decisions SET customer_id = :p WHERE customer_id = :c"),
    (
        "actions.alerts",
        "UPDATE actions.alerts SET customer_id = :p, context = '{}'::jsonb, note = NULL "
        "WHERE customer_id = :c",
    ),
    (
        "actions.timers",
        "UPDATE actions.timers SET customer_id = :p, payload = '{}'::jsonb, "
        "status = CASE WHEN status = 'pending' THEN 'cancelled' ELSE status END, "
        "outcome = CASE WHEN status = 'pending' THEN 'erased' ELSE outcome END "
        "WHERE customer_id = :c",
    ),
    (
        "actions.enrolments",
        "UPDATE actions.enrolments SET customer_id = :p, "
        "status = CASE WHEN status = 'active' THEN 'stopped' ELSE status END WHERE customer_id = :c",
    ),
    (
        # Survey invitations hold the address they go to; a pending one (invitation or reminder) stops.
        "actions.survey_invitations",
        "UPDATE actions.survey_invitations SET customer_id = :p, recipient = '{}'::jsonb, "
        "status = CASE WHEN status = 'scheduled' THEN 'stopped' ELSE status END, "
        "stop_reason = CASE WHEN next_at IS NOT NULL THEN 'erased' ELSE stop_reason END, "
        "next_at = NULL WHERE customer_id = :c",
    ),
    # Account health: memberships, usage and the answers health reads stay (they count) under the
    # pseudonym; a lone customer's own health follows it.
    ("actions.account_members", "UPDATE actions.account_members SET customer_id = :p WHERE customer_id = :c"),
    (
        "actions.usage_observations",
        "UPDATE actions.usage_observations SET customer_id = :p WHERE customer_id = :c",
    ),
    ("actions.health_ratings", "UPDATE actions.health_ratings SET customer_id = :p WHERE customer_id = :c"),
    (
        "actions.health_current",
        "UPDATE actions.health_current SET subject_id = :p "
        "WHERE subject_kind = 'customer' AND subject_id = :c",
    ),
    (
        "actions.health_history",
        "UPDATE actions.health_history SET subject_id = :p "
        "WHERE subject_kind = 'customer' AND subject_id = :c",
    ),
)


async def scrub_customer(conn: AsyncConnection, erased: CustomerErased) -> dict[str, int]:
    removed: dict[str, int] = {}
    params = {"c": erased.customer_id, "p": erased.pseudonym}
    for table, sql in _STEPS:
        result = await conn.execute(text(sql), params)
        removed[table] = result.rowcount
    return removed


_EXPORTS: tuple[tuple[str, str], ...] = (
    ("customer", "SELECT * FROM actions.customers WHERE customer_id = :c"),
    ("ratings", "SELECT * FROM actions.ratings WHERE customer_id = :c ORDER BY occurred_at, rating_id"),
    ("decisions", "SELECT * FROM actions.decisions WHERE customer_id = :c ORDER BY created_at, decision_id"),
    ("alerts", "SELECT * FROM actions.alerts WHERE customer_id = :c ORDER BY created_at, alert_id"),
    ("timers", "SELECT * FROM actions.timers WHERE customer_id = :c ORDER BY due_at, timer_id"),
    ("enrolments", "SELECT * FROM actions.enrolments WHERE customer_id = :c ORDER BY enrolled_at, sequence"),
    (
        "survey_invitations",
        "SELECT * FROM actions.survey_invitations WHERE customer_id = :c ORDER BY due_at, invitation_id",
    ),
    ("accounts", "SELECT * FROM actions.account_members WHERE customer_id = :c ORDER BY account_id"),
    (
        "usage",
        "SELECT * FROM actions.usage_observations WHERE customer_id = :c ORDER BY observed_at",
    ),
    (
        "health",
        "SELECT * FROM actions.health_history WHERE subject_kind = 'customer' AND subject_id = :c "
        "ORDER BY at",
    ),
)


async def export_customer(conn: AsyncConnection, customer_id: str) -> dict[str, Any]:
    """Every row the actions service holds for the customer (GDPR art. 15/20)."""
    out: dict[str, Any] = {}
    for name, sql in _EXPORTS:
        rows = [dict(r._mapping) for r in await conn.execute(text(sql), {"c": customer_id})]
        out[name] = (rows[0] if rows else None) if name == "customer" else rows
    return out


_PURGES: tuple[tuple[str, str], ...] = (
    # Alert context quotes the comment and the customer's address; the CSM's note is free text.
    (
        "actions.alerts",
        "UPDATE actions.alerts SET context = '{}'::jsonb, note = NULL WHERE created_at < :comments "
        "AND (context <> '{}'::jsonb OR note IS NOT NULL)",
    ),
    # A customer neither updated nor heard from since the contact cut-off loses their addresses.
    (
        "actions.customers",
        "UPDATE actions.customers c SET email = NULL, phone = NULL WHERE updated_at < :contacts "
        "AND (email IS NOT NULL OR phone IS NOT NULL) AND NOT EXISTS (SELECT 1 FROM actions.ratings r "
        "WHERE r.customer_id = c.customer_id AND r.occurred_at >= :contacts)",
    ),
    # Finished timers keep their outcome, not the message they carried.
    (
        "actions.timers",
        "UPDATE actions.timers SET payload = '{}'::jsonb WHERE status <> 'pending' AND due_at < :contacts "
        "AND payload <> '{}'::jsonb",
    ),
)


async def purge_expired(conn: AsyncConnection, cut: Cutoffs) -> dict[str, int]:
    """Retention: free text past the comment cut-off, contact data past the contact cut-off."""
    params = {"comments": cut.comments, "contacts": cut.contacts}
    removed: dict[str, int] = {}
    for table, sql in _PURGES:
        removed[table] = (await conn.execute(text(sql), params)).rowcount
    return removed
