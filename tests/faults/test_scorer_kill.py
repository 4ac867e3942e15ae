"""Exactly-once under crashes: SIGKILL the scorer process at random points while ratings pour in.

The scorer runs as a real process (uvicorn, as in production) on the real broker and PostgreSQL.
A producer sends ratings with duplicates (client retries, producer resends) while the test kills
the scorer with SIGKILL several times at random moments and restarts it. At the end every counter
of every tier must equal a recomputation from the stored ratings, and the stored ratings must be
exactly the distinct ids sent.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from devstack.ports import free_port
from devstack.stack import Stack
from services.collector.domain import RatingIn, normalize
from services.collector.intake import to_record
from shared.envelope import OutgoingRecord
from shared.topics import Topics
from tests.infra import Infra, drop_database, new_database, new_topics
from tests.scorer_checks import counter_mismatches, fetch_value

pytestmark = pytest.mark.e2e

UNIQUE = 6000
DUPLICATES = 1500
KILLS = 4


@pytest.fixture
def scorer_stack(infra: Infra, tmp_path: Path) -> Iterator[tuple[Stack, str, Topics]]:
    name = new_database(infra)
    topics = new_topics(infra, partitions=3)
    stack = Stack(
        var_dir=tmp_path,
        kafka_bootstrap=infra.bootstrap,
        database_url=infra.db_url(name),
        topic_prefix=topics.prefix,
        ports={"scorer": free_port()},
        extra_env={
            "CSAT_KAFKA_SESSION_TIMEOUT_MS": "3000",
            "CSAT_KAFKA_HEARTBEAT_MS": "500",
            "CSAT_MAX_BATCH": "250",
            "CSAT_MAX_VALUES_PER_DIMENSION": "20",
            "CSAT_SCORE_EVENT_INTERVAL_S": "0.5",
            "CSAT_LOG_FORMAT": "json",
        },
    )
    try:
        yield stack, infra.db_url(name), topics
    finally:
        stack.stop()
        drop_database(infra, name)


def make_ratings(topic: str, rnd: random.Random) -> list[OutgoingRecord]:
    now = datetime.now(UTC)
    out = []
    for i in range(UNIQUE):
        body = {
            "rating_id": f"k-{i}",
            "metric": rnd.choice(["csat", "csat", "csat", "nps"]),
            "score": 0,
            "customer": {"id": f"cus-{rnd.randrange(500)}"},
            "segment": {
                "store": f"store-{rnd.randrange(30)}",
                "channel": rnd.choice(["chat", "web", "phone"]),
            },
            "occurred_at": (now - timedelta(seconds=rnd.randrange(3 * 86400))).isoformat(),
        }
        body["score"] = rnd.randint(1, 5) if body["metric"] == "csat" else rnd.randint(0, 10)
        if rnd.random() < 0.1:
            body["segment"] = {}
        out.append(to_record(normalize(RatingIn.model_validate(body), received_at=now), topic=topic))
    return out


async def feed(
    bootstrap: str,
    records: list[OutgoingRecord],
    rnd: random.Random,
    *,
    kills_done: asyncio.Event,
    holding: asyncio.Event,
) -> int:
    """Send every rating, plus resends of earlier ones, in bursts for about 20 s (load while it dies).

    The last burst waits for the last kill (``holding`` says it is waiting): under load the restarts
    can take longer than the feed, and a kill after everything was consumed tests nothing (one CI run
    under load killed at 7,500 of 7,500).
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
    await producer.start()
    sent = 0
    try:
        queue = list(records)
        resends = [rnd.choice(records) for _ in range(DUPLICATES)]
        for i, dup in enumerate(resends):
            queue.insert(rnd.randrange(UNIQUE // 10 + i, len(queue) + 1), dup)
        for start in range(0, len(queue), 150):
            if start + 150 >= len(queue):
                holding.set()
                await kills_done.wait()
            futures = [
                await producer.send(r.topic, r.value, key=r.key, headers=r.headers)
                for r in queue[start : start + 150]
            ]
            await asyncio.gather(*futures)
            sent += len(futures)
            await asyncio.sleep(0.4)
    finally:
        await producer.stop()
    return sent


async def consumed(database_url: str, topic: str) -> int:
    value = await fetch_value(
        database_url,
        "SELECT coalesce(sum(next_offset), 0) FROM ops.consumer_offsets WHERE consumer_group = 'csat-scorer' "
        "AND topic = $1",
        topic,
    )
    return int(str(value))


async def test_sigkill_at_random_points_leaves_every_counter_exact(
    scorer_stack: tuple[Stack, str, Topics],
) -> None:
    stack, database_url, topics = scorer_stack
    seed = int(os.environ.get("CSAT_KILL_SEED", str(random.randrange(1_000_000))))
    print(f"kill test seed {seed} (CSAT_KILL_SEED={seed} replays it)")
    rnd = random.Random(seed)
    records = make_ratings(topics.ratings, rnd)
    started = time.monotonic()
    stack.start_service("scorer")
    await asyncio.to_thread(stack.services["scorer"].wait_ready, 60)
    kills_done, holding = asyncio.Event(), asyncio.Event()
    feeder = asyncio.create_task(
        feed(stack.kafka_bootstrap or "", records, rnd, kills_done=kills_done, holding=holding)
    )
    kills: list[int] = []
    for _ in range(KILLS):
        # Kill while the scorer is busy: once it made progress since its restart, at a random moment
        # (or at once when it has caught up with everything but the held-back last burst).
        before = await consumed(database_url, topics.ratings)
        deadline = time.monotonic() + 60
        while await consumed(database_url, topics.ratings) == before and not holding.is_set():
            assert time.monotonic() < deadline, "the scorer made no progress after a restart"
            await asyncio.sleep(0.02)
        await asyncio.sleep(rnd.uniform(0.0, 0.4))
        kills.append(await consumed(database_url, topics.ratings))
        stack.services["scorer"].kill()
        stack.start_service("scorer")
        await asyncio.to_thread(stack.services["scorer"].wait_ready, 60)
    kills_done.set()
    sent = await feeder
    assert sent == UNIQUE + DUPLICATES

    async def progress() -> int:
        return await consumed(database_url, topics.ratings)

    deadline = time.monotonic() + 90
    while await progress() < sent:
        assert time.monotonic() < deadline, f"only {await progress()} of {sent} records consumed"
        await asyncio.sleep(0.25)
    print(f"killed after {kills} records; {sent} records in {time.monotonic() - started:.1f}s")
    # The kills landed while work was in flight, not before the first or after the last record.
    assert all(0 < k < sent for k in kills)
    stored = await fetch_value(database_url, "SELECT count(*) FROM scorer.ratings")
    assert stored == UNIQUE
    folded = await fetch_value(
        database_url, "SELECT count(*) FROM scorer.score_counts_day WHERE segment_key = 'store=other'"
    )
    assert int(str(folded)) > 0
    mismatches = await counter_mismatches(database_url, combinations=[["store", "channel"]])
    assert {table: rows[:5] for table, rows in mismatches.items() if rows} == {}
    global_total = await fetch_value(
        database_url, "SELECT sum(n) FROM scorer.score_counts WHERE segment_key = '*'"
    )
    assert int(str(global_total)) == UNIQUE
