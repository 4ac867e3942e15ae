"""PostgreSQL stopped for 60 s while ratings stream in, then started again on the same data and port.

Promise under test: no offset is committed without its data (neither in ops.consumer_offsets nor in
the Kafka group offsets mirrored from it), ingestion keeps answering 202 (the collector needs only the
broker), and the consumers recover by themselves: every acknowledged rating is counted once and
alerted once.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.envelope import decode
from shared.events import RatingSubmitted
from shared.topics import Topics
from tests.faults.harness import Poster, fault_stack, report, wait_alerts, wait_counted

pytestmark = pytest.mark.timeout(600)

DOWN_S = float(os.environ.get("CSAT_FAULT_PG_DOWN_S", "60"))
GROUP = "csat-scorer"


async def kafka_committed(bootstrap: str, topic: str) -> dict[int, int]:
    """The scorer group's offsets as Kafka has them (OffsetFetch; this reader never joins the group)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=GROUP, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        out: dict[int, int] = {}
        for p in sorted(parts):
            committed = await consumer.committed(TopicPartition(topic, p))
            out[p] = committed if committed is not None else 0
        return out
    finally:
        await consumer.stop()


async def topic_contents(bootstrap: str, topic: str) -> dict[tuple[int, int], str]:
    """(partition, offset) -> rating_id for every record on the topic."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=10)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or set())]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        out: dict[tuple[int, int], str] = {}
        deadline = time.monotonic() + 60

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in parts])

        while await behind() and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for r in records:
                    env = decode(headers=r.headers, key=r.key, value=r.value)
                    assert isinstance(env.data, RatingSubmitted)
                    out[(r.partition, r.offset)] = env.data.rating_id
        return out
    finally:
        await consumer.stop()


async def db_offsets_and_ratings(url: str, topic: str) -> tuple[dict[int, int], set[str]]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT partition, next_offset FROM ops.consumer_offsets "
            "WHERE consumer_group = $1 AND topic = $2",
            GROUP,
            topic,
        )
        ids = {r["rating_id"] for r in await conn.fetch("SELECT rating_id FROM scorer.ratings")}
    finally:
        await conn.close()
    return {r["partition"]: r["next_offset"] for r in rows}, ids


async def test_postgres_stopped_for_60_seconds(fault_dir: Path) -> None:
    async with fault_stack(fault_dir / "pgdown") as fs:
        topic = Topics().ratings
        poster = Poster(fs.url["collector"], rate=20)
        poster.start()
        await asyncio.sleep(8)
        await asyncio.to_thread(fs.postgres.stop)
        stopped_at = time.monotonic()
        committed_at_stop = await kafka_committed(fs.bootstrap, topic)
        await asyncio.sleep(DOWN_S)
        committed_before_restart = await kafka_committed(fs.bootstrap, topic)
        alive_during = {n: s.proc is not None and s.proc.poll() is None for n, s in fs.stack.services.items()}
        await asyncio.to_thread(fs.postgres.start)
        restarted_at = time.monotonic()
        await asyncio.sleep(10)
        await poster.stop()
        acked = poster.acknowledged
        customers = poster.acknowledged_customers
        counts = await wait_counted(fs.database_url, acked, timeout_s=180)
        caught_up_s = time.monotonic() - restarted_at
        alerts = await wait_alerts(fs.database_url, customers, timeout_s=180)
        ready = {}
        for name, svc in fs.stack.services.items():
            await asyncio.to_thread(svc.wait_ready, 60)
            ready[name] = True
        stored_offsets, stored_ids = await db_offsets_and_ratings(fs.database_url, topic)
        committed_end = await kafka_committed(fs.bootstrap, topic)
        contents = await topic_contents(fs.bootstrap, topic)

    # Every record below a stored offset has its rating stored; Kafka's mirror is never ahead of the DB.
    without_data = [
        (p, o) for (p, o), rid in contents.items() if o < stored_offsets.get(p, 0) and rid not in stored_ids
    ]
    mirror_ahead = {p: o for p, o in committed_end.items() if o > stored_offsets.get(p, 0)}
    moved_while_down = {
        p: (committed_at_stop.get(p), o)
        for p, o in committed_before_restart.items()
        if o != committed_at_stop.get(p)
    }
    lost = len(acked) - counts["stored"]
    duplicated = counts["counted"] - counts["rows"]
    statuses: dict[str, int] = {}
    for p in poster.posts:
        statuses[str(p.status)] = statuses.get(str(p.status), 0) + 1
    report(
        f"postgres stopped {DOWN_S:.0f} s",
        sent=len(poster.posts),
        acknowledged=len(acked),
        counted=counts["stored"],
        lost=lost,
        duplicated=duplicated,
        statuses=statuses,
        services_alive_during_outage=all(alive_during.values()),
        kafka_offsets_moved_while_down=len(moved_while_down),
        offsets_without_data=len(without_data),
        kafka_mirror_ahead_of_db=len(mirror_ahead),
        caught_up_after_restart_s=round(caught_up_s, 1),
        outage_s=round(restarted_at - stopped_at, 1),
        alerts_sent=alerts["sent"],
        alerts_duplicated=alerts["duplicates"],
        all_ready_after=all(ready.values()),
    )
    assert all(alive_during.values()), alive_during
    assert not moved_while_down, moved_while_down
    assert not without_data, without_data[:10]
    assert not mirror_ahead, mirror_ahead
    assert len(acked) == len(poster.posts), statuses
    assert lost == 0
    assert duplicated == 0
    assert alerts["duplicates"] == 0
    assert alerts["sent"] == len(customers)
