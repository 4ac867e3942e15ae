"""The console's hourly purge: sessions and links a day after they stopped working, and audit entries
past the audit retention (``CSAT_AUDIT_RETENTION_DAYS``), on the fakes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

from services.console.bootstrap import purge_expired
from shared.identity.ports import AuditAction, AuditEntry
from tests.fakes.console_store import MemoryConsoleStore
from tests.fakes.identity_store import MemoryIdentityStore

NOW = datetime(2026, 12, 5, 3, 0, tzinfo=UTC)


async def test_audit_entries_past_their_retention_go_and_younger_ones_stay() -> None:
    identity = MemoryIdentityStore()
    for days in (500, 401, 399, 1):
        await identity.append_audit(
            entry=AuditEntry(
                at=NOW - timedelta(days=days),
                actor="token:a",
                action=AuditAction.RULES_UPDATE,
                service="actions",
            )
        )
    deps = cast(
        Any, SimpleNamespace(clock=lambda: NOW, identity=identity, console=MemoryConsoleStore(identity))
    )

    removed = await purge_expired(deps, keep=timedelta(days=1), audit_keep=timedelta(days=400))

    assert removed == {"sessions": 0, "links": 0, "audit": 2}
    assert sorted((NOW - r.entry.at).days for r in identity.audit) == [1, 399]
    again = await purge_expired(deps, keep=timedelta(days=1), audit_keep=timedelta(days=400))
    assert again["audit"] == 0
