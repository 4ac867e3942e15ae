"""Versions of the rule set in PostgreSQL; writers serialise on an advisory lock."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.actions.ports import StoredRuleSet
from services.actions.repository.rows import jsonable


class PgRuleSets:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def latest_version(self) -> int | None:
        row = await self._conn.execute(text("SELECT max(version) FROM actions.rule_sets"))
        value = row.scalar_one()
        return int(value) if value is not None else None

    async def load(self, *, version: int | None = None) -> StoredRuleSet | None:
        """``version``, or the newest."""
        result = await self._conn.execute(
            text(
                "SELECT version, document, origin, created_at, author FROM actions.rule_sets "
                "WHERE CAST(:v AS integer) IS NULL OR version = :v ORDER BY version DESC LIMIT 1"
            ),
            {"v": version},
        )
        row = result.first()
        if row is None:
            return None
        return StoredRuleSet(int(row.version), row.document, str(row.origin), row.created_at, row.author)

    async def lock(self) -> None:
        """Serialise writers of the rule set (held until the transaction ends)."""
        await self._conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('actions.rule_sets'))"))

    async def insert(self, *, version: int, document: Any, origin: str, author: str | None = None) -> bool:
        result = await self._conn.execute(
            text(
                "INSERT INTO actions.rule_sets (version, document, origin, author) "
                "VALUES (:v, CAST(:d AS jsonb), :o, :a) ON CONFLICT DO NOTHING"
            ),
            {"v": version, "d": json.dumps(document, default=str), "o": origin, "a": author},
        )
        return bool(result.rowcount)

    async def versions(self, *, limit: int) -> list[dict[str, Any]]:
        rows = await self._conn.execute(
            text(
                "SELECT version, origin, author, created_at, jsonb_array_length(document->'rules') AS rules "
                "FROM actions.rule_sets ORDER BY version DESC LIMIT :limit"
            ),
            {"limit": limit},
        )
        return [jsonable(r) for r in rows.mappings()]
