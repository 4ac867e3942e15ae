"""Scorer on the real broker and PostgreSQL: counted once, exact worked examples, dead letters, restart."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from services.collector.domain import RatingIn, normalize
from services.collector.intake import to_record
from services.scorer.bootstrap import create_app
from services.scorer.repository import tables, writes
from services.scorer.settings import ScorerSettings
from shared.db import make_engine
from shared.envelope import DecodeError, OutgoingRecord, decode
from shared.events import DeadLetter, RatingSubmitted
from shared.topics import Topics
from tests.credentials import ADMIN
from tests.helpers import make_settings, produce, produce_raw, read_topic, running, wait_for
from tests.infra import Infra

pytestmark = pytest.mark.integration


def settings(infra: Infra, database_url: str, topics: Topics) -> ScorerSettings:
    return make_settings(
        ScorerSettings,
        kafka_bootstrap=infra.bootstrap,
        database_url=database_url,
        topic_prefix=topics.prefix,
        log_format="console",
    )


def event(
    rid: str,
    score: int,
    *,
    topic: str,
    store: str = "s1",
    channel: str = "chat",
    metric: str = "csat",
    scale: str = "1-5",
) -> OutgoingRecord:
    body = {
        "rating_id": rid,
        "metric": metric,
        "scale": scale,
        "score": score,
        "customer": {"id": f"cus-{rid}"},
        "segment": {"store": store, "channel": channel},
    }
    return to_record(normalize(RatingIn.model_validate(body), received_at=datetime.now(UTC)), topic=topic)


def worked_example(topic: str, prefix: str = "w") -> list[OutgoingRecord]:
    """300 very satisfied + 400 satisfied + 100 neutral + 200 dissatisfied."""
    scores = [5] * 300 + [4] * 400 + [3] * 100 + [2] * 200
    return [event(f"{prefix}-{i}", s, topic=topic, store=f"store-{i % 2}") for i, s in enumerate(scores)]


async def count_ratings(url: str) -> int:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(text("SELECT count(*) FROM scorer.ratings"))).scalar_one())
    finally:
        await engine.dispose()


async def test_worked_example_counted_once_with_duplicates_and_poison(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    records = worked_example(topics.ratings)
    # Producer retries and client resubmissions: the same rating ids again.
    duplicates = records[:150]
    await produce(infra.bootstrap, records[:500])
    await produce_raw(infra.bootstrap, topics.ratings, [(b"k", b"garbage", [("ce_type", b"nope")])])
    await produce(infra.bootstrap, records[500:] + duplicates)
    app = create_app(settings(infra, database_url, topics))
    async with running(app, headers=ADMIN) as client:

        async def csat() -> Any:
            return (await client.get("/v1/scores", params={"metric": "csat", "window": "30d"})).json()

        body = await wait_for(csat, until=lambda b: b["responses"] == 1000, timeout_s=60)
        assert body["score"] == 70.0
        assert body["positive"] == 700
        assert body["band"] == "good"
        assert body["insufficient"] is False
        assert body["ci_low"] < 70.0 < body["ci_high"]
        per_store = (
            await client.get("/v1/scores", params={"window": "24h", "segment": "store:store-0"})
        ).json()
        assert per_store["responses"] == 500
        breakdown = (await client.get("/v1/scores/breakdown", params={"by": "store", "window": "7d"})).json()
        assert sorted(s["value"] for s in breakdown["segments"]) == ["store-0", "store-1"]
        combo = (await client.get("/v1/scores", params={"segment": ["store:store-1", "channel:chat"]})).json()
        assert combo["responses"] == 500
        assert (await client.get("/readyz")).status_code == 200
    assert await count_ratings(database_url) == 1000
    dead = await read_topic(infra.bootstrap, topics.dlq_scorer, count=1)
    assert len(dead) == 1
    assert dict(dead[0].headers)["ce_dlqreason"] == b"invalid_cloudevent"


async def test_restart_resumes_from_stored_offsets_without_double_counting(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    first = [event(f"a-{i}", 5, topic=topics.ratings) for i in range(200)]
    second = [event(f"b-{i}", 1, topic=topics.ratings) for i in range(100)]
    await produce(infra.bootstrap, first)
    async with running(create_app(settings(infra, database_url, topics)), headers=ADMIN) as client:
        await wait_for(lambda: count_ratings(database_url), until=lambda n: n == 200, timeout_s=60)
    await produce(infra.bootstrap, second + first[:50])
    async with running(create_app(settings(infra, database_url, topics)), headers=ADMIN) as client:

        async def nps_free() -> Any:
            return (await client.get("/v1/scores", params={"window": "1h"})).json()

        body = await wait_for(nps_free, until=lambda b: b["responses"] == 300, timeout_s=60)
        assert body["positive"] == 200
    engine = make_engine(database_url)
    async with engine.connect() as conn:
        total = (
            await conn.execute(text("SELECT sum(n) FROM scorer.score_counts WHERE segment_key = '*'"))
        ).scalar_one()
        offsets = (
            await conn.execute(
                text("SELECT sum(next_offset) FROM ops.consumer_offsets WHERE consumer_group = :g"),
                {"g": settings(infra, database_url, topics).consumer_group},
            )
        ).scalar_one()
    await engine.dispose()
    assert total == 300
    assert offsets == 350  # every record consumed once, duplicates included


async def test_nps_and_ces(infra: Infra, database_url: str, topics: Topics) -> None:
    nps = [
        event(f"n-{i}", s, topic=topics.ratings, metric="nps", scale="0-10")
        for i, s in enumerate([10] * 5 + [8] * 3 + [2] * 2)
    ]
    ces = [
        event(f"c-{i}", s, topic=topics.ratings, metric="ces", scale="1-7")
        for i, s in enumerate([7, 6, 2, 4])
    ]
    await produce(infra.bootstrap, nps + ces)
    async with running(create_app(settings(infra, database_url, topics)), headers=ADMIN) as client:

        async def get(metric: str) -> Any:
            return (await client.get("/v1/scores", params={"metric": metric, "window": "1h"})).json()

        n = await wait_for(lambda: get("nps"), until=lambda b: b["responses"] == 10, timeout_s=60)
        assert n["score"] == 30.0 and n["promoters"] == 5 and n["detractors"] == 2
        c = await wait_for(lambda: get("ces"), until=lambda b: b["responses"] == 4, timeout_s=30)
        assert c["score"] == 4.75 and c["positive_pct"] == 50.0
        bad = await client.get("/v1/scores", params={"window": "forever"})
        assert bad.status_code == 422 and bad.json()["field"] == "window"


async def test_records_the_lean_decoder_leaves_are_counted_or_dead_lettered_as_before(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    """Lax values go through pydantic (counted with its values), poison gets the full path's reason."""
    good = [event(f"g-{i}", 5, topic=topics.ratings) for i in range(20)]
    template = json.loads(good[0].value)

    def variant(rid: str, **changes: Any) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
        payload = {**template, "rating_id": rid, **changes}
        headers = [(k, rid.encode() if k in ("ce_id", "ce_subject") else v) for k, v in good[0].headers]
        return (b"cus-lax", json.dumps(payload).encode(), headers)

    lax = [
        variant("lax-1", score="2", positive="false", sentiment="negative", normalized=0.25),
        variant("lax-2", occurred_at="2026-11-23T06:30:22.1234567Z"),
    ]
    poison = [
        variant("bad-1", metric="CSAT"),
        variant("bad-2", score=None),
        (b"k", b"{not json", good[0].headers),
    ]
    expected_reasons = []
    for key, value, headers in poison:
        with pytest.raises(DecodeError) as caught:
            decode(headers=headers, key=key, value=value)
        expected_reasons.append(str(caught.value))
    await produce(infra.bootstrap, good[:10])
    await produce_raw(infra.bootstrap, topics.ratings, [*lax, *poison])
    await produce(infra.bootstrap, good[10:])
    async with running(create_app(settings(infra, database_url, topics))):
        await wait_for(lambda: count_ratings(database_url), until=lambda n: n == 22, timeout_s=60)
    engine = make_engine(database_url)
    async with engine.connect() as conn:
        rows = {
            r.rating_id: r
            for r in await conn.execute(
                text(
                    "SELECT rating_id, score, sentiment, occurred_at FROM scorer.ratings "
                    "WHERE rating_id LIKE 'lax-%'"
                )
            )
        }
        counted = (
            await conn.execute(text("SELECT sum(n) FROM scorer.score_counts_day WHERE segment_key = '*'"))
        ).scalar_one()
    await engine.dispose()
    assert (rows["lax-1"].score, rows["lax-1"].sentiment) == (2, "negative")
    assert rows["lax-2"].occurred_at == datetime(2026, 11, 23, 6, 30, 22, 123456, tzinfo=UTC)  # truncated
    assert counted == 22
    letters = await read_topic(infra.bootstrap, topics.dlq_scorer, count=3)
    reasons = []
    for record in letters:
        letter = decode(headers=record.headers, key=record.key, value=record.value).data
        assert isinstance(letter, DeadLetter)
        reasons.append(letter.reason)
    assert sorted(reasons) == sorted(expected_reasons)


