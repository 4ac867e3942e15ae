"""Account health in PostgreSQL: accounts and contacts, the model's inputs, current health and history."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.actions.health.evidence import Evidence, Observation, RatingPoint
from services.actions.health.model import Band
from services.actions.health.transitions import HealthPoint, HealthState
from services.actions.ports import HealthAlert, HealthInputs, HealthSave, Reach, Subject
from services.actions.repository.rows import jsonable
from shared.events import RatingSubmitted, UsageObserved
from shared.scales import Metric

#: Alerts of this rule are not inputs of the health (the health raised them).
_HEALTH_RULE = "health_falls"


# Every subject's evidence in one round trip (it was three or four per subject): ratings of its
# contacts, observations of its contacts and (an account's) of the account itself, open alerts of its
# contacts other than the health's own. Each list keeps the order the per-subject queries had.
_EVIDENCE = text(
    # The subjects numbered in the caller's order (n), and each one's contacts: an account's members, or
    # the customer alone.
    "WITH s AS (SELECT * FROM unnest(CAST(:k AS text[]), CAST(:i AS text[])) WITH ORDINALITY "
    " AS s(kind, id, n)), "
    "c AS (SELECT s.n, m.customer_id FROM s JOIN actions.account_members m "
    " ON s.kind = 'account' AND m.account_id = s.id "
    " UNION ALL SELECT s.n, s.id FROM s WHERE s.kind = 'customer') "
    "SELECT "
    "(SELECT array_agg(ROW(c.n, r.rating_id, r.customer_id, r.metric, r.score, r.normalized, r.positive, "
    " r.occurred_at) ORDER BY c.n, r.occurred_at, r.rating_id) "
    " FROM c JOIN actions.health_ratings r ON r.customer_id = c.customer_id) AS ratings, "
    "(SELECT array_agg(ROW(x.n, x.observation_id, x.customer_id, x.observed_at, x.signals) "
    " ORDER BY x.n, x.observed_at, x.observation_id) FROM ("
    " SELECT c.n, o.observation_id, o.customer_id, o.observed_at, CAST(o.signals AS text) AS signals "
    " FROM c JOIN actions.usage_observations o ON o.customer_id = c.customer_id "
    " UNION ALL SELECT s.n, o.observation_id, o.customer_id, o.observed_at, CAST(o.signals AS text) "
    " FROM s JOIN actions.usage_observations o ON s.kind = 'account' AND o.account_id = s.id "
    " AND o.customer_id IS NULL) AS x) AS observations, "
    "(SELECT array_agg(ROW(y.n, y.open)) FROM (SELECT c.n, count(*) AS open FROM c "
    " JOIN actions.alerts a ON a.customer_id = c.customer_id "
    " WHERE a.status <> 'resolved' AND a.rule_id <> :rule GROUP BY c.n) AS y) AS alerts"
)
# The batch's stored states, row-locked in key order until commit, and each subject's history.
_STATES = text(
    "WITH s AS (SELECT * FROM unnest(CAST(:k AS text[]), CAST(:i AS text[])) AS s(kind, id)), "
    "locked AS MATERIALIZED (SELECT h.subject_kind, h.subject_id, h.at, h.score, h.band, h.band_since, "
    " h.transitions FROM actions.health_current h JOIN s ON h.subject_kind = s.kind AND h.subject_id = s.id "
    " ORDER BY h.subject_kind, h.subject_id FOR UPDATE OF h) "
    "SELECT s.kind, s.id, l.at, l.score, l.band, l.band_since, l.transitions, "
    "(SELECT array_agg(ROW(p.at, p.score, p.band) ORDER BY p.at) FROM actions.health_history p "
    " WHERE p.subject_kind = s.kind AND p.subject_id = s.id) AS history "
    "FROM s LEFT JOIN locked l ON l.subject_kind = s.kind AND l.subject_id = s.id"
)
# A recomputation's reads in one round trip (they were three: the model, ``_EVIDENCE``, ``_STATES``):
# the newest model's version (its document only when the caller does not hold that version yet), the
# evidence as ``_EVIDENCE`` reads it, and, of the subjects with any ratings or observations (``moved``),
# the stored state row-locked in key order until commit and the history, as ``_STATES`` reads them, and
# the owners of those that are accounts (what a fall's alert is addressed to).
_INPUTS = text(
    # The subjects given, numbered in the caller's order, then those of the customers given (``accounts_of``:
    # each customer's accounts, or the customer alone when it has none) that are not among them.
    "WITH g AS (SELECT * FROM unnest(CAST(:k AS text[]), CAST(:i AS text[])) WITH ORDINALITY "
    " AS g(kind, id, n)), "
    "lc AS (SELECT 'account' AS kind, m.account_id AS id FROM actions.account_members m "
    " WHERE m.customer_id = ANY(CAST(:loose AS text[])) "
    " UNION SELECT 'customer', l.c FROM unnest(CAST(:loose AS text[])) AS l(c) "
    " WHERE NOT EXISTS (SELECT 1 FROM actions.account_members m WHERE m.customer_id = l.c)), "
    "s AS (SELECT kind, id, n FROM g UNION ALL SELECT lc.kind, lc.id, "
    " (SELECT count(*) FROM g) + row_number() OVER (ORDER BY lc.kind, lc.id) FROM lc "
    " WHERE NOT EXISTS (SELECT 1 FROM g WHERE g.kind = lc.kind AND g.id = lc.id)), "
    "c AS (SELECT s.n, m.customer_id FROM s JOIN actions.account_members m "
    " ON s.kind = 'account' AND m.account_id = s.id "
    " UNION ALL SELECT s.n, s.id FROM s WHERE s.kind = 'customer'), "
    "r AS (SELECT c.n, r.rating_id, r.customer_id, r.metric, r.score, r.normalized, r.positive, "
    " r.occurred_at FROM c JOIN actions.health_ratings r ON r.customer_id = c.customer_id), "
    "x AS (SELECT c.n, o.observation_id, o.customer_id, o.observed_at, CAST(o.signals AS text) AS signals "
    " FROM c JOIN actions.usage_observations o ON o.customer_id = c.customer_id "
    " UNION ALL SELECT s.n, o.observation_id, o.customer_id, o.observed_at, CAST(o.signals AS text) "
    " FROM s JOIN actions.usage_observations o ON s.kind = 'account' AND o.account_id = s.id "
    " AND o.customer_id IS NULL), "
    "moved AS (SELECT s.* FROM s WHERE s.n IN (SELECT n FROM r UNION SELECT n FROM x)), "
    "locked AS MATERIALIZED (SELECT moved.n, h.at, h.score, h.band, h.band_since, h.transitions "
    " FROM actions.health_current h JOIN moved ON h.subject_kind = moved.kind AND h.subject_id = moved.id "
    " ORDER BY h.subject_kind, h.subject_id FOR UPDATE OF h) "
    "SELECT "
    "(SELECT array_agg(ROW(r.n, r.rating_id, r.customer_id, r.metric, r.score, r.normalized, r.positive, "
    " r.occurred_at) ORDER BY r.n, r.occurred_at, r.rating_id) FROM r) AS ratings, "
    "(SELECT array_agg(ROW(x.n, x.observation_id, x.customer_id, x.observed_at, x.signals) "
    " ORDER BY x.n, x.observed_at, x.observation_id) FROM x) AS observations, "
    "(SELECT array_agg(ROW(y.n, y.open)) FROM (SELECT c.n, count(*) AS open FROM c "
    " JOIN actions.alerts a ON a.customer_id = c.customer_id "
    " WHERE a.status <> 'resolved' AND a.rule_id <> :rule GROUP BY c.n) AS y) AS alerts, "
    "(SELECT array_agg(ROW(l.n, l.at, l.score, l.band, l.band_since, l.transitions)) FROM locked l) "
    " AS states, "
    "(SELECT array_agg(ROW(moved.n, p.at, p.score, p.band) ORDER BY moved.n, p.at) FROM moved "
    " JOIN actions.health_history p ON p.subject_kind = moved.kind AND p.subject_id = moved.id) AS history, "
    "(SELECT array_agg(moved.n) FROM moved) AS moved, "
    "(SELECT array_agg(ROW(s.kind, s.id) ORDER BY s.n) FROM s) AS subjects, "
    "(SELECT array_agg(ROW(a.account_id, a.owner_email, a.owner_name)) FROM moved "
    " JOIN actions.accounts a ON moved.kind = 'account' AND a.account_id = moved.id) AS owners, "
    "(SELECT ROW(m.version, CASE WHEN m.version IS DISTINCT FROM CAST(:v AS integer) "
    " THEN CAST(m.document AS text) END) FROM actions.health_models m ORDER BY m.version DESC LIMIT 1) "
    " AS model"
)
# The batch's recomputed healths and history points (each subject at most once), one statement.
_SAVE = text(
    "WITH cur AS (INSERT INTO actions.health_current (subject_kind, subject_id, at, score, band, "
    " band_since, transitions, delta_30d, model_version, explanation, updated_at) "
    " SELECT k, i, at, score, band, since, n, d, v, CAST(e AS jsonb), now() FROM unnest("
    " CAST(:k AS text[]), CAST(:i AS text[]), CAST(:at AS timestamptz[]), "
    " CAST(:score AS double precision[]), CAST(:band AS text[]), CAST(:since AS timestamptz[]), "
    " CAST(:n AS integer[]), CAST(:d AS double precision[]), CAST(:v AS integer[]), CAST(:e AS text[])) "
    " AS v(k, i, at, score, band, since, n, d, v, e) "
    " ON CONFLICT (subject_kind, subject_id) DO UPDATE SET at = EXCLUDED.at, "
    " score = EXCLUDED.score, band = EXCLUDED.band, band_since = EXCLUDED.band_since, "
    " transitions = EXCLUDED.transitions, delta_30d = EXCLUDED.delta_30d, "
    " model_version = EXCLUDED.model_version, explanation = EXCLUDED.explanation, "
    " updated_at = now() RETURNING 1), "
    "hist AS (INSERT INTO actions.health_history (subject_kind, subject_id, at, score, band) "
    " SELECT * FROM unnest(CAST(:pk AS text[]), CAST(:pi AS text[]), CAST(:pat AS timestamptz[]), "
    " CAST(:pscore AS double precision[]), CAST(:pband AS text[])) "
    " ON CONFLICT (subject_kind, subject_id, at) DO UPDATE SET score = EXCLUDED.score, band = EXCLUDED.band "
    " RETURNING 1) "
    "SELECT (SELECT count(*) FROM cur), (SELECT count(*) FROM hist)"
)
# The rules' health.* facts of a batch's subjects, one statement (it was one per subject).
_RULE_FACTS = text(
    "SELECT h.subject_kind, h.subject_id, h.score, h.band, h.delta_30d, (SELECT p.band "
    "FROM actions.health_history p WHERE p.subject_kind = h.subject_kind AND p.subject_id = h.subject_id "
    "AND p.band IS DISTINCT FROM h.band ORDER BY p.at DESC LIMIT 1) AS previous_band "
    "FROM actions.health_current h JOIN unnest(CAST(:k AS text[]), CAST(:i AS text[])) AS s(kind, id) "
    "ON h.subject_kind = s.kind AND h.subject_id = s.id"
)


# A batch's new answers, and (the same round trip) their customers joined to their accounts: only for
# the answers not seen before, the pairs in sorted order (the lock order of every writer of members).
_ADD_RATINGS = text(
    "WITH ins AS (INSERT INTO actions.health_ratings "
    " (rating_id, customer_id, metric, score, normalized, positive, occurred_at) "
    " SELECT * FROM unnest(CAST(:id AS text[]), CAST(:c AS text[]), CAST(:m AS text[]), "
    " CAST(:s AS integer[]), CAST(:n AS double precision[]), CAST(:p AS boolean[]), "
    " CAST(:t AS timestamptz[])) ON CONFLICT DO NOTHING RETURNING rating_id), "
    "joined AS (INSERT INTO actions.account_members (account_id, customer_id) "
    " SELECT DISTINCT m.a, m.c FROM unnest(CAST(:ma AS text[]), CAST(:mc AS text[]), CAST(:mr AS text[])) "
    " AS m(a, c, r) JOIN ins ON ins.rating_id = m.r ORDER BY m.a, m.c ON CONFLICT DO NOTHING) "
    "SELECT rating_id FROM ins"
)


def _evidence_of(keys: Sequence[Subject], row: Any) -> dict[Subject, Evidence]:
    """The ``ratings``, ``observations`` and ``alerts`` arrays of ``_EVIDENCE`` / ``_INPUTS``, by subject
    (``n`` numbers ``keys`` from 1)."""
    ratings: dict[int, list[RatingPoint]] = defaultdict(list)
    for r in row.ratings or ():
        ratings[r[0]].append(RatingPoint(r[1], r[2], Metric(r[3]), r[4], r[5], r[6], r[7]))
    observations: dict[int, list[Observation]] = defaultdict(list)
    for o in row.observations or ():
        signals = json.loads(o[4]) if o[4] is not None else {}
        observations[o[0]].append(
            Observation(o[1], o[2], o[3], {k: float(v) for k, v in (signals or {}).items()})
        )
    alerts = {a[0]: int(a[1]) for a in row.alerts or ()}
    return {
        s: Evidence(tuple(ratings.get(n, ())), tuple(observations.get(n, ())), alerts.get(n, 0))
        for n, s in enumerate(keys, start=1)
    }


def _band(value: str | None) -> Band | None:
    return Band(value) if value is not None else None


class PgHealth:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add_observations(self, *, observations: Sequence[UsageObserved]) -> list[UsageObserved]:
        if not observations:
            return []
        unique = {o.observation_id: o for o in observations}
        rows = await self._conn.execute(
            text(
                "INSERT INTO actions.usage_observations "
                "(observation_id, account_id, customer_id, observed_at, received_at, signals, source) "
                "SELECT * FROM unnest(CAST(:id AS text[]), CAST(:a AS text[]), CAST(:c AS text[]), "
                "CAST(:t AS timestamptz[]), CAST(:r AS timestamptz[]), CAST(:s AS jsonb[]), "
                "CAST(:src AS text[])) ON CONFLICT DO NOTHING RETURNING observation_id"
            ),
            {
                "id": list(unique),
                "a": [o.account_id for o in unique.values()],
                "c": [o.customer_id for o in unique.values()],
                "t": [o.observed_at for o in unique.values()],
                "r": [o.received_at for o in unique.values()],
                "s": [json.dumps(o.signals) for o in unique.values()],
                "src": [o.source for o in unique.values()],
            },
        )
        fresh = {r.observation_id for r in rows}
        return [o for oid, o in unique.items() if oid in fresh]

    async def add_ratings(self, *, ratings: Sequence[RatingSubmitted]) -> list[RatingSubmitted]:
        if not ratings:
            return []
        unique = {r.rating_id: r for r in ratings}
        members = sorted(
            {(r.account.id, r.customer.id, rid) for rid, r in unique.items() if r.account and r.account.id}
        )
        rows = await self._conn.execute(
            _ADD_RATINGS,
            {
                "ma": [a for a, _, _ in members],
                "mc": [c for _, c, _ in members],
                "mr": [rid for _, _, rid in members],
                "id": list(unique),
                "c": [r.customer.id for r in unique.values()],
                "m": [r.metric.value for r in unique.values()],
                "s": [r.score for r in unique.values()],
                "n": [r.normalized for r in unique.values()],
                "p": [r.positive for r in unique.values()],
                "t": [r.occurred_at for r in unique.values()],
            },
        )
        fresh = {r.rating_id for r in rows}
        return [r for rid, r in unique.items() if rid in fresh]

    async def join(self, *, members: Sequence[tuple[str, str]]) -> None:
        if not members:
            return
        pairs = sorted(set(members))
        await self._conn.execute(
            text(
                "INSERT INTO actions.account_members (account_id, customer_id) "
                "SELECT * FROM unnest(CAST(:a AS text[]), CAST(:c AS text[])) ON CONFLICT DO NOTHING"
            ),
            {"a": [a for a, _ in pairs], "c": [c for _, c in pairs]},
        )

    async def accounts_of(self, *, customer_ids: Sequence[str]) -> dict[str, list[str]]:
        if not customer_ids:
            return {}
        rows = await self._conn.execute(
            text(
                "SELECT customer_id, account_id FROM actions.account_members WHERE customer_id = ANY(:ids) "
                "ORDER BY account_id"
            ),
            {"ids": list(set(customer_ids))},
        )
        out: dict[str, list[str]] = {}
        for r in rows:
            out.setdefault(r.customer_id, []).append(r.account_id)
        return out

    async def evidence(self, *, subjects: Sequence[Subject]) -> dict[Subject, Evidence]:
        """One statement for the whole batch: every subject's ratings, observations and open alerts,
        each list in the order PostgreSQL sorts it (as the former per-subject queries did)."""
        keys = list(dict.fromkeys(subjects))
        if not keys:
            return {}
        row = (
            await self._conn.execute(
                _EVIDENCE,
                {"k": [s.kind for s in keys], "i": [s.id for s in keys], "rule": _HEALTH_RULE},
            )
        ).one()
        return _evidence_of(keys, row)

    async def inputs(
        self, *, subjects: Sequence[Subject], customers: Sequence[str] = (), known_version: int | None
    ) -> HealthInputs:
        given = list(dict.fromkeys(subjects))
        row = (
            await self._conn.execute(
                _INPUTS,
                {
                    "k": [s.kind for s in given],
                    "i": [s.id for s in given],
                    "loose": sorted(set(customers)),
                    "rule": _HEALTH_RULE,
                    "v": known_version,
                },
            )
        ).one()
        keys = [Subject(k, i) for k, i in row.subjects or ()]
        evidence = _evidence_of(keys, row) if keys else {}
        states: dict[int, tuple[HealthState | None, list[HealthPoint]]] = {
            n: (None, []) for n in row.moved or ()
        }
        for n, at, score, band, since, transitions in row.states or ():
            states[n] = (HealthState(at, score, _band(band), since, transitions), states[n][1])
        for n, at, score, band in row.history or ():
            states[n][1].append(HealthPoint(at, score, _band(band)))
        model = row.model
        return HealthInputs(
            model=None if model is None else (int(model[0]), json.loads(model[1]) if model[1] else None),
            evidence=evidence,
            states={keys[n - 1]: states[n] for n in sorted(states)},
            owners={a: (email, name) for a, email, name in row.owners or ()},
        )

    async def states(
        self, *, subjects: Sequence[Subject]
    ) -> dict[Subject, tuple[HealthState | None, list[HealthPoint]]]:
        keys = list(dict.fromkeys(subjects))
        if not keys:
            return {}
        rows = await self._conn.execute(_STATES, {"k": [s.kind for s in keys], "i": [s.id for s in keys]})
        out: dict[Subject, tuple[HealthState | None, list[HealthPoint]]] = {}
        for r in rows:
            state = (
                HealthState(r.at, r.score, _band(r.band), r.band_since, r.transitions)
                if r.at is not None
                else None
            )
            history = [HealthPoint(p[0], p[1], _band(p[2])) for p in r.history or ()]
            out[Subject(r.kind, r.id)] = (state, history)
        return out

    async def save(self, *, saves: Sequence[HealthSave]) -> None:
        if not saves:
            return
        points = [(x.subject, point) for x in saves if (point := x.point) is not None]
        await self._conn.execute(
            _SAVE,
            {
                "k": [x.subject.kind for x in saves],
                "i": [x.subject.id for x in saves],
                "at": [x.state.at for x in saves],
                "score": [x.state.score for x in saves],
                "band": [x.state.band.value if x.state.band else None for x in saves],
                "since": [x.state.band_since for x in saves],
                "n": [x.state.transitions for x in saves],
                "d": [x.delta_30d for x in saves],
                "v": [x.model_version for x in saves],
                "e": [json.dumps(x.explanation, default=str) for x in saves],
                "pk": [s.kind for s, _ in points],
                "pi": [s.id for s, _ in points],
                "pat": [p.at for _, p in points],
                "pscore": [p.score for _, p in points],
                "pband": [p.band.value if p.band else None for _, p in points],
            },
        )

    async def account(self, *, account_id: str) -> dict[str, Any] | None:
        row = (
            (
                await self._conn.execute(
                    text(
                        "SELECT account_id, name, owner_email, owner_name, value, tier, updated_at "
                        "FROM actions.accounts WHERE account_id = :a"
                    ),
                    {"a": account_id},
                )
            )
            .mappings()
            .first()
        )
        return jsonable(row) if row else None

    async def accounts(self, *, account_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not account_ids:
            return {}
        rows = await self._conn.execute(
            text(
                "SELECT account_id, name, owner_email, owner_name, value, tier, updated_at "
                "FROM actions.accounts WHERE account_id = ANY(:a)"
            ),
            {"a": sorted(set(account_ids))},
        )
        return {r["account_id"]: jsonable(r) for r in rows.mappings()}

    async def upsert_account(self, *, account_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        await self._conn.execute(
            text(
                "INSERT INTO actions.accounts (account_id, name, owner_email, owner_name, value, tier) "
                "VALUES (:a, :name, :oe, :on, :v, :t) ON CONFLICT (account_id) DO UPDATE SET "
                "name = EXCLUDED.name, owner_email = EXCLUDED.owner_email, owner_name = EXCLUDED.owner_name, "
                "value = EXCLUDED.value, tier = EXCLUDED.tier, updated_at = now()"
            ),
            {
                "a": account_id,
                "name": fields.get("name"),
                "oe": fields.get("owner_email"),
                "on": fields.get("owner_name"),
                "v": fields.get("value"),
                "t": fields.get("tier"),
            },
        )
        found = await self.account(account_id=account_id)
        assert found is not None
        return found

    async def open_alert(self, *, alert: HealthAlert, now: datetime) -> bool:
        rows = await self._conn.execute(
            text(
                "INSERT INTO actions.alerts (alert_id, rule_id, customer_id, owner_email, owner_name, "
                "priority, context, created_at) VALUES (:id, :rule, :c, :oe, :on, :p, CAST(:ctx AS jsonb), "
                ":now) ON CONFLICT (alert_id) DO NOTHING RETURNING alert_id"
            ),
            {
                "id": alert.alert_id,
                "rule": _HEALTH_RULE,
                "c": alert.subject.id if alert.subject.kind == "customer" else None,
                "oe": alert.owner_email,
                "on": alert.owner_name,
                "p": alert.priority,
                "ctx": json.dumps(alert.context, default=str),
                "now": now,
            },
        )
        return rows.first() is not None

    async def open_alerts(self, *, alerts: Sequence[HealthAlert], now: datetime) -> set[str]:
        if not alerts:
            return set()
        rows = await self._conn.execute(
            text(
                "INSERT INTO actions.alerts (alert_id, rule_id, customer_id, owner_email, owner_name, "
                "priority, context, created_at) SELECT id, :rule, c, oe, onm, p, CAST(ctx AS jsonb), :now "
                "FROM unnest(CAST(:id AS text[]), CAST(:c AS text[]), CAST(:oe AS text[]), "
                "CAST(:onm AS text[]), CAST(:p AS text[]), CAST(:ctx AS text[])) "
                "AS v(id, c, oe, onm, p, ctx) "
                "ON CONFLICT (alert_id) DO NOTHING RETURNING alert_id"
            ),
            {
                "rule": _HEALTH_RULE,
                "id": [a.alert_id for a in alerts],
                "c": [a.subject.id if a.subject.kind == "customer" else None for a in alerts],
                "oe": [a.owner_email for a in alerts],
                "onm": [a.owner_name for a in alerts],
                "p": [a.priority for a in alerts],
                "ctx": [json.dumps(a.context, default=str) for a in alerts],
                "now": now,
            },
        )
        return {r.alert_id for r in rows}

    async def owner_of(self, *, subject: Subject) -> str | None:
        query = (
            "SELECT owner_email FROM actions.accounts WHERE account_id = :i"
            if subject.kind == "account"
            else "SELECT owner_email FROM actions.customers WHERE customer_id = :i"
        )
        row = (await self._conn.execute(text(query), {"i": subject.id})).first()
        return row.owner_email if row is not None else None

    async def at_risk(
        self, *, owner: str | None, limit: int, reach: Reach | None = None
    ) -> list[dict[str, Any]]:
        rows = await self._conn.execute(
            text(
                "SELECT h.subject_kind, h.subject_id, h.score, h.band, h.band_since, h.delta_30d, h.at, "
                "COALESCE(a.value, c.value) AS value, COALESCE(a.owner_email, c.owner_email) AS owner_email, "
                "COALESCE(a.name, NULL) AS name, "
                "COALESCE(a.value, c.value, 1) * (100 - h.score) AS priority "
                "FROM actions.health_current h "
                "LEFT JOIN actions.accounts a ON h.subject_kind = 'account' AND a.account_id = h.subject_id "
                "LEFT JOIN actions.customers c "
                "ON h.subject_kind = 'customer' AND c.customer_id = h.subject_id "
                "WHERE h.band IN ('at_risk', 'critical') "
                "AND (CAST(:o AS text) IS NULL OR lower(COALESCE(a.owner_email, c.owner_email)) = lower(:o)) "
                "AND (NOT :within OR lower(COALESCE(a.owner_email, c.owner_email)) = lower(:me) "
                "OR (h.subject_kind = 'account' AND h.subject_id = ANY(:accounts))) "
                "ORDER BY priority DESC, h.score, h.subject_id LIMIT :limit"
            ),
            {
                "o": owner,
                "limit": limit,
                "within": reach is not None,
                "me": reach.owner_email if reach else None,
                "accounts": sorted(reach.accounts) if reach else [],
            },
        )
        return [jsonable(r) for r in rows.mappings()]

    async def health(self, *, subject: Subject) -> dict[str, Any] | None:
        key = {"k": subject.kind, "i": subject.id}
        row = (
            (
                await self._conn.execute(
                    text(
                        "SELECT subject_kind, subject_id, at, score, band, band_since, transitions, "
                        "delta_30d, model_version, explanation FROM actions.health_current "
                        "WHERE subject_kind = :k AND subject_id = :i"
                    ),
                    key,
                )
            )
            .mappings()
            .first()
        )
        if row is None:
            return None
        history = await self._conn.execute(
            text(
                "SELECT at, score, band FROM actions.health_history "
                "WHERE subject_kind = :k AND subject_id = :i ORDER BY at"
            ),
            key,
        )
        return {**jsonable(row), "history": [jsonable(h) for h in history.mappings()]}

    async def rule_facts(self, *, subjects: Sequence[Subject]) -> dict[Subject, dict[str, Any]]:
        keys = list(dict.fromkeys(subjects))
        if not keys:
            return {}
        rows = await self._conn.execute(_RULE_FACTS, {"k": [s.kind for s in keys], "i": [s.id for s in keys]})
        return {
            Subject(r.subject_kind, r.subject_id): {
                "score": r.score,
                "band": r.band,
                "previous_band": r.previous_band,
                "delta_30d": r.delta_30d,
            }
            for r in rows
        }

    async def latest_model(self) -> tuple[int, Any] | None:
        row = (
            await self._conn.execute(
                text("SELECT version, document FROM actions.health_models ORDER BY version DESC LIMIT 1")
            )
        ).first()
        return (int(row.version), row.document) if row is not None else None

    async def save_model(self, *, document: Any, origin: str, author: str | None) -> int:
        # One writer at a time: the next version is computed under a transaction-level lock.
        await self._conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('actions.health_models'))"))
        row = await self._conn.execute(
            text(
                "INSERT INTO actions.health_models (version, document, origin, author) "
                "SELECT COALESCE(max(version), 0) + 1, CAST(:d AS jsonb), :o, :a FROM actions.health_models "
                "RETURNING version"
            ),
            {"d": json.dumps(document), "o": origin, "a": author},
        )
        return int(row.scalar_one())

    async def models(self, *, limit: int) -> list[dict[str, Any]]:
        rows = await self._conn.execute(
            text(
                "SELECT version, origin, author, created_at FROM actions.health_models "
                "ORDER BY version DESC LIMIT :n"
            ),
            {"n": limit},
        )
        return [jsonable(r) for r in rows.mappings()]
