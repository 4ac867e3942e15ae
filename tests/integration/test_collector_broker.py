"""Collector against the real broker: acks=all publishing, and bounded 503s while the broker is away."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner

from devstack.broker import EmbeddedBroker
from devstack.ports import free_port
from services.collector.bootstrap import create_app
from services.collector.publisher import KafkaPublisher
from services.collector.settings import CollectorSettings
from shared.events import RatingSubmitted
from shared.kafka import TopicSpec, ensure_topics
from shared.topics import Topics
from tests.helpers import make_settings, read_events, read_topic, running
from tests.infra import Infra

pytestmark = pytest.mark.integration


def _settings(bootstrap: str, topics: Topics, database_url: str, **kw: Any) -> CollectorSettings:
    return make_settings(
        CollectorSettings,
        kafka_bootstrap=bootstrap,
        topic_prefix=topics.prefix,
        database_url=database_url,
        log_format="console",
        **kw,
    )


def _rating(i: int) -> dict[str, Any]:
    return {
        "rating_id": f"r-{i}",
        "metric": "csat",
        "scale": "1-5",
        "score": 1 + i % 5,
        "customer": {"id": f"cus-{i % 3}"},
        "segment": {"store": "s1"},
    }


async def test_accepted_ratings_are_on_the_topic_keyed_by_customer(
    infra: Infra, topics: Topics, database_url: str
) -> None:
    app = create_app(_settings(infra.bootstrap, topics, database_url))
    async with running(app) as client:
        single = await client.post("/v1/ratings", json=_rating(0))
        assert single.status_code == 202
        batch = await client.post("/v1/ratings/batch", json={"ratings": [_rating(i) for i in range(1, 6)]})
        assert batch.status_code == 202 and batch.json()["accepted"] == 5
        assert (await client.get("/readyz")).status_code == 200
    events = await read_events(infra.bootstrap, topics.ratings, count=6)
    assert sorted(e.id for e in events) == [f"r-{i}" for i in range(6)]
    for e in events:
        assert isinstance(e.data, RatingSubmitted)
        assert e.key == e.data.customer.id
        assert e.type == "com.csat.rating.submitted.v1"


async def test_a_batch_lands_in_the_partitions_the_producers_partitioner_chooses(
    infra: Infra, topics: Topics, database_url: str
) -> None:
    """The batch path hands records to aiokafka's accumulator itself (``_send_many``): each must land
    where ``producer.send`` would put it (per-customer order), every one acknowledged."""
    probe = KafkaPublisher(bootstrap=infra.bootstrap, idempotence=False, timeout_s=10)
    await probe.start()
    try:
        assert probe._lean, "aiokafka moved what _send_many uses: batches fell back to producer.send"
    finally:
        await probe.stop()
    app = create_app(_settings(infra.bootstrap, topics, database_url))
    ratings = [{**_rating(i), "customer": {"id": f"cus-{i}"}} for i in range(40)]
    async with running(app) as client:
        batch = await client.post("/v1/ratings/batch", json={"ratings": ratings})
        assert batch.status_code == 202 and batch.json()["accepted"] == 40
    raw = await read_topic(infra.bootstrap, topics.ratings, count=40)
    assert sorted(r.key for r in raw) == sorted(f"cus-{i}".encode() for i in range(40))
    partitions = [0, 1, 2]  # the test topics' (tests/infra.py new_topics)
    choose = DefaultPartitioner()
    assert all(r.partition == choose(r.key, partitions, partitions) for r in raw)
    assert len({r.partition for r in raw}) > 1  # a real spread, not everything on one partition


async def test_unreachable_broker_gives_503_without_hanging(topics: Topics, database_url: str) -> None:
    app = create_app(_settings(f"127.0.0.1:{free_port()}", topics, database_url, publish_timeout_s=2.0))
    async with running(app) as client:
        started = time.monotonic()
        r = await client.post("/v1/ratings", json=_rating(1))
        assert r.status_code == 503
        assert int(r.headers["retry-after"]) > 0
        assert time.monotonic() - started < 5
        assert (await client.get("/readyz")).status_code == 503


async def test_frozen_broker_gives_503_within_the_publish_timeout(
    tmp_path: Path, topics: Topics, database_url: str
) -> None:
    broker = EmbeddedBroker(port=free_port(), log_path=tmp_path / "broker.log")
    bootstrap = broker.start()
    try:
        await ensure_topics(bootstrap=bootstrap, specs=[TopicSpec(n, partitions=1) for n in topics.all()])
        app = create_app(
            _settings(bootstrap, topics, database_url, publish_timeout_s=1.5, kafka_request_timeout_s=1.0)
        )
        async with running(app) as client:
            assert (await client.post("/v1/ratings", json=_rating(1))).status_code == 202
            broker.pause()
            started = time.monotonic()
            r = await client.post("/v1/ratings", json=_rating(2))
            elapsed = time.monotonic() - started
            assert r.status_code == 503
            assert elapsed < 4, elapsed
            broker.resume()
            deadline = time.monotonic() + 30
            status = 0
            while time.monotonic() < deadline:
                status = (await client.post("/v1/ratings", json=_rating(3))).status_code
                if status == 202:
                    break
            assert status == 202
    finally:
        broker.stop()
