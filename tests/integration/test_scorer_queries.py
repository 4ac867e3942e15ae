"""Scorer on the real broker and PostgreSQL: tiers, windows, breakdowns, series, caps, history, replay."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from services.collector.domain import RatingIn, normalize
from services.collector.intake import to_record
from services.scorer.bootstrap import create_app
from services.scorer.repository import maintenance
from services.scorer.repository.replay import ReplayBusy, Replayer
from services.scorer.settings import ScorerSettings
from shared.db import make_engine
from shared.envelope import OutgoingRecord
from shared.identity.scopes import Role
from shared.topics import Topics
from tests.credentials import ADMIN, JWKS, bearer, person
from tests.helpers import make_settings, produce, running, wait_for
from tests.infra import Infra
from tests.scorer_checks import counter_mismatches, fetch_value

pytestmark = pytest.mark.integration


def scorer_settings(infra: Infra, database_url: str, topics: Topics, **extra: Any) -> ScorerSettings:
    values: dict[str, Any] = {
        "kafka_bootstrap": infra.bootstrap,
        "database_url": database_url,
        "topic_prefix": topics.prefix,
        # A group per test: members of another test's group (same broker) never delay this one's join.
        "consumer_group": f"csat-scorer-{topics.prefix.rstrip('.')}",
        "score_event_interval_s": 3600,
        "prune_interval_s": 3600,
        "gauge_interval_s": 3600,
    }
    values.update(extra)
    return make_settings(ScorerSettings, **values)


def rating(
    rid: str,
    score: int,
    *,
    topic: str,
    ago: timedelta = timedelta(minutes=2),
    customer: str | None = None,
    metric: str = "csat",
    scale: str = "1-5",
    comment: str | None = None,
    account: str | None = None,
    survey_id: str | None = None,
    **segment: str,
) -> OutgoingRecord:
    now = datetime.now(UTC)
    body: dict[str, Any] = {
        "rating_id": rid,
        "metric": metric,
        "scale": scale,
        "score": score,
        "customer": {"id": customer or f"cus-{rid}"},
        "segment": segment,
        "occurred_at": (now - ago).isoformat(),
        "comment": comment,
    }
    if account is not None:
        body["account"] = {"id": account}
    if survey_id is not None:
        body["survey_id"] = survey_id
    return to_record(normalize(RatingIn.model_validate(body), received_at=now), topic=topic)


async def stored(database_url: str) -> int:
    return int(str(await fetch_value(database_url, "SELECT count(*) FROM scorer.ratings")))


async def consumed(database_url: str) -> int:
    return int(
        str(await fetch_value(database_url, "SELECT coalesce(sum(next_offset), 0) FROM ops.consumer_offsets"))
    )


async def get(client: httpx.AsyncClient, path: str, **params: Any) -> Any:
    response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def test_windows_are_exact_to_the_minute_and_compare_with_earlier_windows(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    t = topics.ratings
    records = (
        [rating(f"now-{i}", 5, topic=t, ago=timedelta(minutes=3), store="s1") for i in range(8)]
        + [rating(f"now-low-{i}", 1, topic=t, ago=timedelta(minutes=3), store="s1") for i in range(2)]
        + [rating(f"2h-{i}", 1, topic=t, ago=timedelta(hours=2, minutes=5), store="s1") for i in range(5)]
        + [rating(f"3d-{i}", 4, topic=t, ago=timedelta(days=3), store="s1") for i in range(5)]
        + [rating(f"45d-{i}", 2, topic=t, ago=timedelta(days=45), store="s1") for i in range(4)]
        + [rating(f"1y-{i}", 5, topic=t, ago=timedelta(days=364, hours=1), store="s1") for i in range(6)]
    )
    await produce(infra.bootstrap, records)
    async with running(create_app(scorer_settings(infra, database_url, topics)), headers=ADMIN) as client:
        await wait_for(lambda: stored(database_url), until=lambda n: n == 30, timeout_s=60)
        m15 = await get(client, "/v1/scores", window="15m")
        assert (m15["responses"], m15["positive"], m15["score"]) == (10, 8, 80.0)
        start, end = datetime.fromisoformat(m15["from"]), datetime.fromisoformat(m15["to"])
        assert end - start == timedelta(minutes=15) and end.second == 0 and m15["precision"] == "minute"
        assert m15["source"] == "counters" and m15["benchmark"] == {"industry": "all", "csat": 77.0}
        day = await get(client, "/v1/scores", window="24h", segment="store:s1")
        assert (day["responses"], day["positive"]) == (15, 8)
        assert day["previous_responses"] == 0 and day["previous"] is None
        week = await get(client, "/v1/scores", window="7d")
        assert (week["responses"], week["positive"]) == (20, 13)
        month = await get(client, "/v1/scores", window="30d")
        assert month["responses"] == 20
        assert (month["previous_responses"], month["previous"]) == (4, 0.0)
        assert month["delta"] == 65.0
        assert month["year_ago"]["responses"] == 6 and month["year_ago"]["score"] == 100.0
        assert month["year_ago"]["delta"] == -35.0
        # The year-ago window is 52 weeks back, snapped to whole hours (minute buckets are not kept).
        ya_from = datetime.fromisoformat(month["year_ago"]["from"])
        assert ya_from.minute == 0 and ya_from <= datetime.fromisoformat(month["from"]) - timedelta(days=364)
        quarter = await get(client, "/v1/scores", window="90d")
        assert quarter["responses"] == 24 and quarter["precision"] == "hour"
        assert (await client.get("/v1/scores", params={"window": "9999d"})).status_code == 422
        bad = await client.get("/v1/scores", params={"segment": "store"})
        assert bad.status_code == 422 and bad.json()["field"] == "segment"
    # Every tier holds exactly what a recomputation from the stored ratings gives.
    assert await counter_mismatches(database_url, combinations=[["store", "channel"]]) == {
        "scorer.score_counts_minute": [],
        "scorer.score_counts": [],
        "scorer.score_counts_day": [],
    }


async def test_breakdown_is_ranked_with_intervals_and_combinations(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    t = topics.ratings
    shape = {"paris": (9, 1), "lyon": (5, 5), "nice": (30, 10), "brest": (0, 1)}
    records = []
    for store, (good, bad) in shape.items():
        for i in range(good):
            records.append(
                rating(f"{store}-g{i}", 5, topic=t, store=store, channel="chat" if i % 2 else "web")
            )
        for i in range(bad):
            records.append(rating(f"{store}-b{i}", 1, topic=t, store=store, channel="chat"))
        records.append(rating(f"{store}-old", 1, topic=t, ago=timedelta(days=10), store=store, channel="web"))
    await produce(infra.bootstrap, records)
    async with running(create_app(scorer_settings(infra, database_url, topics)), headers=ADMIN) as client:
        await wait_for(lambda: stored(database_url), until=lambda n: n == len(records), timeout_s=60)
        body = await get(client, "/v1/scores/breakdown", by="store", window="7d")
        assert [s["value"] for s in body["segments"]] == ["paris", "nice", "lyon", "brest"]
        assert [s["rank"] for s in body["segments"]] == [1, 2, 3, 4]
        paris = body["segments"][0]
        assert (paris["score"], paris["responses"], paris["insufficient"]) == (90.0, 10, True)
        assert paris["ci_low"] < 90.0 < paris["ci_high"]
        assert paris["previous_responses"] == 1 and paris["previous"] == 0.0
        # A lower bound ranks the well-measured store first.
        by_low = await get(client, "/v1/scores/breakdown", by="store", window="7d", sort="ci_low")
        assert by_low["segments"][0]["value"] == "nice"
        filtered = await get(client, "/v1/scores/breakdown", by="store", window="7d", min_responses=10)
        assert {s["value"] for s in filtered["segments"]} == {"paris", "lyon", "nice"}
        combos = await get(client, "/v1/scores/breakdown", by="store,channel", window="7d")
        assert combos["by"] == "channel,store"
        chat_lyon = next(
            s for s in combos["segments"] if s["segment"] == {"store": "lyon", "channel": "chat"}
        )
        assert (chat_lyon["responses"], chat_lyon["positive"]) == (7, 2)
        refused = await client.get("/v1/scores/breakdown", params={"by": "store,country"})
        assert refused.status_code == 422 and refused.json()["field"] == "by"
        combo = await get(client, "/v1/scores", window="7d", segment=["store:lyon", "channel:chat"])
        assert combo["source"] == "counters" and combo["responses"] == 7
        nps = await get(client, "/v1/scores/breakdown", by="store", metric="nps", window="7d")
        assert nps["segments"] == []


async def test_series_for_charts(infra: Infra, database_url: str, topics: Topics) -> None:
    t = topics.ratings
    records = [
        *[rating(f"d0-{i}", 5, topic=t, ago=timedelta(minutes=1), store="s") for i in range(3)],
        *[rating(f"d2-{i}", 1, topic=t, ago=timedelta(days=2), store="s") for i in range(2)],
        rating("d2-up", 5, topic=t, ago=timedelta(days=2), store="s"),
    ]
    await produce(infra.bootstrap, records)
    async with running(create_app(scorer_settings(infra, database_url, topics)), headers=ADMIN) as client:
        await wait_for(lambda: stored(database_url), until=lambda n: n == 6, timeout_s=60)
        body = await get(client, "/v1/scores/series", window="7d", step="1d", segment="store:s")
        assert body["tier"] == "day" and len(body["points"]) == 7
        by_day = {p["from"][:10]: p for p in body["points"]}
        today = datetime.now(UTC) - timedelta(minutes=1)
        two_days = today - timedelta(days=2)
        assert by_day[today.date().isoformat()]["responses"] == 3
        assert by_day[two_days.date().isoformat()]["score"] == pytest.approx(33.33)
        assert sum(p["responses"] for p in body["points"]) == 6
        rolled = await get(client, "/v1/scores/series", window="7d", step="1d", rolling="7d")
        assert rolled["points"][-1]["responses"] == 6
        hourly = await get(client, "/v1/scores/series", window="24h")
        assert hourly["tier"] == "hour" and len(hourly["points"]) == 24
        assert hourly["points"][-1]["responses"] + hourly["points"][-2]["responses"] == 3
        bad = await client.get("/v1/scores/series", params={"window": "30d", "step": "1m"})
        assert bad.status_code == 422 and bad.json()["field"] == "step"


async def test_segment_cap_folds_new_values_into_other(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    t = topics.ratings
    first = [rating(f"a-{i}", 5, topic=t, store=f"store-{i}", channel="chat") for i in range(3)]
    later = [rating(f"b-{i}", 1, topic=t, store=f"late-{i}", channel="chat") for i in range(4)]
    settings = scorer_settings(infra, database_url, topics, max_values_per_dimension=3)
    # Prometheus counters are per process: other tests of the session (the handler tests on the fake
    # store among them) may have counted folds already, so the check is on this test's increase.
    folded_before = _sample("csat_segment_values_folded_total", dimension="store")
    await produce(infra.bootstrap, first)
    async with running(create_app(settings), headers=ADMIN) as client:
        await wait_for(lambda: stored(database_url), until=lambda n: n == 3, timeout_s=60)
        await produce(infra.bootstrap, later)
        await wait_for(lambda: stored(database_url), until=lambda n: n == 7, timeout_s=60)
        body = await get(client, "/v1/scores/breakdown", by="store", window="24h")
        values = {s["value"]: s["responses"] for s in body["segments"]}
        assert values == {"store-0": 1, "store-1": 1, "store-2": 1, "other": 4}
        assert next(s for s in body["segments"] if s["value"] == "other")["folded"] is True
        # A folded value is still answered exactly, from the stored ratings.
        one = await get(client, "/v1/scores", window="24h", segment="store:late-2")
        assert (one["responses"], one["source"], one["folded_into"]) == (1, "ratings", "other")
        combo = await get(client, "/v1/scores", window="24h", segment=["store:other", "channel:chat"])
        assert combo["responses"] == 4
        assert 'csat_segment_values_folded_total{dimension="store"}' in (await client.get("/metrics")).text
        assert _sample("csat_segment_values_folded_total", dimension="store") - folded_before == 4
    mismatches = await counter_mismatches(database_url, combinations=[["store", "channel"]])
    assert all(not bad for bad in mismatches.values()), mismatches


async def test_customer_history_newest_first_with_trend(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    t = topics.ratings
    scores = [5, 5, 4, 3, 2, 1]
    records = [
        rating(
            f"h-{i}",
            s,
            topic=t,
            customer="cus-42",
            ago=timedelta(days=10 * (len(scores) - i)),
            comment=f"c{i}",
        )
        for i, s in enumerate(scores)
    ]
    records.append(rating("h-nps", 9, topic=t, customer="cus-42", metric="nps", scale="0-10"))
    records.append(rating("other-customer", 1, topic=t, customer="cus-7"))
    await produce(infra.bootstrap, records)
    async with running(create_app(scorer_settings(infra, database_url, topics))) as client:
        await wait_for(lambda: stored(database_url), until=lambda n: n == 8, timeout_s=60)
        assert (await client.get("/v1/customers/cus-42/history")).status_code == 401
        page = (await client.get("/v1/customers/cus-42/history", params={"limit": 3}, headers=ADMIN)).json()
        assert page["total"] == 7
        assert [r["rating_id"] for r in page["ratings"]] == ["h-nps", "h-5", "h-4"]
        assert page["ratings"][1]["comment"] == "c5" and page["ratings"][1]["normalized"] == 0.0
        rest = (
            await client.get(
                "/v1/customers/cus-42/history",
                params={"limit": 10, "cursor": page["next_cursor"]},
                headers=ADMIN,
            )
        ).json()
        assert [r["rating_id"] for r in rest["ratings"]] == ["h-3", "h-2", "h-1", "h-0"]
        assert rest["next_cursor"] is None
        csat = (
            await client.get("/v1/customers/cus-42/history", params={"metric": "csat"}, headers=ADMIN)
        ).json()
        assert csat["trend"]["direction"] == "declining"
        assert csat["trend"]["slope_per_30d"] < 0
        assert csat["lowest"]["score"] == 1 and csat["lowest"]["latest_rating_id"] == "h-5"
        assert csat["highest"]["score"] == 5 and csat["highest"]["times"] == 2
        assert csat["highest"]["latest_rating_id"] == "h-1"
        bad = await client.get("/v1/customers/cus-42/history", params={"cursor": "nope"}, headers=ADMIN)
        assert bad.status_code == 422 and bad.json()["field"] == "cursor"
        nobody = (await client.get("/v1/customers/nobody/history", headers=ADMIN)).json()
        assert nobody["total"] == 0 and nobody["trend"]["direction"] is None and nobody["lowest"] is None


async def test_gauges_for_configured_segments(infra: Infra, database_url: str, topics: Topics) -> None:
    t = topics.ratings
    await produce(infra.bootstrap, [rating(f"g-{i}", 5 - i % 2 * 4, topic=t, store="s1") for i in range(4)])
    settings = scorer_settings(
        infra,
        database_url,
        topics,
        gauge_segments=["*", "store:s1"],
        gauge_interval_s=0.2,
        event_windows=["24h"],
    )
    async with running(create_app(settings), headers=ADMIN) as client:
        await wait_for(lambda: stored(database_url), until=lambda n: n == 4, timeout_s=60)

        async def scrape() -> str:
            return (await client.get("/metrics")).text

        def samples(exposition: str) -> dict[tuple[str, str, str, str], float]:
            return {
                (s.name, s.labels["metric"], s.labels["window"], s.labels["segment"]): s.value
                for family in text_string_to_metric_families(exposition)
                if family.name in ("csat_segment_score", "csat_segment_responses")
                for s in family.samples
            }

        got = samples(
            await wait_for(
                scrape,
                until=lambda s: samples(s).get(("csat_segment_responses", "csat", "24h", "store=s1")) == 4.0,
                timeout_s=20,
            )
        )
        assert got[("csat_segment_score", "csat", "24h", "*")] == 50.0
        assert got[("csat_segment_responses", "nps", "24h", "*")] == 0.0
        assert ("csat_segment_score", "nps", "24h", "*") not in got


async def test_prune_keeps_queries_exact(infra: Infra, database_url: str, topics: Topics) -> None:
    t = topics.ratings
    await produce(
        infra.bootstrap,
        [rating(f"old-{i}", 5, topic=t, ago=timedelta(days=50)) for i in range(3)]
        + [rating(f"new-{i}", 1, topic=t) for i in range(2)],
    )
    settings = scorer_settings(infra, database_url, topics)
    async with running(create_app(settings), headers=ADMIN) as client:
        await wait_for(lambda: stored(database_url), until=lambda n: n == 5, timeout_s=60)
        before = await get(client, "/v1/scores", window="90d")
        # Minute buckets past their retention are not even written any more...
        old_sql = "FROM scorer.score_counts_minute WHERE bucket_start < now() - interval '40 days'"
        assert await fetch_value(database_url, f"SELECT count(*) {old_sql}") == 0
        # ...but a deployment that lowers CSAT_MINUTE_RETENTION_DAYS has some: one written under a longer one.
        await fetch_value(
            database_url,
            "INSERT INTO scorer.score_counts_minute (metric, segment_key, bucket_start, scale, score, n) "
            "SELECT metric, segment_key, bucket_start, scale, score, n FROM scorer.score_counts "
            "WHERE segment_key = '*' AND bucket_start < now() - interval '40 days' RETURNING 1",
        )
        engine = make_engine(database_url)
        try:
            deleted = await maintenance.prune(engine, settings=settings, now=datetime.now(UTC))
        finally:
            await engine.dispose()
        assert deleted["minute"] == 1 and deleted["hour"] == 0
        after = await get(client, "/v1/scores", window="90d")
        assert (after["responses"], after["positive"]) == (before["responses"], before["positive"]) == (5, 3)
    assert await fetch_value(database_url, f"SELECT count(*) {old_sql}") == 0


async def test_replay_rebuilds_counters_while_the_scorer_runs(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    t = topics.ratings
    channels = ["chat", "web", "phone"]
    first = [
        rating(
            f"r-{i}",
            1 + i % 5,
            topic=t,
            ago=timedelta(hours=i % 50),
            store=f"s{i % 7}",
            channel=channels[i % 3],
        )
        for i in range(600)
    ]
    await produce(infra.bootstrap, first)
    settings = scorer_settings(infra, database_url, topics, max_batch=50)
    async with running(create_app(settings)):
        await wait_for(lambda: stored(database_url), until=lambda n: n == 600, timeout_s=60)
        # A formula change: a new combination. The replay runs while more ratings arrive and are counted.
        wider = settings.model_copy(update={"combinations": [["store", "channel"], ["channel", "country"]]})
        more = [
            rating(f"m-{i}", 1 + i % 5, topic=t, store=f"s{i % 7}", channel=channels[i % 3], country="fr")
            for i in range(400)
        ]
        lines: list[str] = []
        engine = make_engine(database_url)
        try:
            feeder = asyncio.create_task(produce(infra.bootstrap, more))
            result = await Replayer(
                engine, settings=wider, batch_size=100, progress=lambda p: lines.append(p.line())
            ).run()
            await feeder
        finally:
            await engine.dispose()
        await wait_for(lambda: consumed(database_url), until=lambda n: n == 1000, timeout_s=60)
    assert result.ratings >= 600 and any("scan" in line for line in lines) and "done" in lines[-1]
    assert lines[-1].startswith("replay [done]")
    # The ratings counted live after the replay use the scorer's (old) combinations: the new one
    # exists exactly for what the replay saw. The old combinations and single segments are exact.
    mismatches = await counter_mismatches(database_url, combinations=[["store", "channel"]])
    extra = {
        table: [row for row in rows if "country=" not in row[0][1] or "|" not in row[0][1]]
        for table, rows in mismatches.items()
    }
    assert extra == {t_: [] for t_ in mismatches}, extra
    # A replay with the same formula reproduces the live counters exactly.
    engine = make_engine(database_url)
    try:
        await Replayer(engine, settings=settings, batch_size=1000).run()
    finally:
        await engine.dispose()
    assert all(
        not rows
        for rows in (await counter_mismatches(database_url, combinations=[["store", "channel"]])).values()
    )
    assert await stored(database_url) == 1000


async def test_only_one_replay_at_a_time(infra: Infra, database_url: str) -> None:
    settings = make_settings(ScorerSettings, database_url=database_url)
    engine = make_engine(database_url)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT pg_advisory_lock(7341, 3)"))
            with pytest.raises(ReplayBusy):
                await Replayer(engine, settings=settings).run()
            await conn.execute(text("SELECT pg_advisory_unlock(7341, 3)"))
        result = await Replayer(engine, settings=settings).run()
        assert result.ratings == 0
    finally:
        await engine.dispose()


async def test_two_scorers_fold_deterministically_at_the_cap(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    """Two replicas share the partitions and race to register new values: the cap holds exactly and
    every counter still matches the recomputation from the ratings and the registry."""
    t = topics.ratings
    records = [
        rating(
            f"c-{i}",
            1 + i % 5,
            topic=t,
            customer=f"cus-{i % 37}",
            store=f"store-{i % 40}",
            channel=f"ch-{i % 7}",
        )
        for i in range(800)
    ]
    settings = scorer_settings(infra, database_url, topics, max_values_per_dimension=10, max_batch=20)
    first, second = create_app(settings), create_app(settings)
    async with running(first), running(second):
        await produce(infra.bootstrap, records)
        await wait_for(lambda: consumed(database_url), until=lambda n: n == 800, timeout_s=90)
        # Both replicas did part of the work (the group split the partitions between them).
        assert first.state.runtime.consumer.processed > 0 and second.state.runtime.consumer.processed > 0
    values = await fetch_value(
        database_url, "SELECT count(*) FROM scorer.segment_values WHERE dimension = 'store'"
    )
    recorded = await fetch_value(
        database_url, "SELECT n_values FROM scorer.segment_dimensions WHERE dimension = 'store'"
    )
    assert values == recorded == 10
    assert (
        await fetch_value(
            database_url, "SELECT count(*) FROM scorer.segment_values WHERE dimension = 'channel'"
        )
        == 7
    )
    mismatches = await counter_mismatches(database_url, combinations=[["store", "channel"]])
    assert all(not rows for rows in mismatches.values()), mismatches
    other = await fetch_value(
        database_url, "SELECT sum(n) FROM scorer.score_counts_day WHERE segment_key = 'store=other'"
    )
    assert int(str(other)) == 800 - 10 * 20


async def test_dimensions_beyond_the_cap_get_no_counters(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    t = topics.ratings
    records = [
        rating(f"d-{i}", 5, topic=t, store="s1", channel="chat", zzz_campaign=f"c{i}") for i in range(5)
    ]
    settings = scorer_settings(infra, database_url, topics, max_dimensions=2)
    dropped_before = _sample("csat_segment_dimensions_dropped_total")
    async with running(create_app(settings), headers=ADMIN) as client:
        await produce(infra.bootstrap, records)
        await wait_for(lambda: stored(database_url), until=lambda n: n == 5, timeout_s=60)
        dims = await fetch_value(
            database_url, "SELECT string_agg(dimension, ',' ORDER BY 1) FROM scorer.segment_dimensions"
        )
        assert dims == "channel,store"
        # The dropped dimension is still answered, from the stored ratings.
        one = await get(client, "/v1/scores", window="24h", segment="zzz_campaign:c3")
        assert (one["responses"], one["source"]) == (1, "ratings") and "folded_into" not in one
        assert "csat_segment_dimensions_dropped_total" in (await client.get("/metrics")).text
        assert _sample("csat_segment_dimensions_dropped_total") - dropped_before == 5
    mismatches = await counter_mismatches(database_url, combinations=[["store", "channel"]])
    assert all(not rows for rows in mismatches.values()), mismatches


def _sample(name: str, **labels: str) -> float:
    """A counter's current value in this process (the registry is process-wide)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_grants_rows_small_groups_and_owned_customers_on_postgresql(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    """A store manager's grant limits filters and rows; a group under the minimum loses its distribution
    for roles below manager; a CSM reads only the history of a customer of an account they own."""
    t = topics.ratings
    records = [rating(f"p-{i}", 5 if i < 6 else 2, topic=t, store="paris-1") for i in range(8)]
    records += [rating(f"l-{i}", 4, topic=t, store="lyon-2") for i in range(3)]
    records.append(rating("acme-1", 1, topic=t, customer="cus-acme", account="acc-acme", store="lyon-2"))
    await produce(infra.bootstrap, records)
    cfg = scorer_settings(infra, database_url, topics, identity_public_keys=JWKS)
    async with running(create_app(cfg)) as client:
        await wait_for(lambda: stored(database_url), until=lambda n: n == len(records), timeout_s=60)
        paris = bearer(person(Role.VIEWER, segments=["store:paris-1"]))

        async def ask(headers: dict[str, str], path: str, **params: Any) -> httpx.Response:
            return await client.get(path, params={"window": "24h", **params}, headers=headers)

        assert (await ask({}, "/v1/scores")).status_code == 401
        mine = await ask(paris, "/v1/scores", segment="store:paris-1")
        assert mine.status_code == 200 and mine.json()["responses"] == 8
        assert mine.json()["distribution_hidden"] is False and mine.json()["distribution"]
        for refused in ({}, {"segment": "store:lyon-2"}):  # the whole and another store
            answer = await ask(paris, "/v1/scores", **refused)
            assert answer.status_code == 404 and "lyon" not in answer.text
        assert (await ask(paris, "/v1/scores/series", segment="store:lyon-2")).status_code == 404
        rows = (await ask(paris, "/v1/scores/breakdown", by="store")).json()
        assert [r["value"] for r in rows["segments"]] == ["paris-1"] and rows["total"] == 1
        # lyon-2 has 4 answers (< 5): a viewer sees its score and n, a manager its distribution too
        viewer = bearer(person(Role.VIEWER))
        small = (await ask(viewer, "/v1/scores", segment="store:lyon-2")).json()
        assert (small["responses"], small["distribution_hidden"]) == (4, True)
        assert small["score"] is not None and small["distribution"] is None and small["mean"] is None
        row = next(
            r
            for r in (await ask(viewer, "/v1/scores/breakdown", by="store")).json()["segments"]
            if r["value"] == "lyon-2"
        )
        assert row["distribution_hidden"] is True and row["negative"] is None
        manager = (await ask(bearer(person(Role.MANAGER)), "/v1/scores", segment="store:lyon-2")).json()
        assert manager["distribution_hidden"] is False and sum(manager["distribution"]["1-5"].values()) == 4
        assert (await ask(viewer, "/v1/drift")).status_code == 200
        # history: customers:read (not a viewer's), then ownership by the ratings' account id
        history = "/v1/customers/cus-acme/history"
        assert (await client.get(history, headers=viewer)).status_code == 403
        ana = bearer(person(Role.CSM, accounts=["acc-acme"]))
        assert (await client.get(history, headers=ana)).json()["total"] == 1
        bob = bearer(person(Role.CSM, accounts=["acc-other"]))
        foreign = await client.get(history, headers=bob)
        assert foreign.status_code == 404 and "acme-1" not in foreign.text
