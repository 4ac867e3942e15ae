"""The identity adapter on the real PostgreSQL: the shared contract, and the audit log's append-only guard."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from shared.db import make_engine
from shared.identity.ports import AuditAction, AuditEntry, AuditQuery, IdentityStore, StoreUnavailable
from shared.identity.repository import PgIdentityStore
from tests.identity_contract import SCENARIOS

pytestmark = pytest.mark.integration


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[PgIdentityStore]:
    engine = make_engine(database_url)
    try:
        yield PgIdentityStore(engine=engine, timeout_s=5.0)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
async def test_contract(store: PgIdentityStore, scenario: Callable[[IdentityStore], Awaitable[None]]) -> None:
    await scenario(store)


async def test_audit_rows_cannot_be_changed_or_deleted_outside_the_purge(store: PgIdentityStore) -> None:
    entry = AuditEntry(
        at=datetime(2026, 1, 1, tzinfo=UTC),
        actor="person:u_1",
        action=AuditAction.GDPR_ERASE,
        service="console",
        source_ip="not an address",
    )
    audit_id = await store.append_audit(entry=entry)
    for statement in (
        "UPDATE identity.audit_log SET actor = 'someone else'",
        "DELETE FROM identity.audit_log",
        "TRUNCATE identity.audit_log",
    ):
        async with store.engine.connect() as conn:
            with pytest.raises(Exception, match="append-only"):
                await conn.execute(text(statement))
            await conn.rollback()
    (kept,) = await store.read_audit(query=AuditQuery())
    assert kept.audit_id == audit_id and kept.entry.actor == "person:u_1"
    assert kept.entry.source_ip is None  # only a parseable address is stored
    assert await store.purge_audit(older_than=datetime(2026, 1, 2, tzinfo=UTC)) == 1


async def test_errors_carry_no_statement_parameters(database_url: str) -> None:
    engine = make_engine(database_url.rsplit("/", 1)[0] + "/no_such_database_here")
    try:
        unreachable = PgIdentityStore(engine=engine, timeout_s=5.0)
        with pytest.raises(StoreUnavailable) as caught:
            await unreachable.user_by_email(email="secret.person@example.com")
        assert "secret.person" not in str(caught.value)
        assert caught.value.__cause__ is None and caught.value.__suppress_context__
    finally:
        await engine.dispose()
