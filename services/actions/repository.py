"""PostgreSQL access for the actions service: ratings history, customer context, decisions, alerts, timers.

Every read for a batch is one query over all the batch's customers (``= ANY(:ids)``), never one per rating.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.actions.engine import (
    AlertDraft,
    CustomerContext,
    EnrolmentDraft,
    Fatigue,
    PastRating,
    TimerDraft,
)
from services.actions.timers import AlertState, DueTimer
from services.actions.verbatims import Analysis
from shared.events import RatingSubmitted

# ---- ratings and history --------------------------------------------------------------------------


async def insert_new_ratings(
    conn: AsyncConnection,
    ratings: Sequence[RatingSubmitted],
    analyses: Mapping[str, Analysis] | None = None,
) -> set[str]:
    """Record ratings in the per-customer history; returns the ids seen for the first time."""
    unique = {r.rating_id: r for r in reversed(ratings)}
    if not unique:
        return set()
    rows = list(unique.values())
    found = analyses or {}
    result = await conn.execute(
        text(
            "INSERT INTO actions.ratings (rating_id, customer_id, metric, scale, score, normalized, "
            "sentiment, occurred_at, has_comment, survey_id, themes, comment_sentiment) "
            "SELECT id, c, m, s, score, n, sent, t, hc, sv, "
            "COALESCE(ARRAY(SELECT jsonb_array_elements_text(th)), '{}'), cs "
            "FROM unnest(CAST(:id AS text[]), CAST(:c AS text[]), "
            "CAST(:m AS text[]), CAST(:s AS text[]), CAST(:score AS smallint[]), CAST(:n AS real[]), "
            "CAST(:sent AS text[]), CAST(:t AS timestamptz[]), CAST(:hc AS boolean[]), "
            "CAST(:sv AS text[]), CAST(:th AS jsonb[]), CAST(:cs AS text[])) "
            "AS v(id, c, m, s, score, n, sent, t, hc, sv, th, cs) "
            "ON CONFLICT DO NOTHING RETURNING rating_id"
        ),
        {
            "id": [r.rating_id for r in rows],
            "c": [r.customer.id for r in rows],
            "m": [r.metric.value for r in rows],
            "s": [r.scale for r in rows],
            "score": [r.score for r in rows],
            "n": [r.normalized for r in rows],
            "sent": [r.sentiment.value for r in rows],
            "t": [r.occurred_at for r in rows],
            "hc": [bool(r.comment and r.comment.strip()) for r in rows],
            "sv": [r.survey_id for r in rows],
            "th": [json.dumps(list(found[r.rating_id].themes) if r.rating_id in found else []) for r in rows],
            "cs": [
                found[r.rating_id].sentiment if r.rating_id in found and r.comment else None for r in rows
            ],
        },
    )
    return {row.rating_id for row in result}


# ---- customer context -----------------------------------------------------------------------------


def _context(r: Any) -> CustomerContext:
    return CustomerContext(
        customer_id=r.customer_id,
        email=r.email,
        phone=r.phone,
        locale=r.locale,
        timezone=r.timezone,
        tier=r.tier,
        value=float(r.value) if r.value is not None else None,
        owner_email=r.owner_email,
        owner_name=r.owner_name,
        opted_out=r.opted_out,
        attributes=r.attributes,
        consent=r.consent,
    )


async def load_contexts(conn: AsyncConnection, customer_ids: Sequence[str]) -> dict[str, CustomerContext]:
    if not customer_ids:
        return {}
    rows = await conn.execute(
        text(
            "SELECT customer_id, email, phone, locale, timezone, tier, value, owner_email, owner_name, "
            "opted_out, attributes, consent FROM actions.customers WHERE customer_id = ANY(:ids)"
        ),
        {"ids": list(set(customer_ids))},
    )
    return {r.customer_id: _context(r) for r in rows}


async def upsert_customer(conn: AsyncConnection, customer_id: str, fields: dict[str, Any]) -> None:
    params = {"customer_id": customer_id, **fields}
    for key in ("consent", "attributes"):
        params[key] = json.dumps(params.get(key) or {})
    await conn.execute(
        text(
            "INSERT INTO actions.customers (customer_id, email, phone, locale, timezone, tier, value, "
            "owner_email, owner_name, consent, opted_out, attributes, updated_at) VALUES (:customer_id, "
            ":email, :phone, :locale, :timezone, :tier, :value, :owner_email, :owner_name, "
            "CAST(:consent AS jsonb), :opted_out, CAST(:attributes AS jsonb), now()) "
            "ON CONFLICT (customer_id) DO UPDATE SET email = EXCLUDED.email, phone = EXCLUDED.phone, "
            "locale = EXCLUDED.locale, timezone = EXCLUDED.timezone, tier = EXCLUDED.tier, "
            "value = EXCLUDED.value, owner_email = EXCLUDED.owner_email, owner_name = EXCLUDED.owner_name, "
            "consent = EXCLUDED.consent, opted_out = EXCLUDED.opted_out, "
            "attributes = EXCLUDED.attributes, updated_at = now()"
        ),
        params,
    )


async def stop_customer_sequences(conn: AsyncConnection, customer_id: str) -> None:
    """An opted-out customer leaves every nurture sequence (the pending steps would be skipped anyway)."""
    await conn.execute(
        text("UPDATE actions.enrolments SET status = 'stopped' WHERE customer_id = :c AND status = 'active'"),
        {"c": customer_id},
    )


async def get_customer(conn: AsyncConnection, customer_id: str) -> dict[str, Any] | None:
    row = (
        (
            await conn.execute(
                text("SELECT * FROM actions.customers WHERE customer_id = :id"), {"id": customer_id}
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    out = dict(row)
    if out.get("value") is not None:
        out["value"] = float(out["value"])
    out["updated_at"] = out["updated_at"].isoformat()
    return out


# ---- fatigue --------------------------------------------------------------------------------------


async def sent_last_24h(
    conn: AsyncConnection, customer_ids: Sequence[str], *, now: datetime
) -> dict[str, int]:
    """Messages each customer received in the last 24 h (the daily cap)."""
    if not customer_ids:
        return {}
    rows = await conn.execute(
        text(
            "SELECT customer_id, count(*) AS n FROM actions.decisions WHERE customer_id = ANY(:ids) "
            "AND customer_facing AND notification_id IS NOT NULL AND created_at > :since GROUP BY customer_id"
        ),
        {"ids": list(set(customer_ids)), "since": now - timedelta(hours=24)},
    )
    return {r.customer_id: int(r.n) for r in rows}


# ---- decisions ------------------------------------------------------------------------------------


async def existing_decisions(conn: AsyncConnection, ids: Sequence[str]) -> set[str]:
    if not ids:
        return set()
    rows = await conn.execute(
        text("SELECT decision_id FROM actions.decisions WHERE decision_id = ANY(:ids)"), {"ids": list(ids)}
    )
    return {r.decision_id for r in rows}


async def insert_decisions(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    full = [{"outcome": None, "channel": None, "customer_facing": False, "ref": None, **row} for row in rows]
    await conn.execute(
        text(
            "INSERT INTO actions.decisions (decision_id, rule_id, action, rating_id, customer_id, "
            "notification_id, created_at, outcome, channel, customer_facing, ref) VALUES (:decision_id, "
            ":rule_id, :action, :rating_id, :customer_id, :notification_id, :created_at, :outcome, "
            ":channel, :customer_facing, :ref) ON CONFLICT DO NOTHING"
        ),
        full,
    )


async def list_decisions(
    conn: AsyncConnection, *, customer_id: str | None, limit: int
) -> list[dict[str, Any]]:
    rows = await conn.execute(
        text(
            "SELECT decision_id, rule_id, action, rating_id, customer_id, notification_id, outcome, "
            "channel, customer_facing, ref, created_at "
            "FROM actions.decisions WHERE (CAST(:c AS text) IS NULL OR customer_id = :c) "
            "ORDER BY created_at DESC, decision_id LIMIT :limit"
        ),
        {"c": customer_id, "limit": limit},
    )
    return [{**dict(r._mapping), "created_at": r.created_at.isoformat()} for r in rows]


# ---- alerts, timers, enrolments -------------------------------------------------------------------


async def insert_timers(conn: AsyncConnection, timers: Sequence[TimerDraft], *, now: datetime) -> None:
    if not timers:
        return
    await conn.execute(
        text(
            "INSERT INTO actions.timers (timer_id, kind, ref, customer_id, due_at, payload, created_at) "
            "VALUES (:timer_id, :kind, :ref, :customer_id, :due_at, CAST(:payload AS jsonb), :now) "
            "ON CONFLICT DO NOTHING"
        ),
        [
            {
                "timer_id": t.timer_id,
                "kind": t.kind,
                "ref": t.ref,
                "customer_id": t.customer_id,
                "due_at": t.due_at,
                "payload": json.dumps(t.payload, default=str),
                "now": now,
            }
            for t in timers
        ],
    )


async def insert_enrolments(
    conn: AsyncConnection, enrolments: Sequence[EnrolmentDraft], *, now: datetime
) -> None:
    """Enrol, or re-enrol a customer whose earlier run of the sequence is over."""
    if not enrolments:
        return
    await conn.execute(
        text(
            "INSERT INTO actions.enrolments (customer_id, sequence, rule_id, rating_id, steps, "
            "enrolled_at, ends_at) VALUES (:c, :s, :r, :rid, :steps, :now, :ends) "
            "ON CONFLICT (customer_id, sequence) DO UPDATE SET rule_id = EXCLUDED.rule_id, "
            "rating_id = EXCLUDED.rating_id, steps = EXCLUDED.steps, enrolled_at = EXCLUDED.enrolled_at, "
            "ends_at = EXCLUDED.ends_at, status = 'active' "
            "WHERE actions.enrolments.status <> 'active' OR actions.enrolments.ends_at < EXCLUDED.enrolled_at"
        ),
        [
            {
                "c": e.customer_id,
                "s": e.sequence,
                "r": e.rule_id,
                "rid": e.rating_id,
                "steps": e.steps,
                "now": now,
                "ends": e.ends_at,
            }
            for e in enrolments
        ],
    )


async def enrolment_statuses(
    conn: AsyncConnection, customer_ids: Sequence[str]
) -> dict[tuple[str, str], str]:
    if not customer_ids:
        return {}
    rows = await conn.execute(
        text("SELECT customer_id, sequence, status FROM actions.enrolments WHERE customer_id = ANY(:ids)"),
        {"ids": list(set(customer_ids))},
    )
    return {(r.customer_id, r.sequence): str(r.status) for r in rows}


async def complete_enrolments(conn: AsyncConnection, pairs: Sequence[tuple[str, str]]) -> None:
    if not pairs:
        return
    await conn.execute(
        text(
            "UPDATE actions.enrolments AS e SET status = 'completed' "
            "FROM unnest(CAST(:c AS text[]), CAST(:s AS text[])) AS v(c, s) "
            "WHERE e.customer_id = v.c AND e.sequence = v.s AND e.status = 'active'"
        ),
        {"c": [p[0] for p in pairs], "s": [p[1] for p in pairs]},
    )


async def claim_due_timers(conn: AsyncConnection, *, now: datetime, limit: int) -> list[DueTimer]:
    """Lock due timers; another replica's scheduler skips them (SKIP LOCKED) until this one commits."""
    rows = await conn.execute(
        text(
            "SELECT timer_id, kind, ref, customer_id, due_at, payload FROM actions.timers "
            "WHERE status = 'pending' AND due_at <= :now ORDER BY due_at, timer_id LIMIT :limit "
            "FOR UPDATE SKIP LOCKED"
        ),
        {"now": now, "limit": limit},
    )
    return [DueTimer(r.timer_id, r.kind, r.ref, r.customer_id, r.due_at, r.payload) for r in rows]