@pytest.mark.parametrize(
    "occurred",
    [
        datetime(2026, 11, 23, 9, 59, 59, 999_999, tzinfo=UTC),
        datetime(2026, 11, 23, 10, 0, 0, 1, tzinfo=UTC),
        datetime(1999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2038, 1, 19, 3, 14, 7, 123_457, tzinfo=UTC),
        datetime(2199, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2026, 3, 29, 3, 30, 0, 500_001, tzinfo=ZoneInfo("Europe/Paris")),
    ],
)
@pytest.mark.parametrize("counter_write", writes.COUNTER_WRITES)
async def test_timestamps_are_stored_to_the_microsecond(
    database_url: str, occurred: datetime, counter_write: str
) -> None:
    """The batch statement takes times as float seconds since the epoch; none may move by a microsecond
    (a minute bucket's edge is the worst place for it)."""
    engine = make_engine(database_url)
    received = occurred + timedelta(microseconds=999_999)
    body = {
        "rating_id": "t-1",
        "metric": "csat",
        "scale": "1-5",
        "score": 5,
        "customer": {"id": "cus-t"},
        "occurred_at": occurred.isoformat(),
    }
    rating = normalize(RatingIn.model_validate(body), received_at=received)
    event = RatingSubmitted.model_validate(rating.model_dump())
    try:
        async with engine.begin() as conn:
            assert await writes.apply_batch(conn, [event], ["*"], counter_write=counter_write) == {"t-1"}
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    text("SELECT occurred_at, received_at FROM scorer.ratings WHERE rating_id = 't-1'")
                )
            ).one()
            bucket = (
                await conn.execute(
                    text("SELECT bucket_start FROM scorer.score_counts_minute WHERE segment_key = '*'")
                )
            ).scalar_one()
    finally:
        await engine.dispose()
    assert row.occurred_at == occurred
    assert row.received_at == received
    assert bucket == occurred.replace(second=0, microsecond=0)


