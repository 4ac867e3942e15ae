"""PostgreSQL adapter for the collector's records (schema ``collector``); every call is time-bounded."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.collector.ports import (
    Claim,
    ClaimState,
    InAppSurvey,
    KeyInfo,
    Principal,
    SmsSurvey,
    Source,
    SourceExists,
    Standing,
    StoreUnavailable,
)
from services.collector.sms import pick_sms_survey
from shared.events import CustomerErased, KeyKind
from shared.retention import Cutoffs

T = TypeVar("T")

_SOURCE_COLS = (
    "source_id, name, allowed_origins, rate_per_s, rate_burst, disabled, created_at, identity_version, "
    "identity_rotated_at"
)
_KEY_COLS = "key_id, source_id, created_at, expires_at, revoked_at, kind"

_CLAIM_BODY = """
    input AS (
        SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[])
            AS t(rating_id, source_id, fingerprint)
    ), taken AS (
        INSERT INTO collector.idempotency AS e (rating_id, source_id, fingerprint, state, claimed_at)
        SELECT rating_id, source_id, fingerprint, 'pending', now() FROM input
        ON CONFLICT (rating_id) DO UPDATE SET claimed_at = now()
            WHERE e.state = 'pending' AND e.fingerprint = EXCLUDED.fingerprint
              AND e.source_id = EXCLUDED.source_id
              AND e.claimed_at < now() - make_interval(secs => $4::float8)
        RETURNING rating_id
    )
    SELECT i.rating_id, t.rating_id IS NOT NULL AS claimed,
           e.state, e.fingerprint = i.fingerprint AND e.source_id = i.source_id AS same
    FROM input i
    LEFT JOIN taken t ON t.rating_id = i.rating_id
    LEFT JOIN collector.idempotency e ON e.rating_id = i.rating_id
"""
_CONFIRM_SET = """
    UPDATE collector.idempotency SET state = 'accepted', accepted_at = now(),
        first_accepted_at = COALESCE(first_accepted_at, now())
"""
_CONFIRM = _CONFIRM_SET + "    WHERE rating_id = ANY($1::text[])\n"
_CLAIM = "WITH" + _CLAIM_BODY
#: A claim that also lands earlier confirmations ($5): one statement, one transaction, instead of two.
#: PostgreSQL runs a data-modifying WITH to completion whether or not the query reads it. The caller
#: keeps every id it claims out of $5 (a row modified twice in one statement is an error or ignored).
_CLAIM_CONFIRM = (
    "WITH confirmed AS (" + _CONFIRM_SET + "    WHERE rating_id = ANY($5::text[])\n    )," + _CLAIM_BODY
)
_STANDING = """
    SELECT source_id, fingerprint, state, revision, claimed_at, first_accepted_at
    FROM collector.idempotency WHERE rating_id = $1
"""
_REVISE = """
    UPDATE collector.idempotency
    SET fingerprint = $3, revision = revision + 1, state = 'pending', claimed_at = now()
    WHERE rating_id = $1 AND source_id = $2 AND revision = $4
      AND (state = 'accepted' OR claimed_at < now() - make_interval(secs => $5::float8))
    RETURNING revision
"""
_RELEASE = "DELETE FROM collector.idempotency WHERE rating_id = ANY($1::text[]) AND state = 'pending'"
_PRINCIPAL = """
    SELECT k.key_id, k.kind, s.source_id, s.name, s.allowed_origins, s.rate_per_s, s.rate_burst, s.disabled,
           s.created_at, s.identity_version, s.identity_rotated_at
    FROM collector.api_keys k JOIN collector.sources s USING (source_id)
    WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > $2)