async def mark_timers(conn: AsyncConnection, outcomes: Mapping[str, str], *, now: datetime) -> None:
    """Fired, with what came of it (``escalated``, ``sent``, ``skipped_<why>``)."""
    if not outcomes:
        return
    ids = list(outcomes)
    await conn.execute(
        text(
            "UPDATE actions.timers AS t SET status = 'fired', outcome = v.o, fired_at = :now "
            "FROM unnest(CAST(:ids AS text[]), CAST(:os AS text[])) AS v(id, o) WHERE t.timer_id = v.id"
        ),
        {"ids": ids, "os": [outcomes[i] for i in ids], "now": now},
    )


async def resurvey_answered(conn: AsyncConnection, timer: DueTimer) -> bool:
    """Belt and braces at fire time: a comment or an answer to this survey after the re-survey went out."""
    row = await conn.execute(
        text(
            "SELECT EXISTS (SELECT 1 FROM actions.ratings r JOIN actions.timers t ON t.timer_id = :id "
            "WHERE r.customer_id = t.customer_id AND r.rating_id <> COALESCE(t.payload->>'rating_id', '') "
            "AND (r.survey_id = t.ref OR (r.has_comment AND r.occurred_at >= t.created_at)))"
        ),
        {"id": timer.timer_id},
    )
    return bool(row.scalar_one())


