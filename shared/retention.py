"""Retention (GDPR art. 5(1)(e)): each night, every service removes the comments and contact data it
holds beyond the configured ages (``CSAT_RETENTION_COMMENT_DAYS``, ``CSAT_RETENTION_CONTACT_DAYS``).

A service supplies a ``Purge``: SQL run in one transaction with the two cut-off times, returning rows
changed per table. Counts and scores are untouched. Running twice, or on two replicas at once, changes
nothing more: each statement only touches rows still holding what it removes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.settings import CommonSettings

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Cutoffs:
    """Older than ``comments``: comments and free text go; older than ``contacts``: contact data goes."""

    comments: datetime
    contacts: datetime

    @classmethod
    def at(cls, now: datetime, settings: CommonSettings) -> Cutoffs:
        return cls(
            comments=now - timedelta(days=settings.retention_comment_days),
            contacts=now - timedelta(days=settings.retention_contact_days),
        )


Purge = Callable[[AsyncConnection, Cutoffs], Awaitable[dict[str, int]]]


async def purge_once(engine: AsyncEngine, purge: Purge, cutoffs: Cutoffs, *, service: str) -> dict[str, int]:
    """One retention run, in one transaction."""
    async with engine.begin() as conn:
        removed = await purge(conn, cutoffs)
    log.info("retention_purged", service=service, rows=sum(removed.values()), **removed)
    return removed


def seconds_until(now: datetime, hour_utc: int) -> float:
    """Seconds from ``now`` (aware, any zone) to the next ``hour_utc``:00 UTC."""
    now = now.astimezone(UTC)
    target = now.replace(hour=hour_utc, minute=0, second=0, microsecond=0)
    if target <= now:
        target += timedelta(days=1)
    return (target - now).total_seconds()


class RetentionJob:
    """The nightly run inside a service's process (each replica runs it; runs are idempotent)."""

    def __init__(
        self,
        *,
        service: str,
        engine: AsyncEngine,
        purge: Purge,
        settings: CommonSettings,
        clock: Callable[[], datetime],
    ) -> None:
        self._service = service
        self._engine = engine
        self._purge = purge
        self._settings = settings
        self._clock = clock
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def run_now(self) -> dict[str, int]:
        return await purge_once(
            self._engine, self._purge, Cutoffs.at(self._clock(), self._settings), service=self._service
        )

    async def _loop(self) -> None:
        while not self._stop.is_set():
            wait = seconds_until(self._clock(), self._settings.retention_hour_utc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), wait)
            if self._stop.is_set():
                return
            try:
                await self.run_now()
            except Exception as exc:  # noqa: BLE001 - tomorrow's run tries again; the service goes on
                log.warning("retention_failed", service=self._service, error=type(exc).__name__)

    async def start(self) -> None:
        self._stop.clear()
        self._task = asyncio.create_task(self._loop(), name=f"{self._service}-retention")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, 10)
            self._task = None