@pytest.mark.parametrize("counter_write", writes.COUNTER_WRITES)
async def test_every_counter_write_counts_only_the_ratings_it_stored(
    database_url: str, counter_write: str
) -> None:
    """Batches that overlap (a redelivery) count each rating once, in every tier, whichever way the
    counters travel (counted in SQL, or added up in memory and sent as composites or by COPY)."""
    at = datetime(2026, 12, 5, 10, 0, 30, tzinfo=UTC)

    def rating(rid: str, score: int, minute: int) -> RatingSubmitted:
        body = {
            "rating_id": rid,
            "metric": "csat",
            "scale": "1-5",
            "score": score,
            "customer": {"id": f"cus-{rid}"},
            "occurred_at": (at + timedelta(minutes=minute)).isoformat(),
        }
        return RatingSubmitted.model_validate(
            normalize(RatingIn.model_validate(body), received_at=at + timedelta(hours=2)).model_dump()
        )

    a, b, c = rating("a", 5, 0), rating("b", 5, 0), rating("c", 1, 61)
    keys = "*\x1fstore=s1"
    engine = make_engine(database_url)
    try:
        async with engine.begin() as conn:
            new = await writes.apply_batch(conn, [a, b], [keys, keys], counter_write=counter_write)
            assert new == {"a", "b"}
        async with engine.begin() as conn:
            new = await writes.apply_batch(conn, [b, c], [keys, keys], counter_write=counter_write)
            assert new == {"c"}
        async with engine.begin() as conn:
            assert await writes.apply_batch(conn, [a], [keys], counter_write=counter_write) == set()
        async with engine.connect() as conn:
            counts = {
                table: sorted(
                    (r.segment_key, r.bucket_start, r.score, r.n)
                    for r in await conn.execute(
                        text(f"SELECT segment_key, bucket_start, score, n FROM scorer.{table}")  # noqa: S608 - constant names
                    )
                )
                for table in ("score_counts_minute", "score_counts", "score_counts_day")
            }
            dirty = sorted(
                r.segment_key
                for r in await conn.execute(text("SELECT segment_key FROM scorer.dirty_segments"))
            )
    finally:
        await engine.dispose()
    m0, m1 = at.replace(second=0), (at + timedelta(minutes=61)).replace(second=0)
    h0, h1, d0 = m0.replace(minute=0), m1.replace(minute=0), m0.replace(hour=0, minute=0)
    assert counts["score_counts_minute"] == sorted(
        [("*", m0, 5, 2), ("store=s1", m0, 5, 2), ("*", m1, 1, 1), ("store=s1", m1, 1, 1)]
    )
    assert counts["score_counts"] == sorted(
        [("*", h0, 5, 2), ("store=s1", h0, 5, 2), ("*", h1, 1, 1), ("store=s1", h1, 1, 1)]
    )
    assert counts["score_counts_day"] == sorted(
        [("*", d0, 5, 2), ("store=s1", d0, 5, 2), ("*", d0, 1, 1), ("store=s1", d0, 1, 1)]
    )
    assert dirty == ["*", "store=s1"]