_ALERT_COLUMNS = (
    "alert_id, rule_id, rating_id, customer_id, owner_email, owner_name, priority, status, due_at, "
    "escalated_at, acknowledged_at, acknowledged_by, resolved_at, resolved_by, note, context, created_at"
)


def _alert_json(row: Mapping[Any, Any]) -> dict[str, Any]:
    return {str(k): (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}


def _alert_state(row: Mapping[Any, Any]) -> AlertState:
    return AlertState(
        alert_id=row["alert_id"],
        rule_id=row["rule_id"],
        status=row["status"],
        owner_email=row["owner_email"],
        owner_name=row["owner_name"],
        priority=row["priority"],
        due_at=row["due_at"],
        rating_id=row["rating_id"],
        customer_id=row["customer_id"],
        context=row["context"],
    )


async def lock_alerts(conn: AsyncConnection, alert_ids: Sequence[str]) -> dict[str, AlertState]:
    """Row-lock alerts so an acknowledgement waits for the escalation deciding on them (or vice versa)."""
    if not alert_ids:
        return {}
    rows = await conn.execute(
        text(
            f"SELECT {_ALERT_COLUMNS} FROM actions.alerts WHERE alert_id = ANY(:ids) "  # noqa: S608 - fixed column list
            "ORDER BY alert_id FOR UPDATE"
        ),
        {"ids": sorted(set(alert_ids))},
    )
    return {r["alert_id"]: _alert_state(r) for r in rows.mappings()}


async def mark_escalated(conn: AsyncConnection, alert_ids: Sequence[str], *, now: datetime) -> None:
    if not alert_ids:
        return
    await conn.execute(
        text("UPDATE actions.alerts SET escalated_at = :now WHERE alert_id = ANY(:ids)"),
        {"ids": list(alert_ids), "now": now},
    )


async def list_alerts(
    conn: AsyncConnection,
    *,
    status: str | None,
    owner: str | None,
    customer_id: str | None,
    limit: int,
) -> list[dict[str, Any]]:
    rows = await conn.execute(
        text(
            f"SELECT {_ALERT_COLUMNS} FROM actions.alerts "  # noqa: S608 - fixed column list
            "WHERE (CAST(:s AS text) IS NULL OR status = :s) "
            "AND (CAST(:o AS text) IS NULL OR lower(owner_email) = lower(:o)) "
            "AND (CAST(:c AS text) IS NULL OR customer_id = :c) "
            "ORDER BY created_at DESC, alert_id LIMIT :limit"
        ),
        {"s": status, "o": owner, "c": customer_id, "limit": limit},
    )
    return [_alert_json(r) for r in rows.mappings()]


async def get_alert(conn: AsyncConnection, alert_id: str) -> dict[str, Any] | None:
    row = (
        (
            await conn.execute(
                text(f"SELECT {_ALERT_COLUMNS} FROM actions.alerts WHERE alert_id = :id"),  # noqa: S608 - fixed column list
                {"id": alert_id},
            )
        )
        .mappings()
        .first()
    )
    return _alert_json(row) if row else None


async def transition_alert(
    conn: AsyncConnection, alert_id: str, *, to: str, by: str | None, note: str | None, now: datetime
) -> tuple[dict[str, Any] | None, str | None]:
    """Acknowledge or resolve; returns (alert, error). Acknowledging cancels the pending escalation."""
    current = (await lock_alerts(conn, [alert_id])).get(alert_id)
    if current is None:
        return None, "not_found"
    if to == "acknowledged":
        if current.status == "resolved":
            return await get_alert(conn, alert_id), "already resolved"
        if current.status == "open":
            await conn.execute(
                text(
                    "UPDATE actions.alerts SET status = 'acknowledged', acknowledged_at = :now, "
                    "acknowledged_by = :by, note = COALESCE(:note, note) WHERE alert_id = :id"
                ),
                {"id": alert_id, "now": now, "by": by, "note": note},
            )
    else:
        if current.status != "resolved":
            await conn.execute(
                text(
                    "UPDATE actions.alerts SET status = 'resolved', resolved_at = :now, resolved_by = :by, "
                    "acknowledged_at = COALESCE(acknowledged_at, :now), "
                    "acknowledged_by = COALESCE(acknowledged_by, :by), note = COALESCE(:note, note) "
                    "WHERE alert_id = :id"
                ),
                {"id": alert_id, "now": now, "by": by, "note": note},
            )
    await conn.execute(
        text(
            "UPDATE actions.timers SET status = 'cancelled', outcome = :why, fired_at = :now "
            "WHERE kind = 'sla_escalation' AND ref = :id AND status = 'pending'"
        ),
        {"id": alert_id, "why": to, "now": now},
    )
    return await get_alert(conn, alert_id), None


async def list_timers(
    conn: AsyncConnection, *, customer_id: str | None, status: str | None, limit: int
) -> list[dict[str, Any]]:
    rows = await conn.execute(
        text(
            "SELECT timer_id, kind, ref, customer_id, due_at, status, outcome, created_at, fired_at "
            "FROM actions.timers WHERE (CAST(:c AS text) IS NULL OR customer_id = :c) "
            "AND (CAST(:s AS text) IS NULL OR status = :s) ORDER BY due_at, timer_id LIMIT :limit"
        ),
        {"c": customer_id, "s": status, "limit": limit},
    )
    return [_alert_json(r) for r in rows.mappings()]


# ---- rule sets ------------------------------------------------------------------------------------


async def latest_rule_version(conn: AsyncConnection) -> int | None:
    row = await conn.execute(text("SELECT max(version) FROM actions.rule_sets"))
    value = row.scalar_one()
    return int(value) if value is not None else None


async def load_rule_set(conn: AsyncConnection, version: int | None = None) -> tuple[int, Any, str] | None:
    """(version, document, origin) of ``version`` or the newest."""
    row = (
        await conn.execute(
            text(
                "SELECT version, document, origin FROM actions.rule_sets "
                "WHERE CAST(:v AS integer) IS NULL OR version = :v ORDER BY version DESC LIMIT 1"
            ),
            {"v": version},
        )
    ).first()
    return (int(row.version), row.document, str(row.origin)) if row else None


async def lock_rule_sets(conn: AsyncConnection) -> None:
    """Serialise writers of the rule set (held until the transaction ends)."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('actions.rule_sets'))"))


async def insert_rule_set(conn: AsyncConnection, *, version: int, document: Any, origin: str) -> bool:
    result = await conn.execute(
        text(
            "INSERT INTO actions.rule_sets (version, document, origin) "
            "VALUES (:v, CAST(:d AS jsonb), :o) ON CONFLICT DO NOTHING"
        ),
        {"v": version, "d": json.dumps(document, default=str), "o": origin},
    )
    return bool(result.rowcount)


async def list_rule_versions(conn: AsyncConnection, *, limit: int) -> list[dict[str, Any]]:
    rows = await conn.execute(
        text(
            "SELECT version, origin, created_at, jsonb_array_length(document->'rules') AS rules "
            "FROM actions.rule_sets ORDER BY version DESC LIMIT :limit"
        ),
        {"limit": limit},
    )
    return [_alert_json(r) for r in rows.mappings()]


# ---- one round trip per batch ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BatchFacts:
    """What deciding a batch of ratings needs to know, read together."""

    rules_version: int | None
    contexts: dict[str, CustomerContext]
    past: dict[str, list[PastRating]]
    fatigue: dict[str, Fatigue]
    cancelled_resurveys: int


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def load_batch_facts(
    conn: AsyncConnection,
    customer_ids: Sequence[str],
    *,
    since: datetime,
    per_customer: int,
    now: datetime,
    commented_customers: Sequence[str],
    survey_ids: Sequence[str],
) -> BatchFacts:
    """Per batch in one statement: answered re-surveys cancelled (a comment, or an answer carrying the
    survey id, stops the "no answer -> support calls" timer), the newest rules version, each customer's
    context, latest ``per_customer`` ratings since ``since``, and fatigue (when each rule last acted,
    customer messages in the last 24 h, active sequences). A micro-batch paid seven round trips for these.

    The reads do not touch ``actions.timers``, so running the update in the same statement changes
    nothing they see.
    """
    ids = sorted(set(customer_ids))
    row = (
        await conn.execute(
            text(
                "WITH cancelled AS (UPDATE actions.timers SET status = 'cancelled', outcome = 'answered', "
                "fired_at = :now WHERE kind = 'resurvey_no_answer' AND status = 'pending' "
                "AND (customer_id = ANY(:commented) OR ref = ANY(:surveys)) RETURNING 1) "
                "SELECT (SELECT count(*) FROM cancelled) AS cancelled, "
                "(SELECT max(version) FROM actions.rule_sets) AS version, "
                "(SELECT array_agg(ROW(customer_id, email, phone, locale, timezone, tier, value, "
                " owner_email, owner_name, opted_out, attributes, consent)) FROM actions.customers "
                " WHERE customer_id = ANY(:ids)) AS contexts, "
                "(SELECT array_agg(ROW(customer_id, rating_id, occurred_at, normalized, sentiment)) FROM ("
                " SELECT customer_id, rating_id, occurred_at, normalized, sentiment, row_number() OVER "
                " (PARTITION BY customer_id ORDER BY occurred_at DESC, rating_id DESC) AS rn "
                " FROM actions.ratings WHERE customer_id = ANY(:ids) AND occurred_at >= :since) AS x "
                " WHERE rn <= :n) AS past, "
                "(SELECT array_agg(ROW(customer_id, rule_id, last)) FROM ("
                " SELECT customer_id, rule_id, max(created_at) AS last FROM actions.decisions "
                " WHERE customer_id = ANY(:ids) AND (notification_id IS NOT NULL OR outcome = 'scheduled') "
                " GROUP BY customer_id, rule_id) AS f) AS fired, "
                "(SELECT array_agg(ROW(customer_id, n)) FROM ("
                " SELECT customer_id, count(*) AS n FROM actions.decisions WHERE customer_id = ANY(:ids) "
                " AND customer_facing AND notification_id IS NOT NULL AND created_at > :day_ago "
                " GROUP BY customer_id) AS s) AS sent, "
                "(SELECT array_agg(ROW(customer_id, sequence)) FROM actions.enrolments "
                " WHERE customer_id = ANY(:ids) AND status = 'active' AND ends_at >= :now) AS sequences"
            ),
            {
                "ids": ids,
                "since": since,
                "n": per_customer,
                "now": now,
                "day_ago": now - timedelta(hours=24),
                "commented": sorted(set(commented_customers)),
                "surveys": sorted(set(survey_ids)),
            },
        )
    ).one()
    contexts = {
        c[0]: CustomerContext(
            customer_id=c[0],
            email=c[1],
            phone=c[2],
            locale=c[3],
            timezone=c[4],
            tier=c[5],
            value=float(c[6]) if c[6] is not None else None,
            owner_email=c[7],
            owner_name=c[8],
            opted_out=c[9],
            attributes=_json(c[10]),
            consent=_json(c[11]),
        )
        for c in row.contexts or ()
    }
    past: dict[str, list[PastRating]] = defaultdict(list)
    for p in row.past or ():
        past[p[0]].append(PastRating(p[1], p[2], float(p[3]), p[4]))
    last: dict[str, dict[str, datetime]] = defaultdict(dict)
    for f in row.fired or ():
        last[f[0]][f[1]] = f[2]
    counts = {s[0]: int(s[1]) for s in row.sent or ()}
    active: dict[str, set[str]] = defaultdict(set)
    for q in row.sequences or ():
        active[q[0]].add(q[1])
    fatigue = {
        c: Fatigue(
            last_fired=last.get(c, {}),
            sent_24h=counts.get(c, 0),
            active_sequences=frozenset(active.get(c, ())),
        )
        for c in ids
    }
    return BatchFacts(
        rules_version=int(row.version) if row.version is not None else None,
        contexts=contexts,
        past=dict(past),
        fatigue=fatigue,
        cancelled_resurveys=int(row.cancelled),
    )


async def insert_outcomes(
    conn: AsyncConnection,
    *,
    decisions: Sequence[dict[str, Any]],
    alerts: Sequence[AlertDraft],
    timers: Sequence[TimerDraft],
    now: datetime,
) -> None:
    """Decisions, alerts and timers of a batch in one statement, as arrays (each ON CONFLICT DO NOTHING)."""
    if not decisions and not alerts and not timers:
        return
    full = [{"outcome": None, "channel": None, "customer_facing": False, "ref": None, **d} for d in decisions]
    await conn.execute(
        text(
            "WITH d AS (INSERT INTO actions.decisions (decision_id, rule_id, action, rating_id, "
            " customer_id, notification_id, created_at, outcome, channel, customer_facing, ref) "
            " SELECT * FROM unnest(CAST(:d_id AS text[]), CAST(:d_rule AS text[]), "
            " CAST(:d_action AS text[]), CAST(:d_rating AS text[]), CAST(:d_customer AS text[]), "
            " CAST(:d_note AS text[]), "
            " CAST(:d_at AS timestamptz[]), CAST(:d_outcome AS text[]), CAST(:d_channel AS text[]), "
            " CAST(:d_facing AS boolean[]), CAST(:d_ref AS text[])) ON CONFLICT DO NOTHING RETURNING 1), "
            "a AS (INSERT INTO actions.alerts (alert_id, rule_id, rating_id, customer_id, owner_email, "
            " owner_name, priority, due_at, context, created_at) "
            " SELECT id, r, rt, c, oe, onm, p, due, CAST(ctx AS jsonb), :now FROM unnest("
            " CAST(:a_id AS text[]), CAST(:a_rule AS text[]), CAST(:a_rating AS text[]), "
            " CAST(:a_customer AS text[]), CAST(:a_owner AS text[]), CAST(:a_owner_name AS text[]), "
            " CAST(:a_priority AS text[]), CAST(:a_due AS timestamptz[]), CAST(:a_context AS text[])) "
            " AS v(id, r, rt, c, oe, onm, p, due, ctx) ON CONFLICT DO NOTHING RETURNING 1), "
            "t AS (INSERT INTO actions.timers (timer_id, kind, ref, customer_id, due_at, payload, "
            " created_at) "
            " SELECT id, k, rf, c, due, CAST(pl AS jsonb), :now FROM unnest(CAST(:t_id AS text[]), "
            " CAST(:t_kind AS text[]), CAST(:t_ref AS text[]), CAST(:t_customer AS text[]), "
            " CAST(:t_due AS timestamptz[]), CAST(:t_payload AS text[])) AS v(id, k, rf, c, due, pl) "
            " ON CONFLICT DO NOTHING RETURNING 1) "
            "SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM a), (SELECT count(*) FROM t)"
        ),
        {
            "d_id": [d["decision_id"] for d in full],
            "d_rule": [d["rule_id"] for d in full],
            "d_action": [d["action"] for d in full],
            "d_rating": [d["rating_id"] for d in full],
            "d_customer": [d["customer_id"] for d in full],
            "d_note": [d["notification_id"] for d in full],
            "d_at": [d["created_at"] for d in full],
            "d_outcome": [d["outcome"] for d in full],
            "d_channel": [d["channel"] for d in full],
            "d_facing": [d["customer_facing"] for d in full],
            "d_ref": [d["ref"] for d in full],
            "a_id": [a.alert_id for a in alerts],
            "a_rule": [a.rule_id for a in alerts],
            "a_rating": [a.rating_id for a in alerts],
            "a_customer": [a.customer_id for a in alerts],
            "a_owner": [a.owner_email for a in alerts],
            "a_owner_name": [a.owner_name for a in alerts],
            "a_priority": [a.priority for a in alerts],
            "a_due": [a.due_at for a in alerts],
            "a_context": [json.dumps(a.context, default=str) for a in alerts],
            "t_id": [t.timer_id for t in timers],
            "t_kind": [t.kind for t in timers],
            "t_ref": [t.ref for t in timers],
            "t_customer": [t.customer_id for t in timers],
            "t_due": [t.due_at for t in timers],
            "t_payload": [json.dumps(t.payload, default=str) for t in timers],
            "now": now,
        },
    )
