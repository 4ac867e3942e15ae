"""Collector on the real broker and PostgreSQL: idempotency under concurrency, keys, limits, links, SMS."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
from prometheus_client import REGISTRY

from devstack.broker import EmbeddedBroker
from devstack.ports import free_port
from services.collector.bootstrap import create_app
from services.collector.settings import CollectorSettings
from services.collector.sms import compute_signature
from shared.events import RatingSubmitted
from shared.identity.apitokens import hash_secret
from shared.kafka import TopicSpec, ensure_topics
from shared.topics import Topics
from tests.helpers import make_settings, read_events, read_to_end, running
from tests.infra import Infra

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": "Bearer dev-admin-key"}
TWILIO = "integration-twilio-token"


def settings(bootstrap: str, topics: Topics, database_url: str, **kw: Any) -> CollectorSettings:
    return make_settings(
        CollectorSettings,
        kafka_bootstrap=bootstrap,
        topic_prefix=topics.prefix,
        database_url=database_url,
        twilio_auth_token=TWILIO,
        public_url="https://collect.example.com",
        **kw,
    )


def rating(i: int = 0, **kw: Any) -> dict[str, Any]:
    return {"metric": "csat", "scale": "1-5", "score": 1 + i % 5, "customer": {"id": f"cus-{i}"}, **kw}


async def ids_on_topic(infra: Infra, topic: str) -> list[str]:
    """Every event id on the topic, duplicates included: the collector answers only once the broker
    acknowledged, so once the answers are in, so are the records."""
    records = await read_to_end(infra.bootstrap, topic)
    return sorted(dict(r.headers)["ce_id"].decode() for r in records)


async def test_concurrent_retries_publish_once_and_all_get_the_first_answer(
    infra: Infra, topics: Topics, database_url: str
) -> None:
    app = create_app(settings(infra.bootstrap, topics, database_url))
    async with running(app) as client:
        body = rating(1, rating_id="dup-1")
        answers = await asyncio.gather(*(client.post("/v1/ratings", json=body) for _ in range(20)))
        assert {r.status_code for r in answers} == {202}
        assert {r.json()["rating_id"] for r in answers} == {"dup-1"}
        assert sum(1 for r in answers if r.headers.get("idempotent-replayed") == "true") == 19

        changed = await client.post("/v1/ratings", json={**body, "score": 5})
        assert changed.status_code == 409 and changed.json()["field"] == "rating_id"

        # two overlapping batches racing, one with header-derived ids
        batch = [rating(i, rating_id=f"b-{i}") for i in range(50)]
        b1, b2 = await asyncio.gather(
            client.post("/v1/ratings/batch", json={"ratings": batch}),
            client.post("/v1/ratings/batch", json={"ratings": [*batch[25:], rating(99, rating_id="b-99")]}),
        )
        assert b1.json()["accepted"] == 50 and b2.json()["accepted"] == 26
        derived = await client.post(
            "/v1/ratings/batch",
            json={"ratings": [rating(1), rating(2)]},
            headers={"Idempotency-Key": "imp-7"},
        )
        assert [r["rating_id"] for r in derived.json()["results"]] == ["imp-7-0", "imp-7-1"]
    ids = await ids_on_topic(infra, topics.ratings)
    assert ids == sorted(["dup-1", *(f"b-{i}" for i in range(50)), "b-99", "imp-7-0", "imp-7-1"])
    conn = await asyncpg.connect(database_url)
    try:
        states = await conn.fetch("SELECT state, count(*) AS n FROM collector.idempotency GROUP BY state")
    finally:
        await conn.close()
    assert {r["state"]: r["n"] for r in states} == {"accepted": 54}


async def test_a_key_retried_after_a_broker_outage_is_published_once(
    tmp_path: Path, topics: Topics, database_url: str
) -> None:
    broker = EmbeddedBroker(port=free_port(), log_path=tmp_path / "broker.log")
    bootstrap = broker.start()
    try:
        await ensure_topics(bootstrap=bootstrap, specs=[TopicSpec(n, partitions=1) for n in topics.all()])
        cfg = settings(bootstrap, topics, database_url, publish_timeout_s=1.5, kafka_request_timeout_s=1.0)
        async with running(create_app(cfg)) as client:
            broker.pause()
            started = time.monotonic()
            down = await client.post("/v1/ratings", json=rating(1), headers={"Idempotency-Key": "out-1"})
            assert down.status_code == 503 and int(down.headers["retry-after"]) > 0
            assert down.json()["type"].endswith("broker-unavailable")
            assert time.monotonic() - started < 4
            broker.resume()
            deadline = time.monotonic() + 30
            answer = down
            while answer.status_code != 202 and time.monotonic() < deadline:
                answer = await client.post(
                    "/v1/ratings", json=rating(1), headers={"Idempotency-Key": "out-1"}
                )
            assert answer.status_code == 202 and answer.json()["rating_id"] == "out-1"
            replay = await client.post("/v1/ratings", json=rating(1), headers={"Idempotency-Key": "out-1"})
            assert replay.headers["idempotent-replayed"] == "true"
            metrics = (await client.get("/metrics")).text
            assert re.search(r'csat_collector_broker_errors_total\{kind="(timeout|error)"\} [1-9]', metrics)
            assert 'csat_ratings_rejected_total{reason="broker_unavailable",source="dev"}' in metrics
        events = await read_events(bootstrap, topics.ratings, count=1)
        later = await read_to_end(bootstrap, topics.ratings)
        # an ambiguous timeout may have delivered the first attempt too; consumers dedupe on the id
        assert {e.id for e in events} == {"out-1"} and {dict(r.headers)["ce_id"] for r in later} == {b"out-1"}
    finally:
        broker.stop()


async def test_keys_are_stored_hashed_and_rotation_and_revocation_apply(
    infra: Infra, topics: Topics, database_url: str
) -> None:
    cfg = settings(infra.bootstrap, topics, database_url, require_api_key=True, key_cache_s=0)
    async with running(create_app(cfg)) as client:
        created = await client.post(
            "/v1/sources",
            json={"source_id": "shop", "name": "Shop", "allowed_origins": ["https://shop.example.com"]},
            headers=ADMIN,
        )
        assert created.status_code == 201
        key = created.json()["key"]["key"]
        assert (await client.post("/v1/ratings", json=rating(1))).status_code == 401
        ok = await client.post("/v1/ratings", json=rating(1, rating_id="k-1"), headers={"X-API-Key": key})
        assert ok.status_code == 202
        assert (await client.get("/v1/sources", headers={"X-API-Key": key})).status_code == 403

        rotated = await client.post("/v1/sources/shop/keys", json={"expire_others_in_s": 0}, headers=ADMIN)
        new_key = rotated.json()["key"]
        assert (
            await client.post("/v1/ratings", json=rating(2), headers={"X-API-Key": key})
        ).status_code == 401
        bearer = {"Authorization": f"Bearer {new_key}", "Origin": "https://shop.example.com"}
        posted = await client.post("/v1/ratings", json=rating(3, rating_id="k-3"), headers=bearer)
        assert posted.status_code == 202
        assert posted.headers["access-control-allow-origin"] == "https://shop.example.com"
        pre = await client.options(
            "/v1/ratings",
            headers={"Origin": "https://shop.example.com", "Access-Control-Request-Method": "POST"},
        )
        assert pre.status_code == 204
        evil = await client.options(
            "/v1/ratings", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
        )
        assert evil.status_code == 403 and "access-control-allow-origin" not in evil.headers

        await client.delete(f"/v1/sources/shop/keys/{rotated.json()['key_id']}", headers=ADMIN)
        assert (
            await client.post("/v1/ratings", json=rating(4), headers={"X-API-Key": new_key})
        ).status_code == 401
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT row_to_json(k)::text AS j, key_hash FROM collector.api_keys k")
    finally:
        await conn.close()
    assert {bytes(r["key_hash"]) for r in rows} == {hash_secret(key), hash_secret(new_key)}
    for row in rows:
        for secret in (key, new_key, key.split("_", 2)[2], new_key.split("_", 2)[2]):
            assert secret not in row["j"]
    events = await read_events(infra.bootstrap, topics.ratings, count=2)
    assert {(e.id, e.data.source) for e in events if isinstance(e.data, RatingSubmitted)} == {
        ("k-1", "shop"),
        ("k-3", "shop"),
    }


async def test_rate_limits_answer_429_and_record_nothing(
    infra: Infra, topics: Topics, database_url: str
) -> None:
    cfg = settings(infra.bootstrap, topics, database_url, rate_ip_per_s=1, rate_ip_burst=3)
    async with running(create_app(cfg)) as client:
        codes = [
            (await client.post("/v1/ratings", json=rating(i, rating_id=f"rl-{i}"))).status_code
            for i in range(5)
        ]
        assert codes == [202, 202, 202, 429, 429]
        limited = await client.post("/v1/ratings", json=rating(9))
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert limited.headers["content-type"].startswith("application/problem+json")
    ids = await ids_on_topic(infra, topics.ratings)
    assert ids == ["rl-0", "rl-1", "rl-2"]


async def test_email_link_tampering_is_refused_and_the_genuine_link_records_once(
    infra: Infra, topics: Topics, database_url: str
) -> None:
    # No re-click window: a second, different answer is refused at once (re-clicks: test_collector_channels).
    cfg = settings(infra.bootstrap, topics, database_url, reclick_window_s=0)
    async with running(create_app(cfg)) as client:
        minted = await client.post(
            "/v1/email-links",
            json={
                "survey_id": "o-1",
                "customer": {"id": "cus-9"},
                "metric": "nps",
                "segment": {"store": "p1"},
            },
            headers=ADMIN,
        )
        url = urlsplit(minted.json()["links"][9]["url"])
        token = url.path.rsplit("/", 1)[-1]
        assert (await client.get(f"{url.path}?{url.query}")).status_code == 200
        body, _, sig = token.rpartition(".")
        for bad in (f"{body}.{sig[::-1]}", f"{body[:-3]}abc.{sig}", token[:40]):
            refused = await client.post(f"/v1/email/{bad}", data={"score": "9"})
            assert refused.status_code == 403
        done = await client.post(url.path, data={"score": "9", "comment": "great"})
        assert done.status_code == 200
        assert (await client.post(url.path, data={"score": "9", "comment": "great"})).status_code == 200
        assert (await client.post(url.path, data={"score": "2"})).status_code == 409
    events = await read_events(infra.bootstrap, topics.ratings, count=1)
    later = await read_to_end(infra.bootstrap, topics.ratings)
    assert len(later) == 1
    e = events[0].data
    assert isinstance(e, RatingSubmitted)
    assert (e.rating_id, e.metric.value, e.score, e.nps_class, e.source) == (
        minted.json()["rating_id"],
        "nps",
        9,
        "promoter",
        "email",
    )


async def test_sms_reply_is_matched_to_the_open_survey(
    infra: Infra, topics: Topics, database_url: str
) -> None:
    async with running(create_app(settings(infra.bootstrap, topics, database_url))) as client:
        for customer in ("cus-old", "cus-new"):
            r = await client.post(
                "/v1/sms-surveys",
                json={
                    "phone": "+33612345678",
                    "customer": {"id": customer, "locale": "fr"},
                    "survey_id": "v-1",
                },
                headers=ADMIN,
            )
            assert r.status_code == 201
        params = {"MessageSid": "SM1", "From": "+33612345678", "To": "+33700000000", "Body": "2 trop lent"}
        signature = compute_signature(
            TWILIO, "https://collect.example.com/v1/sms/twilio", list(params.items())
        )
        answer = await client.post("/v1/sms/twilio", data=params, headers={"X-Twilio-Signature": signature})
        assert answer.status_code == 200 and "Merci" in answer.text
        forged = await client.post(
            "/v1/sms/twilio", data={**params, "Body": "5"}, headers={"X-Twilio-Signature": signature}
        )
        assert forged.status_code == 403
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch(
                "SELECT customer_id, answered_at FROM collector.sms_surveys ORDER BY created_at"
            )
        finally:
            await conn.close()
        assert [(r["customer_id"], r["answered_at"] is not None) for r in rows] == [
            ("cus-old", False),
            ("cus-new", True),
        ]
    (event,) = await read_events(infra.bootstrap, topics.ratings, count=1)
    assert isinstance(event.data, RatingSubmitted)
    assert (event.data.customer.id, event.data.score, event.data.comment) == ("cus-new", 2, "trop lent")


async def test_database_away_accepts_keyed_ratings_unchecked_by_default(infra: Infra, topics: Topics) -> None:
    dead_db = f"postgresql://postgres@127.0.0.1:{free_port()}/none"
    before = REGISTRY.get_sample_value("csat_collector_idempotency_unchecked_total") or 0.0
    async with running(create_app(settings(infra.bootstrap, topics, dead_db, db_timeout_s=1.0))) as client:
        first = await client.post("/v1/ratings", json=rating(1, rating_id="x-1"))
        again = await client.post("/v1/ratings", json=rating(1, rating_id="x-1"))
        assert (first.status_code, again.status_code) == (202, 202)
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["status"] == "degraded"
        assert ready.json()["checks"]["database"].startswith("failed")
        after = REGISTRY.get_sample_value("csat_collector_idempotency_unchecked_total")
        assert after == before + 2
    # Both attempts reached the topic with the same id: the consumers' dedupe on rating_id counts it once.
    events = await read_events(infra.bootstrap, topics.ratings, count=2)
    assert [e.id for e in events] == ["x-1", "x-1"]


async def test_database_away_is_503_for_keyed_ratings_when_configured(infra: Infra, topics: Topics) -> None:
    dead_db = f"postgresql://postgres@127.0.0.1:{free_port()}/none"
    cfg = settings(infra.bootstrap, topics, dead_db, db_timeout_s=1.0, idempotency_when_db_down="refuse")
    async with running(create_app(cfg)) as client:
        r = await client.post("/v1/ratings", json=rating(1, rating_id="x-1"))
        assert r.status_code == 503 and r.json()["type"].endswith("database-unavailable")
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["database"].startswith("failed")