async def test_ratings_older_than_the_minute_tier_keeps_are_counted_in_hours_and_days_only(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    """An import of old ratings writes no minute buckets the retention job would only delete."""
    now = datetime.now(UTC)
    ages = {"old": timedelta(days=50), "recent": timedelta(days=2)}
    records = []
    for label, age in ages.items():
        for i in range(40):
            body = {
                "rating_id": f"{label}-{i}",
                "metric": "csat",
                "scale": "1-5",
                "score": 5 if i % 4 else 2,
                "customer": {"id": f"cus-{i}"},
                "segment": {"store": "s1"},
                "occurred_at": (now - age).isoformat(),
            }
            rating = normalize(RatingIn.model_validate(body), received_at=now)
            records.append(to_record(rating, topic=topics.ratings))
    await produce(infra.bootstrap, records)
    cfg = settings(infra, database_url, topics)
    assert cfg.minute_retention_days == 35
    async with running(create_app(cfg), headers=ADMIN) as client:

        async def score() -> Any:
            return (await client.get("/v1/scores", params={"window": "90d", "segment": "store:s1"})).json()

        body = await wait_for(score, until=lambda b: b["responses"] == 80, timeout_s=60)
        assert body["positive"] == 60
    engine = make_engine(database_url)
    try:
        async with engine.connect() as conn:
            sums = {}
            for tier, table in tables.TIER_TABLES.items():
                rows = await conn.execute(
                    text(
                        f"SELECT bucket_start < now() - interval '40 days' AS old, sum(n) FROM {table} "  # noqa: S608 - module constant
                        "WHERE segment_key = 'store=s1' GROUP BY 1"
                    )
                )
                sums[tier] = {bool(r[0]): int(r[1]) for r in rows}
    finally:
        await engine.dispose()
    assert sums["minute"] == {False: 40}
    assert sums["hour"] == {True: 40, False: 40}
    assert sums["day"] == {True: 40, False: 40}


def revision(rid: str, score: int, rev: int, *, topic: str) -> OutgoingRecord:
    """A survey re-click: the same rating id published again with a higher revision."""
    body = {
        "rating_id": rid,
        "metric": "csat",
        "scale": "1-5",
        "score": score,
        "customer": {"id": f"cus-{rid}"},
        "segment": {"store": "s1", "channel": "chat"},
    }
    rating = normalize(RatingIn.model_validate(body), received_at=datetime.now(UTC))
    return to_record(rating.model_copy(update={"revision": rev}), topic=topic)


async def test_reclicks_replace_answers_exactly_through_replays_and_out_of_order_delivery(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    t = topics.ratings
    first = [event(f"rv-{i}", 5, topic=t) for i in range(100)]
    records = (
        first
        + [revision(f"rv-{i}", 1, 1, topic=t) for i in range(20)]  # 20 re-clicks: 5 -> 1
        + [revision(f"rv-{i}", 1, 1, topic=t) for i in range(10)]  # the same revisions replayed
        + first[:30]  # first answers redelivered after their revisions
        + [revision(f"rv-{i}", 2, 2, topic=t) for i in range(20, 30)]  # revision 2 first...
        + [revision(f"rv-{i}", 4, 1, topic=t) for i in range(20, 30)]  # ...then revision 1: stale
        + [revision("nv-0", 3, 1, topic=t), event("nv-0", 5, topic=t)]  # a revision before its answer
    )
    await produce(infra.bootstrap, records)
    cfg = settings(infra, database_url, topics)
    engine = make_engine(database_url)

    async def consumed() -> int:
        async with engine.connect() as conn:
            got = await conn.execute(
                text(
                    "SELECT coalesce(sum(next_offset), 0) FROM ops.consumer_offsets WHERE consumer_group = :g"
                ),
                {"g": cfg.consumer_group},
            )
            return int(got.scalar_one())

    try:
        async with running(create_app(cfg), headers=ADMIN) as client:
            await wait_for(consumed, until=lambda n: n == len(records), timeout_s=60)
            body = (await client.get("/v1/scores", params={"metric": "csat", "window": "30d"})).json()
            # 70 answers of 5 stand; 20 became 1, 10 became 2, and nv-0 counts once, as 3.
            assert body["responses"] == 101
            assert body["positive"] == 70
            store = (await client.get("/v1/scores", params={"segment": "store:s1", "window": "24h"})).json()
            assert (store["responses"], store["positive"]) == (101, 70)
        async with engine.connect() as conn:
            counts: dict[str, dict[int, int]] = {}
            for table in tables.TIER_TABLES.values():
                query = (
                    f"SELECT score, sum(n) FROM {table} WHERE segment_key = '*' "  # noqa: S608 - fixed table names
                    "GROUP BY score HAVING sum(n) <> 0"
                )
                counts[table] = dict((await conn.execute(text(query))).all())
            rows: dict[int, int] = dict(
                (
                    await conn.execute(
                        text("SELECT revision, count(*) FROM scorer.ratings GROUP BY revision")
                    )
                ).all()
            )
    finally:
        await engine.dispose()
    for table, per_score in counts.items():  # every tier: minute, hour, day
        assert per_score == {5: 70, 1: 20, 2: 10, 3: 1}, table
    assert rows == {0: 70, 1: 21, 2: 10}
