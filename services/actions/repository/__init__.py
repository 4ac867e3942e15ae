"""PostgreSQL adapters of the actions ports (``services.actions.ports``), one module per store.

``pg_stores`` binds every store to one connection (one transaction); ``PgTransactions`` opens them for
the routes and the timer scheduler; ``consumer_handler`` gives the consumer loop, which owns the
transaction and its offsets, a handler over the stores.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.actions.ports import Stores
from services.actions.repository.alerts import PgAlerts
from services.actions.repository.customers import PgCustomers
from services.actions.repository.decisions import PgDecisions
from services.actions.repository.enrolments import PgEnrolments
from services.actions.repository.health import PgHealth
from services.actions.repository.ratings import PgRatings
from services.actions.repository.rule_sets import PgRuleSets
from services.actions.repository.surveys import PgSurveys, PgSurveySets
from services.actions.repository.timers import PgTimers
from shared.consumer import Handler, Received
from shared.envelope import OutgoingRecord


def pg_stores(conn: AsyncConnection) -> Stores:
    return Stores(
        ratings=PgRatings(conn),
        decisions=PgDecisions(conn),
        customers=PgCustomers(conn),
        enrolments=PgEnrolments(conn),
        alerts=PgAlerts(conn),
        timers=PgTimers(conn),
        rule_sets=PgRuleSets(conn),
        survey_sets=PgSurveySets(conn),
        surveys=PgSurveys(conn),
        health=PgHealth(conn),
    )


class PgTransactions:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[Stores]:
        async with self._engine.begin() as conn:
            yield pg_stores(conn)

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Stores]:
        async with self._engine.connect() as conn:
            yield pg_stores(conn)

    @asynccontextmanager
    async def read_only(self) -> AsyncIterator[Stores]:
        """A READ ONLY transaction, rolled back at the end: PostgreSQL refuses any write inside it. It is
        REPEATABLE READ, so its statements share one snapshot: an answer read in several statements (a
        health, its account, its owner) never mixes states before and after a batch committed between
        them (a read-only transaction at this level never fails to serialise)."""
        async with self._engine.connect() as conn:
            await conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
            try:
                yield pg_stores(conn)
            finally:
                await conn.rollback()


def consumer_handler(
    handle: Callable[[Stores, Sequence[Received]], Awaitable[list[OutgoingRecord]]],
) -> Handler:
    """The consumer loop hands each batch its transaction's connection; the use case wants stores."""

    async def on_batch(conn: AsyncConnection, batch: Sequence[Received]) -> list[OutgoingRecord]:
        return await handle(pg_stores(conn), batch)

    return on_batch
