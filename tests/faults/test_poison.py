"""1 % poison records on the ratings topic: every one lands in each consumer's dead-letter topic with its
reason, every valid rating is counted, and no partition stalls behind a bad record."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from shared import events as ev
from shared.envelope import decode, encode
from shared.events import DeadLetter
from shared.scales import Metric, Sentiment
from shared.topics import Topics
from tests.faults.harness import fault_stack, report

pytestmark = pytest.mark.timeout(300)

TOTAL = 3000
POISON_EVERY = 100  # 1 %


def _valid(i: int, run: str, topic: str) -> tuple[bytes | None, bytes, list[tuple[str, bytes]], str]:
    now = datetime.now(UTC)
    rating = ev.RatingSubmitted(
        rating_id=f"{run}-{i}",
        metric=Metric.CSAT,
        scale="1-5",
        score=4,
        normalized=0.75,
        sentiment=Sentiment.POSITIVE,
        positive=True,
        customer=ev.CustomerRef(id=f"cus-{run}-{i}"),
        segment={"store": f"store-{i % 5}"},
        occurred_at=now,
        received_at=now,
    )
    rec = encode(
        topic=topic,
        event_type=ev.RATING_SUBMITTED,
        source="/collector",
        event_id=rating.rating_id,
        data=rating,
        key=rating.customer.id,
    )
    return rec.key, rec.value, rec.headers, rating.rating_id


def _poison(kind: int, i: int, run: str, topic: str) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    """Six ways a record can be bad, from unreadable bytes to data the database refuses."""
    key = f"poison-{run}-{i}".encode()
    _key, value, headers, _rid = _valid(i, run, topic)
    if kind == 0:
        return key, b"\x00\xffnot json at all", headers
    if kind == 1:
        return key, value, [h for h in headers if h[0] != "ce_type"]
    if kind == 2:
        return key, value, [(k, b"com.example.unknown.v1" if k == "ce_type" else v) for k, v in headers]
    if kind == 3:
        data = json.loads(value)
        del data["score"]
        return key, json.dumps(data).encode(), headers
    if kind == 4:
        return key, b"[1, 2, 3]", headers
    # Decodes fine but the database refuses it (score beyond smallint): only the handler can tell.
    data = json.loads(value)
    data["score"] = 70000
    return key, json.dumps(data).encode(), headers


async def _dead_letters(bootstrap: str, topic: str, *, expected: int, timeout_s: float) -> list[DeadLetter]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"dlq-reader-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=10,
        session_timeout_ms=3000,
        heartbeat_interval_ms=500,
    )
    await consumer.start()
    out: list[DeadLetter] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                for r in records:
                    env = decode(headers=r.headers, key=r.key, value=r.value)
                    assert isinstance(env.data, DeadLetter)
                    assert dict(r.headers).get("ce_dlqreason"), "dead letter without a reason header"
                    out.append(env.data)
            if len(out) >= expected and not batch:
                break
    finally:
        await consumer.stop()
    return out


async def _stalled(url: str, bootstrap: str, topic: str, group: str) -> dict[int, tuple[int, int]]:
    """Partitions whose stored offset is behind the log end: {partition: (stored, end)}."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or set())]
        ends = await consumer.end_offsets(parts)
    finally:
        await consumer.stop()
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT partition, next_offset FROM ops.consumer_offsets "
            "WHERE consumer_group = $1 AND topic = $2",
            group,
            topic,
        )
    finally:
        await conn.close()
    stored = {r["partition"]: r["next_offset"] for r in rows}
    return {
        tp.partition: (stored.get(tp.partition, 0), e)
        for tp, e in ends.items()
        if stored.get(tp.partition, 0) < e
    }


async def test_one_percent_poison_goes_to_the_dead_letter_topics(fault_dir: Path) -> None:
    rng = random.Random(7)
    run = uuid.uuid4().hex[:6]
    async with fault_stack(fault_dir / "poison", services=("scorer", "actions")) as fs:
        topics = Topics()
        poison_at = set(rng.sample(range(TOTAL), TOTAL // POISON_EVERY))
        valid_ids: set[str] = set()
        producer = AIOKafkaProducer(bootstrap_servers=fs.bootstrap, acks="all")
        await producer.start()
        poison_pos: set[tuple[int, int]] = set()
        try:
            for i in range(TOTAL):
                if i in poison_at:
                    key, value, headers = _poison(len(poison_pos) % 6, i, run, topics.ratings)
                    md = await (await producer.send(topics.ratings, value, key=key, headers=headers))
                    poison_pos.add((md.partition, md.offset))
                else:
                    key, value, headers, rid = _valid(i, run, topics.ratings)
                    await producer.send(topics.ratings, value, key=key, headers=headers)
                    valid_ids.add(rid)
            await producer.flush()
        finally:
            await producer.stop()
        poison_partitions = {p for p, _o in poison_pos}
        results = {}
        for consumer, dlq, group in (
            ("scorer", topics.dlq_scorer, "csat-scorer"),
            ("actions", topics.dlq_actions, "csat-actions"),
        ):
            deadline = time.monotonic() + 120
            stalled = await _stalled(fs.database_url, fs.bootstrap, topics.ratings, group)
            while stalled and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                stalled = await _stalled(fs.database_url, fs.bootstrap, topics.ratings, group)
            letters = await _dead_letters(fs.bootstrap, dlq, expected=len(poison_pos), timeout_s=30)
            results[consumer] = (stalled, letters)
        conn = await asyncpg.connect(fs.database_url)
        try:
            counted = await conn.fetchval(
                "SELECT count(*) FROM scorer.ratings WHERE rating_id = ANY($1::text[])", list(valid_ids)
            )
            global_n = await conn.fetchval(
                "SELECT coalesce(sum(n), 0) FROM scorer.score_counts WHERE segment_key = '*'"
            )
            actions_n = await conn.fetchval(
                "SELECT count(*) FROM actions.ratings WHERE rating_id = ANY($1::text[])", list(valid_ids)
            )
        finally:
            await conn.close()
    for consumer, (stalled, letters) in results.items():
        positions = [(d.partition, d.offset) for d in letters]
        reasons: dict[str, int] = {}
        for d in letters:
            kind = d.reason.split(":")[0][:40]
            reasons[kind] = reasons.get(kind, 0) + 1
        report(
            f"poison 1 % ({consumer})",
            sent=TOTAL,
            poison=len(poison_pos),
            valid=len(valid_ids),
            counted=counted if consumer == "scorer" else actions_n,
            lost=len(valid_ids) - (counted if consumer == "scorer" else actions_n),
            duplicated=(global_n - counted) if consumer == "scorer" else 0,
            dead_lettered=len(set(positions)),
            dead_letter_duplicates=len(positions) - len(set(positions)),
            partitions_with_poison=len(poison_partitions),
            stalled_partitions=len(stalled),
            reasons=reasons,
        )
        assert not stalled, stalled
        assert set(positions) == poison_pos, (sorted(set(positions) ^ poison_pos))[:10]
        assert all(d.reason for d in letters)
    assert counted == len(valid_ids)
    assert actions_n == len(valid_ids)
    assert global_n == counted