"""

_GET_SOURCE = text(f"SELECT {_SOURCE_COLS} FROM collector.sources WHERE source_id = :id")  # noqa: S608 - fixed column list
_LIST_SOURCES = text(f"SELECT {_SOURCE_COLS} FROM collector.sources ORDER BY source_id")  # noqa: S608 - fixed column list


class _Row:
    """Attribute access over an asyncpg record, so one mapper serves both drivers."""

    def __init__(self, record: Any) -> None:
        self._record = record

    def __getattr__(self, name: str) -> Any:
        return self._record[name]


def _source(row: Any) -> Source:
    return Source(
        source_id=row.source_id,
        name=row.name,
        allowed_origins=tuple(row.allowed_origins or ()),
        rate_per_s=row.rate_per_s,
        rate_burst=row.rate_burst,
        disabled=row.disabled,
        created_at=row.created_at,
        identity_version=row.identity_version,
        identity_rotated_at=row.identity_rotated_at,
    )


def _key(row: Any) -> KeyInfo:
    return KeyInfo(
        key_id=row.key_id,
        source_id=row.source_id,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        kind=KeyKind(row.kind),
    )


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """Nothing to undo when a connection goes back to the pool: the fast statements are single
    autocommit statements that leave no session state (no SET, LISTEN, cursor, lock or transaction).

    asyncpg's default reset is one more statement per checkout (advisory unlocks, ``CLOSE ALL``,
    ``UNLISTEN *``, ``RESET ALL``): as many statements as the work itself, on the claim's hot path.
    """


class PgStore:
    """The collector's tables; a slow or absent database becomes ``StoreUnavailable`` within the timeout."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        timeout_s: float,
        pool_size: int = 10,
        reset_sessions: bool = False,
        custom_plans: bool = True,
    ) -> None:
        self.engine = engine
        self._custom_plans = custom_plans
        self._reset_sessions = reset_sessions
        self.timeout_s = timeout_s
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()

    async def _fast(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """The per-rating statements, on a plain asyncpg pool: one round trip each, autocommit.

        The SQLAlchemy layer costs about 0.6 ms of CPU per statement and its pool queues badly under
        concurrency; idempotency claims run on every keyed rating, so they skip it. Their commits do
        not wait for the WAL flush (``synchronous_commit=off``): losing the last few claims in a
        database crash only means a retry is published again, which consumers dedupe on rating_id.
        """

        try:
            # ``asyncio.timeout`` bounds the statement in the request's own task: ``wait_for`` ran it
            # in a task of its own (one more task, its scheduling and a waiter per statement).
            async with asyncio.timeout(self.timeout_s):
                pool = await self._get_pool()
                async with pool.acquire() as conn:
                    return await work(conn)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreUnavailable(f"database unavailable: {type(exc).__name__}") from exc

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._pool_lock:
                if self._pool is None:
                    url = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
                    server = {"synchronous_commit": "off", "application_name": "csat-collector"}
                    if self._custom_plans:
                        # After five executions PostgreSQL may keep a generic plan made from the table's
                        # statistics then: made while the table was small, it hash-joins a sequential scan
                        # of the whole table on every claim until autovacuum's next ANALYZE (bench: PG CPU
                        # 40 -> 450-580 us per rating for a minute). A custom plan sees the table's current
                        # size (index scans); planning costs a few us per statement of ~35 ids.
                        server["plan_cache_mode"] = "force_custom_plan"
                    self._pool = await asyncpg.create_pool(
                        url,
                        min_size=1,
                        max_size=self._pool_size,
                        command_timeout=self.timeout_s,
                        server_settings=server,
                        reset=None if self._reset_sessions else _keep_session,
                    )
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        await self.engine.dispose()

    async def _run(self, work: Callable[[AsyncConnection], Awaitable[T]], *, write: bool = True) -> T:
        async def go() -> T:
            if write:
                async with self.engine.begin() as conn:
                    return await work(conn)
            async with self.engine.connect() as conn:
                return await work(conn)

        try:
            return await asyncio.wait_for(go(), self.timeout_s)
        except IntegrityError:
            raise
        except (TimeoutError, SQLAlchemyError, OSError) as exc:
            raise StoreUnavailable(f"database unavailable: {type(exc).__name__}") from exc

    async def check(self) -> None:
        async def q(conn: AsyncConnection) -> None:
            await conn.execute(text("SELECT 1 FROM collector.idempotency LIMIT 1"))

        await self._run(q, write=False)

    async def principal_for_key(self, *, key_hash: bytes, now: datetime) -> Principal | None:
        row = await self._fast(lambda conn: conn.fetchrow(_PRINCIPAL, key_hash, now))
        if row is None:
            return None
        return Principal(source=_source(_Row(row)), key_id=row["key_id"], kind=KeyKind(row["kind"]))

    async def all_origins(self) -> set[str]:
        async def q(conn: AsyncConnection) -> set[str]:
            rows = await conn.execute(
                text("SELECT DISTINCT unnest(allowed_origins) AS o FROM collector.sources WHERE NOT disabled")
            )
            return {r.o for r in rows}

        return await self._run(q, write=False)

    async def create_source(self, *, source: Source) -> Source:
        async def q(conn: AsyncConnection) -> Source:
            row = (
                await conn.execute(
                    text(
                        "INSERT INTO collector.sources (source_id, name, allowed_origins, rate_per_s, "  # noqa: S608 - fixed column list; values are bound
                        "rate_burst, disabled) VALUES (:id, :name, :origins, :rate, :burst, :disabled) "
                        f"ON CONFLICT DO NOTHING RETURNING {_SOURCE_COLS}"
                    ),
                    {
                        "id": source.source_id,
                        "name": source.name,
                        "origins": list(source.allowed_origins),
                        "rate": source.rate_per_s,
                        "burst": source.rate_burst,
                        "disabled": source.disabled,
                    },
                )
            ).first()
            if row is None:
                raise SourceExists(source.source_id)
            return _source(row)

        return await self._run(q)

    async def update_source(self, *, source_id: str, changes: dict[str, Any]) -> Source | None:
        columns = {"name", "allowed_origins", "rate_per_s", "rate_burst", "disabled"}
        sets = [f"{c} = :{c}" for c in changes if c in columns]

        async def q(conn: AsyncConnection) -> Source | None:
            if not sets:
                row = (
                    await conn.execute(
                        _GET_SOURCE,
                        {"id": source_id},
                    )
                ).first()
            else:
                params = {c: (list(v) if c == "allowed_origins" else v) for c, v in changes.items()}
                row = (
                    await conn.execute(
                        text(
                            f"UPDATE collector.sources SET {', '.join(sets)}, updated_at = now() "  # noqa: S608 - column names come from a fixed whitelist; values are bound
                            f"WHERE source_id = :id RETURNING {_SOURCE_COLS}"
                        ),
                        {**params, "id": source_id},
                    )
                ).first()
            return None if row is None else _source(row)

        return await self._run(q)

    async def get_source(self, *, source_id: str) -> Source | None:
        async def q(conn: AsyncConnection) -> Source | None:
            row = (
                await conn.execute(
                    _GET_SOURCE,
                    {"id": source_id},
                )
            ).first()
            return None if row is None else _source(row)

        return await self._run(q, write=False)

    async def list_sources(self) -> list[Source]:
        async def q(conn: AsyncConnection) -> list[Source]:
            rows = await conn.execute(_LIST_SOURCES)
            return [_source(r) for r in rows]

        return await self._run(q, write=False)

    async def delete_source(self, *, source_id: str) -> bool:
        async def q(conn: AsyncConnection) -> bool:
            result = await conn.execute(
                text("DELETE FROM collector.sources WHERE source_id = :id RETURNING source_id"),
                {"id": source_id},
            )
            return result.first() is not None

        return await self._run(q)

    async def add_key(
        self,
        *,
        source_id: str,
        key_id: str,
        key_hash: bytes,
        kind: KeyKind,
        expire_others_at: datetime | None,
    ) -> KeyInfo:
        async def q(conn: AsyncConnection) -> KeyInfo:
            if expire_others_at is not None:
                await conn.execute(
                    text(
                        "UPDATE collector.api_keys SET expires_at = LEAST(COALESCE(expires_at, :at), :at) "
                        "WHERE source_id = :s AND kind = :kind AND revoked_at IS NULL"
                    ),
                    {"s": source_id, "at": expire_others_at, "kind": kind.value},
                )
            row = (
                await conn.execute(
                    text(
                        "INSERT INTO collector.api_keys (key_id, source_id, key_hash, kind) "  # noqa: S608 - fixed column list; values are bound
                        f"VALUES (:k, :s, :h, :kind) RETURNING {_KEY_COLS}"
                    ),
                    {"k": key_id, "s": source_id, "h": key_hash, "kind": kind.value},
                )
            ).one()
            return _key(row)

        return await self._run(q)

    async def list_keys(self, *, source_id: str) -> list[KeyInfo]:
        async def q(conn: AsyncConnection) -> list[KeyInfo]:
            rows = await conn.execute(
                text(
                    f"SELECT {_KEY_COLS} FROM collector.api_keys "  # noqa: S608 - fixed column list
                    "WHERE source_id = :s ORDER BY created_at"
                ),
                {"s": source_id},
            )
            return [_key(r) for r in rows]

        return await self._run(q, write=False)

    async def revoke_key(self, *, source_id: str, key_id: str) -> bool:
        async def q(conn: AsyncConnection) -> bool:
            result = await conn.execute(
                text(
                    "UPDATE collector.api_keys SET revoked_at = COALESCE(revoked_at, now()) "
                    "WHERE source_id = :s AND key_id = :k RETURNING key_id"
                ),
                {"s": source_id, "k": key_id},
            )
            return result.first() is not None

        return await self._run(q)

    async def rotate_identity(self, *, source_id: str, now: datetime) -> Source | None:
        async def q(conn: AsyncConnection) -> Source | None:
            row = (
                await conn.execute(
                    text(
                        "UPDATE collector.sources SET identity_version = identity_version + 1, "  # noqa: S608 - fixed column list; values are bound
                        "identity_rotated_at = :now, updated_at = now() "
                        f"WHERE source_id = :id RETURNING {_SOURCE_COLS}"
                    ),
                    {"id": source_id, "now": now},
                )
            ).first()
            return None if row is None else _source(row)

        return await self._run(q)

    async def claim(
        self, *, claims: Sequence[Claim], lease_s: float, confirm: Sequence[str] = ()
    ) -> dict[str, ClaimState]:
        """Take ownership of new rating ids in one statement and classify the ones already known;
        ``confirm`` (ids none of ``claims`` names) are confirmed by the same statement."""
        if not claims:
            if confirm:
                await self.confirm(rating_ids=confirm)
            return {}
        args: list[Any] = [
            [c.rating_id for c in claims],
            [c.source_id for c in claims],
            [c.fingerprint for c in claims],
            float(lease_s),
        ]
        query = _CLAIM
        if confirm:
            query = _CLAIM_CONFIRM
            args.append(list(confirm))
        rows = await self._fast(lambda conn: conn.fetch(query, *args))
        out: dict[str, ClaimState] = {}
        for r in rows:
            if r["claimed"]:
                out[r["rating_id"]] = ClaimState.CLAIMED
            elif r["state"] is None:
                # Committed by a concurrent request after this statement's snapshot: look again.
                out[r["rating_id"]] = ClaimState.PENDING
            elif not r["same"]:
                out[r["rating_id"]] = ClaimState.CONFLICT
            elif r["state"] == "accepted":
                out[r["rating_id"]] = ClaimState.REPLAY
            else:
                out[r["rating_id"]] = ClaimState.PENDING
        return out

    async def confirm(self, *, rating_ids: Sequence[str]) -> None:
        if rating_ids:
            await self._fast(lambda conn: conn.execute(_CONFIRM, list(rating_ids)))

    async def release(self, *, rating_ids: Sequence[str]) -> None:
        if rating_ids:
            await self._fast(lambda conn: conn.execute(_RELEASE, list(rating_ids)))

    async def standing(self, *, rating_id: str) -> Standing | None:
        row = await self._fast(lambda conn: conn.fetchrow(_STANDING, rating_id))
        if row is None:
            return None
        return Standing(
            source_id=row["source_id"],
            fingerprint=bytes(row["fingerprint"]),
            state=row["state"],
            revision=row["revision"],
            claimed_at=row["claimed_at"],
            first_accepted_at=row["first_accepted_at"],
        )

    async def revise(
        self, *, rating_id: str, source_id: str, from_revision: int, fingerprint: bytes, lease_s: float
    ) -> bool:
        got = await self._fast(
            lambda conn: conn.fetchval(
                _REVISE, rating_id, source_id, fingerprint, from_revision, float(lease_s)
            )
        )
        return got is not None

    async def purge(self, *, older_than: datetime) -> int:
        async def q(conn: AsyncConnection) -> int:
            result = await conn.execute(
                text(
                    "DELETE FROM collector.idempotency WHERE rating_id IN ("
                    "SELECT rating_id FROM collector.idempotency WHERE claimed_at < :t LIMIT 10000)"
                ),
                {"t": older_than},
            )
            return int(getattr(result, "rowcount", 0) or 0)

        return await self._run(q)

    async def add_sms_survey(self, *, survey: SmsSurvey, phone_hash: bytes) -> None:
        async def q(conn: AsyncConnection) -> None:
            await conn.execute(
                text(
                    "INSERT INTO collector.sms_surveys (request_id, phone_hash, customer_id, survey_id, "
                    "metric, scale, locale, touchpoint, segment, account, expires_at, invitation, "
                    "reclick_window_s) VALUES (:id, :ph, :customer, :survey, :metric, :scale, :locale, "
                    ":touchpoint, CAST(:segment AS jsonb), CAST(:account AS jsonb), :expires, :invitation, "
                    ":window) "
                    "ON CONFLICT (request_id) DO NOTHING"
                ),
                {
                    "id": survey.request_id,
                    "ph": phone_hash,
                    "customer": survey.customer_id,
                    "survey": survey.survey_id,
                    "metric": survey.metric,
                    "scale": survey.scale,
                    "locale": survey.locale,
                    "touchpoint": survey.touchpoint,
                    "segment": json.dumps(survey.segment),
                    "account": json.dumps(survey.account) if survey.account else None,
                    "expires": survey.expires_at,
                    "invitation": survey.invitation,
                    "window": survey.reclick_window_s,
                },
            )

        await self._run(q)

    async def open_sms_survey(self, *, phone_hashes: Sequence[bytes], now: datetime) -> SmsSurvey | None:
        """The survey a reply from this number answers (any of its hashes), as ``pick_sms_survey`` decides
        among the unexpired ones still open to a reply."""

        async def q(conn: AsyncConnection) -> SmsSurvey | None:
            rows = (
                await conn.execute(
                    text(
                        "SELECT request_id, customer_id, survey_id, metric, scale, locale, touchpoint, "
                        "segment, account, expires_at, answered_at, invitation, reclick_window_s "
                        "FROM collector.sms_surveys "
                        "WHERE phone_hash = ANY(:ph) AND (answered_at IS NULL OR invitation) "
                        "AND expires_at > :now ORDER BY created_at DESC LIMIT 20"
                    ),
                    {"ph": list(phone_hashes), "now": now},
                )
            ).all()
            candidates = [
                SmsSurvey(
                    request_id=row.request_id,
                    customer_id=row.customer_id,
                    survey_id=row.survey_id,
                    metric=row.metric,
                    scale=row.scale,
                    locale=row.locale,
                    touchpoint=row.touchpoint,
                    segment=dict(row.segment or {}),
                    account=row.account,
                    expires_at=row.expires_at,
                    answered_at=row.answered_at,
                    invitation=row.invitation,
                    reclick_window_s=row.reclick_window_s,
                )
                for row in rows
            ]
            return pick_sms_survey(candidates, now=now)

        return await self._run(q, write=False)

    async def mark_sms_answered(self, *, request_id: str, rating_id: str, at: datetime) -> None:
        async def q(conn: AsyncConnection) -> None:
            await conn.execute(
                text(
                    "UPDATE collector.sms_surveys SET answered_at = :at, rating_id = :r "
                    "WHERE request_id = :id AND answered_at IS NULL"
                ),
                {"id": request_id, "r": rating_id, "at": at},
            )

        await self._run(q)

    async def add_inapp_survey(self, *, survey: InAppSurvey) -> None:
        async def q(conn: AsyncConnection) -> None:
            await conn.execute(
                text(
                    "INSERT INTO collector.inapp_surveys (request_id, customer_id, survey_id, token, locale, "
                    "expires_at) VALUES (:id, :customer, :survey, :token, :locale, :expires) "
                    "ON CONFLICT (request_id) DO NOTHING"
                ),
                {
                    "id": survey.request_id,
                    "customer": survey.customer_id,
                    "survey": survey.survey_id,
                    "token": survey.token,
                    "locale": survey.locale,
                    "expires": survey.expires_at,
                },
            )

        await self._run(q)

    async def inapp_surveys(self, *, customer_id: str, now: datetime) -> list[InAppSurvey]:
        async def q(conn: AsyncConnection) -> list[InAppSurvey]:
            rows = (
                await conn.execute(
                    text(
                        "SELECT request_id, customer_id, survey_id, token, locale, expires_at "
                        "FROM collector.inapp_surveys WHERE customer_id = :c AND expires_at > :now "
                        "ORDER BY created_at DESC, request_id LIMIT 20"
                    ),
                    {"c": customer_id, "now": now},
                )
            ).all()
            return [
                InAppSurvey(
                    request_id=row.request_id,
                    customer_id=row.customer_id,
                    survey_id=row.survey_id,
                    token=row.token,
                    expires_at=row.expires_at,
                    locale=row.locale,
                )
                for row in rows
            ]

        return await self._run(q, write=False)


async def scrub_customer(conn: AsyncConnection, erased: CustomerErased) -> dict[str, int]:
    """GDPR erasure: the customer's SMS survey requests (phone hash, segment, account) and in-app
    invitations go."""
    result = await conn.execute(
        text("DELETE FROM collector.sms_surveys WHERE customer_id = :c"), {"c": erased.customer_id}
    )
    inapp = await conn.execute(
        text("DELETE FROM collector.inapp_surveys WHERE customer_id = :c"), {"c": erased.customer_id}
    )
    return {"collector.sms_surveys": result.rowcount, "collector.inapp_surveys": inapp.rowcount}


async def export_customer(conn: AsyncConnection, customer_id: str) -> dict[str, Any]:
    """What the collector holds for the customer (GDPR art. 15/20): SMS survey requests."""
    rows = await conn.execute(
        text(
            "SELECT request_id, survey_id, metric, scale, locale, touchpoint, segment, account, created_at, "
            "expires_at, answered_at, rating_id FROM collector.sms_surveys WHERE customer_id = :c "
            "ORDER BY created_at, request_id"
        ),
        {"c": customer_id},
    )
    inapp = await conn.execute(
        text(
            "SELECT request_id, survey_id, locale, created_at, expires_at FROM collector.inapp_surveys "
            "WHERE customer_id = :c ORDER BY created_at, request_id"
        ),
        {"c": customer_id},
    )
    return {
        "sms_surveys": [dict(r._mapping) for r in rows],
        "inapp_surveys": [dict(r._mapping) for r in inapp],
    }


async def purge_expired(conn: AsyncConnection, cut: Cutoffs) -> dict[str, int]:
    """Retention: SMS survey requests (phone hash included) and in-app invitations expired before the
    contact cut-off go."""
    result = await conn.execute(
        text("DELETE FROM collector.sms_surveys WHERE expires_at < :c"), {"c": cut.contacts}
    )
    inapp = await conn.execute(
        text("DELETE FROM collector.inapp_surveys WHERE expires_at < :c"), {"c": cut.contacts}
    )
    return {"collector.sms_surveys": result.rowcount, "collector.inapp_surveys": inapp.rowcount}
