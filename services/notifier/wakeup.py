"""Wake the dispatcher as soon as the intake commits new deliveries (PostgreSQL LISTEN/NOTIFY).

The intake's INSERT calls ``pg_notify`` (``ports.WAKE_CHANNEL``); PostgreSQL delivers it only if
and when that transaction commits, to every replica listening on the database. Polling every
``DISPATCH_INTERVAL_S`` stays as the fallback (retries and quiet hours come due with time, and
notifications are lost while the listening connection is down).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import asyncpg
import structlog

from services.notifier.ports import WAKE_CHANNEL

log = structlog.get_logger(__name__)


def plain_url(url: str) -> str:
    """asyncpg takes ``postgresql://``; settings may name a SQLAlchemy driver (``postgresql+asyncpg://``)."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+', 1)[0]}{sep}{rest}" if sep else url


class WakeListener:
    """Holds one LISTEN connection (reconnecting with backoff) and calls ``wake`` on each notification."""

    def __init__(self, *, database_url: str, wake: Callable[[], None], channel: str = WAKE_CHANNEL) -> None:
        self._url = plain_url(database_url)
        self._wake = wake
        self._channel = channel
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.listening = False

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="notifier-wake-listener")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 5)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()

    def _notified(self, *_args: object) -> None:
        self._wake()

    async def _run(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            conn: asyncpg.Connection | None = None
            lost = asyncio.Event()
            try:
                conn = await asyncpg.connect(
                    self._url, timeout=10, server_settings={"application_name": "csat-notifier-listen"}
                )
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(self._channel, self._notified)
                self.listening = True
                backoff = 0.5
                self._wake()  # anything committed while we were not listening
                log.info("wake_listener_started", channel=self._channel)
                while not self._stopping.is_set() and not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), 5)
                    if not self._stopping.is_set() and not lost.is_set():
                        # A dead peer is not always reported: a cheap query proves the socket is alive.
                        await asyncio.wait_for(conn.execute("SELECT 1"), 5)
            except Exception as exc:  # noqa: BLE001 - the dispatcher keeps polling while we reconnect
                log.warning("wake_listener_lost", error=type(exc).__name__)
            finally:
                self.listening = False
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 5)
            if not self._stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff)
                backoff = min(backoff * 2, 10)
