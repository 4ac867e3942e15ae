"""GDPR erasure on every service: a consumer of ``csat.customers.erased.v1`` that scrubs one service's
tables in the transaction that stores its offsets, and records the status under the erasure id.

Each service supplies a ``Scrubber``: SQL that removes or pseudonymises what that service holds about
one customer (email, phone, comments, free text) and cancels what is pending for them, returning rows
changed per table. The loop (``shared.consumer``) commits the scrub, the ``ops.erasures`` status row and
the next offsets together: a crash before the commit replays the event, a crash after leaves all three.
A replayed or repeated erasure is a no-op: the status row exists, and the data is already gone.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any, Protocol

import structlog
from fastapi import APIRouter, Path
from fastapi.params import Depends
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared import events as ev
from shared.consumer import Received
from shared.envelope import OutgoingRecord
from shared.runtime import ConsumerRuntime
from shared.security.text import SafeLine
from shared.settings import CommonSettings

log = structlog.get_logger(__name__)

#: Removes or pseudonymises one customer's data in the service's own tables; rows changed per table.
Scrubber = Callable[[AsyncConnection, ev.CustomerErased], Awaitable[dict[str, int]]]

_DONE = text("SELECT 1 FROM ops.erasures WHERE erasure_id = :e AND service = :s")
_RECORD = text(
    "INSERT INTO ops.erasures (erasure_id, service, pseudonym, requested_at, removed) "
    "VALUES (:e, :s, :p, :r, CAST(:removed AS jsonb)) ON CONFLICT (erasure_id, service) DO NOTHING"
)


def erasure_handler(
    service: str, scrub: Scrubber
) -> Callable[[AsyncConnection, Sequence[Received]], Awaitable[list[OutgoingRecord]]]:
    """The consumer handler: each erasure once per service (other event types on the topic are ignored)."""

    async def handle(conn: AsyncConnection, batch: Sequence[Received]) -> list[OutgoingRecord]:
        for rec in batch:
            if rec.envelope.type != ev.CUSTOMER_ERASED:
                continue
            try:
                erased = ev.CustomerErased.model_validate(rec.envelope.data)
            except ValidationError:
                log.warning("erasure_invalid", service=service, offset=rec.offset, partition=rec.partition)
                continue
            done = await conn.execute(_DONE, {"e": erased.erasure_id, "s": service})
            if done.first() is not None:
                continue
            removed = await scrub(conn, erased)
            await conn.execute(
                _RECORD,
                {
                    "e": erased.erasure_id,
                    "s": service,
                    "p": erased.pseudonym,
                    "r": erased.requested_at,
                    "removed": json.dumps(removed, sort_keys=True),
                },
            )
            # The erasure id only: never the customer id (logs are not erased).
            log.info(
                "customer_erased", service=service, erasure_id=erased.erasure_id, rows=sum(removed.values())
            )
        return []

    return handle


def erasure_runtime(
    *,
    service: str,
    settings: CommonSettings,
    group: str,
    topic: str,
    dlq_topic: str,
    scrub: Scrubber,
    engine: AsyncEngine | None = None,
) -> ConsumerRuntime:
    """A small consumer (its own group, e.g. ``csat-scorer-erasure``) beside the service's main one."""
    return ConsumerRuntime(
        name=f"{service}-erasure",
        settings=settings,
        topics=[topic],
        group=group,
        dlq_topic=dlq_topic,
        handler=erasure_handler(service, scrub),
        max_batch=100,
        engine=engine,
        # Erasures are rare and need not land within milliseconds: an idle 10 ms fetch loop cost a
        # collector 3 % of a core (tens of microseconds per rating at bench rates).
        fetch_max_wait_ms=500,
    )


# ---- export (GDPR art. 15/20) ---------------------------------------------------------------------------
#: Reads everything one service holds about one customer, as JSON-ready rows per table.
ExportReader = Callable[[AsyncConnection, str], Awaitable[dict[str, Any]]]


class CustomerExport(Protocol):
    async def export_customer(self, customer_id: str) -> dict[str, Any]: ...


class SqlExport:
    """Runs a service's ``ExportReader`` in one read-only snapshot (every table as of one moment)."""

    def __init__(self, engine: AsyncEngine, read: ExportReader) -> None:
        self._engine = engine
        self._read = read

    async def export_customer(self, customer_id: str) -> dict[str, Any]:
        async with self._engine.connect() as conn:
            await conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
            return await self._read(conn, customer_id)


def export_router(export: CustomerExport, guard: Depends) -> APIRouter:
    """``GET /v1/gdpr/customers/{customer_id}/export``: what this service holds (the console joins them)."""
    r = APIRouter(tags=["gdpr"], dependencies=[guard])

    @r.get(
        "/v1/gdpr/customers/{customer_id}/export",
        summary="Everything this service holds about a customer (GDPR art. 15/20)",
    )
    async def export_customer(customer_id: Annotated[SafeLine, Path(min_length=1, max_length=200)]) -> Any:
        return await export.export_customer(customer_id)

    return r
