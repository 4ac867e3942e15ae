"""PostgreSQL adapter of the identity ports (schema ``identity``); every call is time-bounded.

Database errors are re-raised as ``StoreUnavailable`` / ``Conflict`` without their cause chained, so a
logged traceback never carries a statement's parameters (addresses, hashes).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from ipaddress import ip_address
from typing import Any, TypeVar

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.identity.ports import (
    ApiToken,
    AuditAction,
    AuditEntry,
    AuditOutcome,
    AuditQuery,
    AuditRecord,
    Conflict,
    NewTokenRecord,
    NewUser,
    Session,
    StoreUnavailable,
    User,
)
from shared.identity.principal import grant_texts, parse_grants
from shared.identity.scopes import Role, Scope

T = TypeVar("T")

_USER_COLS = (
    "user_id, email, display_name, role, segments, accounts, disabled, created_at, updated_at, "
    "last_sign_in_at, password_hash, oidc_issuer, oidc_subject, failed_sign_ins, locked_until"
)
_MACHINE_COLS = (
    "token_id, name, role, scopes, segments, accounts, created_by, created_at, expires_at, revoked_at, "
    "last_used_at"
)
_AUDIT_COLS = "audit_id, at, actor, action, service, outcome, target, host(source_ip) AS source_ip, details"

_INSERT_USER = text(
    f"""
    INSERT INTO identity.users (user_id, email, display_name, role, segments, accounts, password_hash,
                                oidc_issuer, oidc_subject)
    VALUES (:id, :email, :name, :role, :segments, :accounts, :password_hash, :issuer, :subject)
    RETURNING {_USER_COLS}
    """
)
_UPDATE_USER = text(
    f"""
    UPDATE identity.users SET email = :email, display_name = :name, role = :role, segments = :segments,
           accounts = :accounts, disabled = :disabled, updated_at = now()
    WHERE user_id = :id RETURNING {_USER_COLS}
    """
)
_SIGN_IN_OK = text(
    "UPDATE identity.users SET last_sign_in_at = :at, failed_sign_ins = 0, locked_until = NULL "
    "WHERE user_id = :id"
)
_SIGN_IN_FAILED = text(
    "UPDATE identity.users SET failed_sign_ins = failed_sign_ins + 1, locked_until = :locked "
    "WHERE user_id = :id"
)
_INSERT_TOKEN = text(
    f"""
    INSERT INTO identity.api_tokens (token_id, token_hash, name, role, scopes, segments, accounts, created_by,
                                     expires_at)
    VALUES (:id, :hash, :name, :role, :scopes, :segments, :accounts, :by, :expires)
    RETURNING {_MACHINE_COLS}
    """
)
_TOUCH_TOKENS = text(
    """
    UPDATE identity.api_tokens AS t SET last_used_at = GREATEST(COALESCE(t.last_used_at, v.at), v.at)
    FROM unnest(CAST(:ids AS text[]), CAST(:ats AS timestamptz[])) AS v(token_id, at)
    WHERE t.token_id = v.token_id
    """
)
_INSERT_AUDIT = text(
    """
    INSERT INTO identity.audit_log (at, actor, action, service, outcome, target, source_ip, details)
    VALUES (:at, :actor, :action, :service, :outcome, :target, CAST(:ip AS inet), CAST(:details AS jsonb))
    RETURNING audit_id
    """
)
_READ_AUDIT = text(
    f"""
    SELECT {_AUDIT_COLS} FROM identity.audit_log
    WHERE (CAST(:since AS timestamptz) IS NULL OR at >= :since)
      AND (CAST(:until AS timestamptz) IS NULL OR at < :until)
      AND (CAST(:actor AS text) IS NULL OR actor = :actor)
      AND (CAST(:action AS text) IS NULL OR action = :action)
      AND (CAST(:target AS text) IS NULL OR target = :target)
      AND (CAST(:before AS bigint) IS NULL OR audit_id < :before)
    ORDER BY audit_id DESC LIMIT :limit
    """
)


def _user(row: Any) -> User:
    return User(
        user_id=row.user_id,
        email=row.email,
        display_name=row.display_name,
        role=Role(row.role),
        segments=parse_grants(row.segments),
        accounts=frozenset(row.accounts or ()),
        disabled=row.disabled,
        created_at=row.created_at,
        updated_at=row.updated_at,
        last_sign_in_at=row.last_sign_in_at,
        password_hash=row.password_hash,
        oidc_issuer=row.oidc_issuer,
        oidc_subject=row.oidc_subject,
        failed_sign_ins=row.failed_sign_ins,
        locked_until=row.locked_until,
    )


def _token(row: Any) -> ApiToken:
    return ApiToken(
        token_id=row.token_id,
        name=row.name,
        role=Role(row.role),
        # A scope a newer version stored and this one does not know grants nothing here.
        scopes=frozenset(Scope(s) for s in row.scopes if s in Scope._value2member_map_),
        segments=parse_grants(row.segments),
        accounts=frozenset(row.accounts or ()),
        created_by=row.created_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
    )


def _audit(row: Any) -> AuditRecord:
    details = row.details if isinstance(row.details, dict) else json.loads(row.details or "{}")
    return AuditRecord(
        audit_id=int(row.audit_id),
        entry=AuditEntry(
            at=row.at,
            actor=row.actor,
            action=AuditAction(row.action),
            service=row.service,
            outcome=AuditOutcome(row.outcome),
            target=row.target,
            source_ip=row.source_ip,
            details=details,
        ),
    )


def _ip(value: str | None) -> str | None:
    """Only a parseable address is stored ("from where" stays a fact, never free text)."""
    if not value:
        return None
    try:
        return str(ip_address(value))
    except ValueError:
        return None


class PgIdentityStore:
    """Implements ``IdentityStore`` (and so ``TokenLookup`` and ``AuditLog``) on PostgreSQL."""

    def __init__(self, *, engine: AsyncEngine, timeout_s: float = 2.0) -> None:
        self.engine = engine
        self.timeout_s = timeout_s

    async def _tx(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        async def go() -> T:
            async with self.engine.begin() as conn:
                return await work(conn)

        try:
            return await asyncio.wait_for(go(), self.timeout_s)
        except IntegrityError:
            raise Conflict("a unique value is already taken") from None
        except (TimeoutError, OSError, SQLAlchemyError) as exc:
            raise StoreUnavailable(f"identity store unavailable: {type(exc).__name__}") from None

    async def _one(self, statement: Any, params: Mapping[str, Any]) -> Any:
        async def work(conn: AsyncConnection) -> Any:
            return (await conn.execute(statement, dict(params))).first()

        return await self._tx(work)

    async def _all(self, statement: Any, params: Mapping[str, Any]) -> list[Any]:
        async def work(conn: AsyncConnection) -> list[Any]:
            return list(await conn.execute(statement, dict(params)))

        return await self._tx(work)

    async def _count(self, statement: Any, params: Mapping[str, Any]) -> int:
        async def work(conn: AsyncConnection) -> int:
            return int((await conn.execute(statement, dict(params))).rowcount)

        return await self._tx(work)

    async def check(self) -> None:
        await self._one(text("SELECT 1"), {})

    # ---- users ------------------------------------------------------------------------------------
    async def create_user(self, *, user: NewUser) -> User:
        row = await self._one(
            _INSERT_USER,
            {
                "id": f"u_{secrets.token_hex(8)}",
                "email": user.email.strip().lower(),
                "name": user.display_name,
                "role": user.role.value,
                "segments": grant_texts(user.segments),
                "accounts": sorted(user.accounts),
                "password_hash": user.password_hash,
                "issuer": user.oidc_issuer,
                "subject": user.oidc_subject,
            },
        )
        return _user(row)

    async def get_user(self, *, user_id: str) -> User | None:
        row = await self._one(
            text(f"SELECT {_USER_COLS} FROM identity.users WHERE user_id = :id"), {"id": user_id}
        )
        return _user(row) if row else None

    async def user_by_email(self, *, email: str) -> User | None:
        row = await self._one(
            text(f"SELECT {_USER_COLS} FROM identity.users WHERE email = :email"),
            {"email": email.strip().lower()},
        )
        return _user(row) if row else None

    async def user_by_oidc(self, *, issuer: str, subject: str) -> User | None:
        row = await self._one(
            text(f"SELECT {_USER_COLS} FROM identity.users WHERE oidc_issuer = :iss AND oidc_subject = :sub"),
            {"iss": issuer, "sub": subject},
        )
        return _user(row) if row else None

    async def list_users(self) -> list[User]:
        rows = await self._all(text(f"SELECT {_USER_COLS} FROM identity.users ORDER BY email"), {})
        return [_user(r) for r in rows]

    async def update_user(self, *, user: User) -> User | None:
        row = await self._one(
            _UPDATE_USER,
            {
                "id": user.user_id,
                "email": user.email.strip().lower(),
                "name": user.display_name,
                "role": user.role.value,
                "segments": grant_texts(user.segments),
                "accounts": sorted(user.accounts),
                "disabled": user.disabled,
            },
        )
        return _user(row) if row else None

    async def set_password(self, *, user_id: str, password_hash: str | None) -> bool:
        statement = text(
            "UPDATE identity.users SET password_hash = :h, updated_at = now() WHERE user_id = :id"
        )
        return await self._count(statement, {"id": user_id, "h": password_hash}) > 0

    async def note_sign_in(
        self, *, user_id: str, at: datetime, ok: bool, locked_until: datetime | None
    ) -> None:
        if ok:
            await self._count(_SIGN_IN_OK, {"id": user_id, "at": at})
        else:
            await self._count(_SIGN_IN_FAILED, {"id": user_id, "locked": locked_until})

    # ---- API tokens -------------------------------------------------------------------------------
    async def add_token(self, *, token: NewTokenRecord, token_hash: bytes) -> ApiToken:
        row = await self._one(
            _INSERT_TOKEN,
            {
                "id": token.token_id,
                "hash": token_hash,
                "name": token.name,
                "role": token.role.value,
                "scopes": sorted(s.value for s in token.scopes),
                "segments": grant_texts(token.segments),
                "accounts": sorted(token.accounts),
                "by": token.created_by,
                "expires": token.expires_at,
            },
        )
        return _token(row)

    async def token_by_hash(self, *, token_hash: bytes) -> ApiToken | None:
        row = await self._one(
            text(f"SELECT {_MACHINE_COLS} FROM identity.api_tokens WHERE token_hash = :h"),
            {"h": token_hash},
        )
        return _token(row) if row else None

    async def get_token(self, *, token_id: str) -> ApiToken | None:
        row = await self._one(
            text(f"SELECT {_MACHINE_COLS} FROM identity.api_tokens WHERE token_id = :id"),
            {"id": token_id},
        )
        return _token(row) if row else None

    async def list_tokens(self) -> list[ApiToken]:
        rows = await self._all(
            text(f"SELECT {_MACHINE_COLS} FROM identity.api_tokens ORDER BY created_at"), {}
        )
        return [_token(r) for r in rows]

    async def revoke_token(self, *, token_id: str, by: str, at: datetime) -> bool:
        statement = text(
            "UPDATE identity.api_tokens SET revoked_at = :at, revoked_by = :by "
            "WHERE token_id = :id AND revoked_at IS NULL"
        )
        return await self._count(statement, {"id": token_id, "by": by, "at": at}) > 0

    async def touch_tokens(self, *, last_used: Mapping[str, datetime]) -> None:
        if not last_used:
            return
        ids = list(last_used)
        await self._count(_TOUCH_TOKENS, {"ids": ids, "ats": [last_used[i] for i in ids]})

    # ---- sessions ---------------------------------------------------------------------------------
    async def create_session(
        self, *, session_hash: bytes, user_id: str, created_at: datetime, expires_at: datetime
    ) -> None:
        statement = text(
            "INSERT INTO identity.sessions (session_hash, user_id, created_at, expires_at, last_seen_at) "
            "VALUES (:h, :user, :created, :expires, :created)"
        )
        await self._count(
            statement, {"h": session_hash, "user": user_id, "created": created_at, "expires": expires_at}
        )

    async def session_by_hash(self, *, session_hash: bytes) -> Session | None:
        row = await self._one(
            text(
                "SELECT user_id, created_at, expires_at, last_seen_at, ended_at FROM identity.sessions "
                "WHERE session_hash = :h"
            ),
            {"h": session_hash},
        )
        if row is None:
            return None
        return Session(
            user_id=row.user_id,
            created_at=row.created_at,
            expires_at=row.expires_at,
            last_seen_at=row.last_seen_at,
            ended_at=row.ended_at,
        )

    async def touch_session(self, *, session_hash: bytes, at: datetime) -> None:
        statement = text(
            "UPDATE identity.sessions SET last_seen_at = GREATEST(COALESCE(last_seen_at, :at), :at) "
            "WHERE session_hash = :h"
        )
        await self._count(statement, {"h": session_hash, "at": at})

    async def end_session(self, *, session_hash: bytes, at: datetime) -> bool:
        statement = text(
            "UPDATE identity.sessions SET ended_at = :at WHERE session_hash = :h AND ended_at IS NULL"
        )
        return await self._count(statement, {"h": session_hash, "at": at}) > 0

    async def end_user_sessions(self, *, user_id: str, at: datetime) -> int:
        statement = text(
            "UPDATE identity.sessions SET ended_at = :at WHERE user_id = :user AND ended_at IS NULL"
        )
        return await self._count(statement, {"user": user_id, "at": at})

    async def purge_sessions(self, *, older_than: datetime) -> int:
        statement = text(
            "DELETE FROM identity.sessions WHERE expires_at < :t OR (ended_at IS NOT NULL AND ended_at < :t)"
        )
        return await self._count(statement, {"t": older_than})

    # ---- audit log --------------------------------------------------------------------------------
    async def append_audit(self, *, entry: AuditEntry) -> int:
        row = await self._one(
            _INSERT_AUDIT,
            {
                "at": entry.at,
                "actor": entry.actor,
                "action": entry.action.value,
                "service": entry.service,
                "outcome": entry.outcome.value,
                "target": entry.target,
                "ip": _ip(entry.source_ip),
                "details": json.dumps(dict(entry.details), sort_keys=True),
            },
        )
        return int(row.audit_id)

    async def read_audit(self, *, query: AuditQuery) -> list[AuditRecord]:
        rows = await self._all(
            _READ_AUDIT,
            {
                "since": query.since,
                "until": query.until,
                "actor": query.actor,
                "action": query.action.value if query.action else None,
                "target": query.target,
                "before": query.before_id,
                "limit": max(1, min(query.limit, 1000)),
            },
        )
        return [_audit(r) for r in rows]

    async def purge_audit(self, *, older_than: datetime) -> int:
        """The retention job: the only delete the append-only trigger lets through."""

        async def work(conn: AsyncConnection) -> int:
            await conn.execute(text("SELECT set_config('csat.audit_purge', 'on', true)"))
            result = await conn.execute(
                text("DELETE FROM identity.audit_log WHERE at < :t"), {"t": older_than}
            )
            return int(result.rowcount)

        return await self._tx(work)
