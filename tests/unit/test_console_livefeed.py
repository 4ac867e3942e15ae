"""The live feed on a fake consumer: score changes reach the hub, other records do not, and a reconnect
flags every open page once (changes during the outage were missed). The real broker: the browser test."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from services.console.live import LiveHub
from services.console.livefeed import Consumer, ScoreFeed, changed_segment
from shared import events as ev
from shared.envelope import OutgoingRecord, encode
from shared.scales import Metric


@dataclass
class Record:
    headers: list[tuple[str, bytes]]
    key: bytes | None
    value: bytes | None


def as_consumed(record: OutgoingRecord) -> Record:
    key = record.key.encode() if isinstance(record.key, str) else record.key
    return Record(headers=list(record.headers), key=key, value=record.value)


def score_changed(**segment: str) -> Record:
    data = ev.ScoreChanged(
        metric=Metric.CSAT,
        window="24h",
        segment="|".join(f"{k}={v}" for k, v in sorted(segment.items())) or "*",
        segment_attributes=segment,
        score=70.0,
        responses=1000,
        insufficient=False,
        computed_at=datetime(2026, 12, 1, tzinfo=UTC),
    )
    record = encode(
        topic="scores",
        event_type=ev.SCORE_CHANGED,
        source="/scorer",
        event_id="e1",
        data=data,
        key=data.segment,
    )
    return as_consumed(record)


@dataclass
class FakeConsumer:
    """Fails to start when told; otherwise hands out its batches, then sets ``done`` once empty."""

    batches: list[list[Any]]
    done: asyncio.Event
    fail: bool = False
    stopped: list[bool] = field(default_factory=list)

    async def start(self) -> None:
        if self.fail:
            raise ConnectionError("broker away")

    async def stop(self) -> None:
        self.stopped.append(True)

    async def getmany(self, *, timeout_ms: int) -> dict[Any, list[Any]]:
        if not self.batches:
            self.done.set()
            return {}
        return {"p0": self.batches.pop(0)}


def test_only_score_changes_are_read() -> None:
    assert changed_segment(score_changed(store="paris-1")) == {"store": "paris-1"}
    assert changed_segment(Record(headers=[], key=None, value=b"{}")) is None  # not a CloudEvent


async def test_changes_reach_the_hub_and_a_reconnect_refreshes_every_page() -> None:
    hub = LiveHub(max_streams=10, max_per_session=10)
    paris = hub.subscribe(filters={"store": "paris-1"}, owner=b"a")
    lyon = hub.subscribe(filters={"store": "lyon-2"}, owner=b"b")
    assert paris and lyon
    stop = asyncio.Event()
    consumers = [
        FakeConsumer([], stop, fail=True),  # the broker is away at first
        FakeConsumer([[score_changed(store="paris-1", channel="chat")]], stop),
    ]
    made: list[FakeConsumer] = []

    def make() -> Consumer:
        made.append(consumers.pop(0))
        return made[-1]

    await ScoreFeed(hub=hub, make=make, first_retry_s=0).run(stop)
    assert len(made) == 2 and all(c.stopped for c in made)  # the failed one was stopped too
    assert (hub.changes, paris.pending, lyon.pending) == (1, True, True)  # lyon-2: the reconnect's resync
    assert await lyon.wait(0) and not await lyon.wait(0)
