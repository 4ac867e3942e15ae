"""The live feed: one consumer per console process reads ``csat.scores.changed.v1`` and tells the hub.

Why the topic and not polling the scorer: the scorer already decides when a score moved and publishes
it (at most once per ``CSAT_SCORE_EVENT_INTERVAL_S`` per segment and window); polling would cost a
query per open page every few seconds whatever happens, and a credential of the console's own that
sees every segment. Why no consumer group: every console process must see every change (its pages are
its own), so each reads every partition, from the end (only what happens while it runs matters), and
commits nothing; aiokafka without ``group_id`` assigns itself all partitions and follows new ones,
which is a group unique per process without a group left behind on the broker at each restart.

Reconnects: any broker error stops the consumer, waits (1 s doubling to 30 s) and starts a new one
at the end of the log; the hub then flags every open page once, since changes may have been missed.
Nothing of a record reaches the logs (segment values are the customers' business).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import Any, Protocol

import structlog
from aiokafka import AIOKafkaConsumer
from prometheus_client import Counter, Gauge

from services.console.live import LiveHub
from shared import events as ev
from shared.envelope import DecodeError, decode

log = structlog.get_logger(__name__)

LIVE_STREAMS = Gauge("csat_console_live_streams", "Open live page streams in this console process")
LIVE_CHANGES = Counter("csat_console_live_changes_total", "Score changes the live feed received")
LIVE_FEED_UP = Gauge("csat_console_live_feed_up", "1 while the live feed's consumer is connected")


class Consumer(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def getmany(self, *, timeout_ms: int) -> dict[Any, list[Any]]: ...


def kafka_consumer(*, bootstrap: str, topic: str) -> Consumer:
    """No group: this process reads every partition from the end, and commits nothing."""
    return AIOKafkaConsumer(  # type: ignore[no-any-return] # aiokafka is untyped; it has the three methods
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        client_id=f"csat-console-live-{socket.gethostname()}",
        enable_auto_commit=False,
        auto_offset_reset="latest",
        fetch_max_wait_ms=50,
        request_timeout_ms=15_000,
    )


def changed_segment(record: Any) -> dict[str, str] | None:
    """The attributes of a score-changed record; None for other events or what cannot be read."""
    try:
        envelope = decode(headers=record.headers, key=record.key, value=record.value)
    except DecodeError:
        return None
    data = envelope.data
    if not isinstance(data, ev.ScoreChanged):
        return None
    return dict(data.segment_attributes)


class ScoreFeed:
    """Runs until ``stop``: consume, tell the hub, reconnect with a growing pause on any failure."""

    def __init__(
        self,
        *,
        hub: LiveHub,
        make: Callable[[], Consumer],
        first_retry_s: float = 1.0,
        max_retry_s: float = 30.0,
        stop_timeout_s: float = 5.0,
    ) -> None:
        self.hub = hub
        self.make = make
        self.first_retry_s = first_retry_s
        self.max_retry_s = max_retry_s
        self.stop_timeout_s = stop_timeout_s
        self.connected = False

    async def run(self, stop: asyncio.Event) -> None:
        pause = self.first_retry_s
        failed_before = False
        while not stop.is_set():
            consumer = self.make()
            try:
                await asyncio.wait_for(consumer.start(), self.max_retry_s)
                self._up(True)
                if failed_before:
                    self.hub.resync()  # changes during the outage were missed: every page refreshes
                    log.info("live_feed_reconnected")
                pause = self.first_retry_s
                await self._consume(consumer, stop)
            except Exception as exc:  # noqa: BLE001 - any failure of the broker or the client: reconnect
                log.warning("live_feed_unavailable", error=type(exc).__name__, retry_s=pause)
                failed_before = True
            finally:
                self._up(False)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(consumer.stop(), self.stop_timeout_s)
            if not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause)
                pause = min(pause * 2, self.max_retry_s)

    async def _consume(self, consumer: Consumer, stop: asyncio.Event) -> None:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    attributes = changed_segment(record)
                    if attributes is not None:
                        LIVE_CHANGES.inc()
                        self.hub.publish(attributes)
            LIVE_STREAMS.set(self.hub.streams)

    def _up(self, up: bool) -> None:
        self.connected = up
        LIVE_FEED_UP.set(1 if up else 0)
