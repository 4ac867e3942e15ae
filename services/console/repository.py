"""PostgreSQL adapter of the console's own port (schema ``console``, and the OpenID link of
``identity.users``); every call is time-bounded.

People, sessions, tokens and the audit log live in ``shared.identity.repository.PgIdentityStore``.
Errors are re-raised without their cause chained, so no traceback carries statement parameters.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.console.ports import ErasureDone, SignInLink
from shared.identity.ports import Conflict, StoreUnavailable

T = TypeVar("T")

_USE = text(
    "UPDATE console.sign_in_links SET used_at = :at "
    "WHERE link_hash = :h AND used_at IS NULL AND expires_at > :at RETURNING user_id"
)


class PgConsoleStore:
    """Implements ``ConsoleStore``."""

    def __init__(self, *, engine: AsyncEngine, timeout_s: float = 2.0) -> None:
        self.engine = engine
        self.timeout_s = timeout_s

    async def _run(self, statement: Any, params: Mapping[str, Any], read: Callable[[Any], T]) -> T:
        async def go() -> T:
            async with self.engine.begin() as conn:
                return read(await conn.execute(statement, dict(params)))

        try:
            return await asyncio.wait_for(go(), self.timeout_s)
        except IntegrityError:
            raise Conflict("a unique value is already taken") from None
        except (TimeoutError, OSError, SQLAlchemyError) as exc:
            raise StoreUnavailable(f"console store unavailable: {type(exc).__name__}") from None

    async def add_link(
        self, *, link_hash: bytes, user_id: str, created_by: str, created_at: datetime, expires_at: datetime
    ) -> None:
        statement = text(
            "INSERT INTO console.sign_in_links (link_hash, user_id, created_by, created_at, expires_at) "
            "VALUES (:h, :user, :by, :created, :expires)"
        )
        params = {
            "h": link_hash,
            "user": user_id,
            "by": created_by,
            "created": created_at,
            "expires": expires_at,
        }
        await self._run(statement, params, lambda _result: None)

    async def link_by_hash(self, *, link_hash: bytes) -> SignInLink | None:
        statement = text(
            "SELECT user_id, created_by, created_at, expires_at, used_at FROM console.sign_in_links "
            "WHERE link_hash = :h"
        )
        row = await self._run(statement, {"h": link_hash}, lambda result: result.first())
        if row is None:
            return None
        return SignInLink(
            user_id=row.user_id,
            created_by=row.created_by,
            created_at=row.created_at,
            expires_at=row.expires_at,
            used_at=row.used_at,
        )

    async def use_link(self, *, link_hash: bytes, at: datetime) -> str | None:
        row = await self._run(_USE, {"h": link_hash, "at": at}, lambda result: result.first())
        return str(row.user_id) if row is not None else None

    async def purge_links(self, *, older_than: datetime) -> int:
        statement = text("DELETE FROM console.sign_in_links WHERE expires_at < :t")
        return await self._run(statement, {"t": older_than}, lambda result: int(result.rowcount))

    async def link_oidc(self, *, user_id: str, issuer: str, subject: str) -> bool:
        """Only a person without an OpenID identity gets one (an admin invited them by email)."""
        statement = text(
            "UPDATE identity.users SET oidc_issuer = :iss, oidc_subject = :sub, updated_at = now() "
            "WHERE user_id = :id AND oidc_issuer IS NULL"
        )
        params = {"id": user_id, "iss": issuer, "sub": subject}
        return await self._run(statement, params, lambda result: int(result.rowcount) > 0)

    async def erasure_status(self, *, erasure_id: str) -> list[ErasureDone]:
        statement = text(
            "SELECT service, erased_at, removed FROM ops.erasures WHERE erasure_id = :e ORDER BY service"
        )
        return await self._run(
            statement,
            {"e": erasure_id},
            lambda result: [
                ErasureDone(service=r.service, erased_at=r.erased_at, removed=dict(r.removed)) for r in result
            ],
        )

    async def check(self) -> None:
        await self._run(text("SELECT 1"), {}, lambda _result: None)

    async def close(self) -> None:
        await self.engine.dispose()
