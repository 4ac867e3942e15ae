"""Ratings history and the facts a batch of ratings is decided on, in PostgreSQL.

Every read for a batch is one query over all the batch's customers (``= ANY(:ids)``), never one per rating.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.actions.engine import Fatigue
from services.actions.facts import CustomerContext, PastRating
from services.actions.ports import BatchFacts, CustomerFacts, StoredRating
from services.actions.verbatims import Analysis
from shared.events import RatingSubmitted

# Per batch in one statement: answered re-surveys cancelled (a comment, or an answer carrying the survey
# id, stops the "no answer -> support calls" timer), the newest rules version, each customer's context,
# latest ratings, and fatigue (when each rule last acted, customer messages in the last 24 h, active
# sequences). A micro-batch paid seven round trips for these. The reads do not touch ``actions.timers``,
# so running the update in the same statement changes nothing they see.
_READS = (
    "(SELECT max(version) FROM actions.rule_sets) AS version, "
    "(SELECT array_agg(ROW(customer_id, email, phone, locale, timezone, tier, value, "
    " owner_email, owner_name, opted_out, attributes, consent)) FROM actions.customers "
    " WHERE customer_id = ANY(:ids)) AS contexts, "
    "(SELECT array_agg(ROW(customer_id, rating_id, occurred_at, normalized, sentiment)) FROM ("
    " SELECT customer_id, rating_id, occurred_at, normalized, sentiment, row_number() OVER "
    " (PARTITION BY customer_id ORDER BY occurred_at DESC, rating_id DESC) AS rn "
    " FROM actions.ratings WHERE customer_id = ANY(:ids) AND occurred_at >= :since "
    " AND customer_verified) AS x "
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
)
_CANCEL_ANSWERED = (
    "WITH cancelled AS (UPDATE actions.timers SET status = 'cancelled', outcome = 'answered', "
    "fired_at = :now WHERE kind = 'resurvey_no_answer' AND status = 'pending' "
    "AND (customer_id = ANY(:commented) OR ref = ANY(:surveys)) RETURNING 1) "
    "SELECT (SELECT count(*) FROM cancelled) AS cancelled, "
)
_BATCH_FACTS = text(_CANCEL_ANSWERED + _READS)
#: The same reads without the update: the dry run decides as the consumer would and writes nothing.
_FACTS_ONLY = text("SELECT " + _READS)
_STORED = text(
    "SELECT rating_id, customer_id, metric, scale, score, sentiment, occurred_at, has_comment, survey_id, "
    "themes, comment_sentiment FROM actions.ratings "
    "WHERE CAST(:id AS text) IS NULL OR rating_id = :id ORDER BY occurred_at DESC, rating_id LIMIT :limit"
)


class PgRatings:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def insert_new(
        self, *, ratings: Sequence[RatingSubmitted], analyses: Mapping[str, Analysis]
    ) -> set[str]:
        """Record ratings in the per-customer history; returns the ids seen for the first time."""
        unique = {r.rating_id: r for r in reversed(ratings)}
        if not unique:
            return set()
        rows = list(unique.values())
        result = await self._conn.execute(
            text(
                "INSERT INTO actions.ratings (rating_id, customer_id, metric, scale, score, normalized, "
                "sentiment, occurred_at, has_comment, survey_id, themes, comment_sentiment, "
                "customer_verified, revision) "
                "SELECT id, c, m, s, score, n, sent, t, hc, sv, "
                "COALESCE(ARRAY(SELECT jsonb_array_elements_text(th)), '{}'), cs, cv, rev "
                "FROM unnest(CAST(:id AS text[]), CAST(:c AS text[]), "
                "CAST(:m AS text[]), CAST(:s AS text[]), CAST(:score AS smallint[]), CAST(:n AS real[]), "
                "CAST(:sent AS text[]), CAST(:t AS timestamptz[]), CAST(:hc AS boolean[]), "
                "CAST(:sv AS text[]), CAST(:th AS jsonb[]), CAST(:cs AS text[]), CAST(:cv AS boolean[]), "
                "CAST(:rev AS integer[])) "
                "AS v(id, c, m, s, score, n, sent, t, hc, sv, th, cs, cv, rev) "
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
                "th": [
                    json.dumps(list(analyses[r.rating_id].themes) if r.rating_id in analyses else [])
                    for r in rows
                ],
                "cs": [
                    analyses[r.rating_id].sentiment if r.rating_id in analyses and r.comment else None
                    for r in rows
                ],
                "cv": [r.customer_verified for r in rows],
                "rev": [r.revision for r in rows],
            },
        )
        return {row.rating_id for row in result}

    async def revise(
        self, *, ratings: Sequence[RatingSubmitted], analyses: Mapping[str, Analysis]
    ) -> set[str]:
        """A newer revision replaces the stored answer; an older or equal one changes nothing."""
        if not ratings:
            return set()
        result = await self._conn.execute(
            text(
                "UPDATE actions.ratings r SET score = v.score, normalized = v.n, sentiment = v.sent, "
                "has_comment = v.hc, themes = COALESCE(ARRAY(SELECT jsonb_array_elements_text(v.th)), '{}'), "
                "comment_sentiment = v.cs, revision = v.rev "
                "FROM unnest(CAST(:id AS text[]), CAST(:score AS smallint[]), CAST(:n AS real[]), "
                "CAST(:sent AS text[]), CAST(:hc AS boolean[]), CAST(:th AS jsonb[]), CAST(:cs AS text[]), "
                "CAST(:rev AS integer[])) AS v(id, score, n, sent, hc, th, cs, rev) "
                "WHERE r.rating_id = v.id AND r.revision < v.rev RETURNING r.rating_id"
            ),
            {
                "id": [r.rating_id for r in ratings],
                "score": [r.score for r in ratings],
                "n": [r.normalized for r in ratings],
                "sent": [r.sentiment.value for r in ratings],
                "hc": [bool(r.comment and r.comment.strip()) for r in ratings],
                "th": [
                    json.dumps(list(analyses[r.rating_id].themes) if r.rating_id in analyses else [])
                    for r in ratings
                ],
                "cs": [
                    analyses[r.rating_id].sentiment if r.rating_id in analyses and r.comment else None
                    for r in ratings
                ],
                "rev": [r.revision for r in ratings],
            },
        )
        return {row.rating_id for row in result}

    async def batch_facts(
        self,
        *,
        customer_ids: Sequence[str],
        since: datetime,
        per_customer: int,
        now: datetime,
        commented_customers: Sequence[str],
        survey_ids: Sequence[str],
    ) -> BatchFacts:
        """Answered re-surveys cancelled, then rules version, contexts, history and fatigue: one statement."""
        ids = sorted(set(customer_ids))
        params = {
            "ids": ids,
            "since": since,
            "n": per_customer,
            "now": now,
            "day_ago": now - timedelta(hours=24),
            "commented": sorted(set(commented_customers)),
            "surveys": sorted(set(survey_ids)),
        }
        return _facts_of(ids, (await self._conn.execute(_BATCH_FACTS, params)).one())

    async def customer_facts(
        self, *, customer_id: str, since: datetime, per_customer: int, now: datetime
    ) -> CustomerFacts:
        """One customer's context, history and fatigue, without the batch's update (the dry run)."""
        ids = [customer_id]
        day_ago = now - timedelta(hours=24)
        params = {"ids": ids, "since": since, "n": per_customer, "now": now, "day_ago": day_ago}
        facts = _facts_of(ids, (await self._conn.execute(_FACTS_ONLY, params)).one())
        return CustomerFacts(
            rules_version=facts.rules_version,
            context=facts.contexts.get(customer_id),
            past=facts.past.get(customer_id, []),
            fatigue=facts.fatigue[customer_id],
        )

    async def stored(self, *, limit: int, rating_id: str | None = None) -> list[StoredRating]:
        """The newest ratings actions decided on (or the one named), to pick one for a dry run."""
        rows = await self._conn.execute(_STORED, {"id": rating_id, "limit": limit})
        return [
            StoredRating(
                rating_id=r.rating_id,
                customer_id=r.customer_id,
                metric=r.metric,
                scale=r.scale,
                score=int(r.score),
                sentiment=r.sentiment,
                occurred_at=r.occurred_at,
                has_comment=bool(r.has_comment),
                survey_id=r.survey_id,
                themes=tuple(r.themes or ()),
                comment_sentiment=r.comment_sentiment,
            )
            for r in rows
        ]


def _facts_of(ids: Sequence[str], row: Any) -> BatchFacts:
    """The reads of ``_READS`` (one row of arrays) as the engine's facts."""
    past: dict[str, list[PastRating]] = defaultdict(list)
    for p in row.past or ():
        past[p[0]].append(PastRating(p[1], p[2], float(p[3]), p[4]))
    return BatchFacts(
        rules_version=int(row.version) if row.version is not None else None,
        contexts={c[0]: _context_of(c) for c in row.contexts or ()},
        past=dict(past),
        fatigue=_fatigue_of(ids, fired=row.fired or (), sent=row.sent or (), sequences=row.sequences or ()),
    )


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _context_of(c: Sequence[Any]) -> CustomerContext:
    """A customer row read as an anonymous record (``ROW(...)`` in the batch query), by position."""
    return CustomerContext(
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


def _fatigue_of(
    ids: Sequence[str], *, fired: Sequence[Any], sent: Sequence[Any], sequences: Sequence[Any]
) -> dict[str, Fatigue]:
    last: dict[str, dict[str, datetime]] = defaultdict(dict)
    for f in fired:
        last[f[0]][f[1]] = f[2]
    counts = {s[0]: int(s[1]) for s in sent}
    active: dict[str, set[str]] = defaultdict(set)
    for q in sequences:
        active[q[0]].add(q[1])
    return {
        c: Fatigue(
            last_fired=last.get(c, {}),
            sent_24h=counts.get(c, 0),
            active_sequences=frozenset(active.get(c, ())),
        )
        for c in ids
    }
