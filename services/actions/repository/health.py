"""Account health in PostgreSQL: accounts and contacts, the model's inputs, current health and history."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.actions.health.evidence import Evidence, Observation, RatingPoint
from services.actions.health.model import Band
from services.actions.health.transitions import HealthPoint, HealthState
from services.actions.ports import HealthAlert, Reach, Subject
from services.actions.repository.rows import jsonable
from shared.events import RatingSubmitted, UsageObserved
from shared.scales import Metric

#: Alerts of this rule are not inputs of the health (the health raised them).
_HEALTH_RULE = "health_falls"


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
        rows = await self._conn.execute(
            text(
                "INSERT INTO actions.health_ratings "
                "(rating_id, customer_id, metric, score, normalized, positive, occurred_at) "
                "SELECT * FROM unnest(CAST(:id AS text[]), CAST(:c AS text[]), CAST(:m AS text[]), "
                "CAST(:s AS integer[]), CAST(:n AS double precision[]), CAST(:p AS boolean[]), "
                "CAST(:t AS timestamptz[])) ON CONFLICT DO NOTHING RETURNING rating_id"
            ),
            {
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

    async def _contacts(self, subject: Subject) -> list[str]:
        if subject.kind == "customer":
            return [subject.id]
        rows = await self._conn.execute(
            text("SELECT customer_id FROM actions.account_members WHERE account_id = :a"), {"a": subject.id}
        )
        return [r.customer_id for r in rows]

    async def evidence(self, *, subject: Subject) -> Evidence:
        contacts = await self._contacts(subject)
        ratings = await self._conn.execute(
            text(
                "SELECT rating_id, customer_id, metric, score, normalized, positive, occurred_at "
                "FROM actions.health_ratings WHERE customer_id = ANY(:c) ORDER BY occurred_at, rating_id"
            ),
            {"c": contacts},
        )
        points = tuple(
            RatingPoint(
                r.rating_id, r.customer_id, Metric(r.metric), r.score, r.normalized, r.positive, r.occurred_at
            )
            for r in ratings
        )
        account = subject.id if subject.kind == "account" else None
        obs = await self._conn.execute(
            text(
                "SELECT observation_id, account_id, customer_id, observed_at, signals "
                "FROM actions.usage_observations "
                "WHERE (customer_id = ANY(:c)) OR (CAST(:a AS text) IS NOT NULL AND account_id = :a "
                "AND customer_id IS NULL) ORDER BY observed_at, observation_id"
            ),
            {"c": contacts, "a": account},
        )
        observations = tuple(
            Observation(
                o.observation_id,
                o.customer_id,
                o.observed_at,
                {k: float(v) for k, v in (o.signals or {}).items()},
            )
            for o in obs
        )
        alerts = await self._conn.execute(
            text(
                "SELECT count(*) FROM actions.alerts WHERE customer_id = ANY(:c) "
                "AND status <> 'resolved' AND rule_id <> :rule"
            ),
            {"c": contacts, "rule": _HEALTH_RULE},
        )
        return Evidence(points, observations, int(alerts.scalar_one()))

    async def state(self, *, subject: Subject) -> tuple[HealthState | None, list[HealthPoint]]:
        key = {"k": subject.kind, "i": subject.id}
        row = (
            await self._conn.execute(
                text(
                    "SELECT at, score, band, band_since, transitions FROM actions.health_current "
                    "WHERE subject_kind = :k AND subject_id = :i FOR UPDATE"
                ),
                key,
            )
        ).first()
        state = (
            HealthState(row.at, row.score, _band(row.band), row.band_since, row.transitions)
            if row is not None
            else None
        )
        rows = await self._conn.execute(
            text(
                "SELECT at, score, band FROM actions.health_history "
                "WHERE subject_kind = :k AND subject_id = :i ORDER BY at"
            ),
            key,
        )
        return state, [HealthPoint(r.at, r.score, _band(r.band)) for r in rows]

    async def save(
        self,
        *,
        subject: Subject,
        state: HealthState,
        point: HealthPoint | None,
        delta_30d: float | None,
        model_version: int | None,
        explanation: list[dict[str, Any]],
    ) -> None:
        await self._conn.execute(
            text(
                "INSERT INTO actions.health_current (subject_kind, subject_id, at, score, band, band_since, "
                "transitions, delta_30d, model_version, explanation, updated_at) "
                "VALUES (:k, :i, :at, :score, :band, :since, :n, :d, :v, CAST(:e AS jsonb), now()) "
                "ON CONFLICT (subject_kind, subject_id) DO UPDATE SET at = EXCLUDED.at, "
                "score = EXCLUDED.score, band = EXCLUDED.band, band_since = EXCLUDED.band_since, "
                "transitions = EXCLUDED.transitions, delta_30d = EXCLUDED.delta_30d, "
                "model_version = EXCLUDED.model_version, explanation = EXCLUDED.explanation, "
                "updated_at = now()"
            ),
            {
                "k": subject.kind,
                "i": subject.id,
                "at": state.at,
                "score": state.score,
                "band": state.band.value if state.band else None,
                "since": state.band_since,
                "n": state.transitions,
                "d": delta_30d,
                "v": model_version,
                "e": json.dumps(explanation, default=str),
            },
        )
        if point is not None:
            await self._conn.execute(
                text(
                    "INSERT INTO actions.health_history (subject_kind, subject_id, at, score, band) "
                    "VALUES (:k, :i, :at, :score, :band) ON CONFLICT (subject_kind, subject_id, at) "
                    "DO UPDATE SET score = EXCLUDED.score, band = EXCLUDED.band"
                ),
                {
                    "k": subject.kind,
                    "i": subject.id,
                    "at": point.at,
                    "score": point.score,
                    "band": point.band.value if point.band else None,
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
        out: dict[Subject, dict[str, Any]] = {}
        for subject in dict.fromkeys(subjects):
            row = (
                await self._conn.execute(
                    text(
                        "SELECT h.score, h.band, h.delta_30d, (SELECT p.band FROM actions.health_history p "
                        "WHERE p.subject_kind = h.subject_kind AND p.subject_id = h.subject_id "
                        "AND p.band IS DISTINCT FROM h.band ORDER BY p.at DESC LIMIT 1) AS previous_band "
                        "FROM actions.health_current h WHERE h.subject_kind = :k AND h.subject_id = :i"
                    ),
                    {"k": subject.kind, "i": subject.id},
                )
            ).first()
            if row is not None:
                out[subject] = {
                    "score": row.score,
                    "band": row.band,
                    "previous_band": row.previous_band,
                    "delta_30d": row.delta_30d,
                }
        return out

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
