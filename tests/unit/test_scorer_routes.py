"""The scorer's routes on the in-memory store: what each answers from counters or from the ratings.

The same answers on PostgreSQL are checked by tests/integration/test_scorer*.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

from services.scorer.deps import ScorerDeps
from services.scorer.responses import ResponseIncrement
from services.scorer.routes import customers, drift, scores
from services.scorer.settings import ScorerSettings
from shared.settings import DEV_ADMIN_KEY
from shared.stats import wilson_interval
from tests.credentials import ADMIN, authenticator
from tests.fakes.scorer_store import MemoryScorerStore
from tests.unit.test_scorer_drift_step import DAYS, START, Broker, midnight, run_daily, two_stores
from tests.unit.test_scorer_handlers import NOW, TX, batch, handler_for, rating

PARIS = {"store": "paris-1", "channel": "chat"}
LYON = {"store": "lyon-2", "channel": "web"}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    cfg = ScorerSettings.model_validate({"environment": "test", "min_sample": 5})
    store = MemoryScorerStore(combinations=cfg.combos)
    # Paris: 8 of 10 happy; Lyon: 3 of 6; one customer rated three times, a day apart.
    ratings = [rating(f"p-{i}", 5 if i < 8 else 1, segment=PARIS) for i in range(10)]
    ratings += [rating(f"l-{i}", 4 if i < 3 else 2, segment=LYON) for i in range(6)]
    ratings += [
        rating(f"h-{i}", score, customer="cus-h", at=NOW - timedelta(days=3 - i))
        for i, score in enumerate([5, 1, 3])
    ]
    await handler_for(store, cfg)(TX, batch(*ratings))
    deps = ScorerDeps(
        settings=cfg,
        scores=store.session,
        customers=store.session,
        clock=lambda: NOW,
        auth=authenticator("scorer"),
    )
    app = FastAPI()
    app.include_router(scores.router(deps))
    app.include_router(customers.router(deps))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://scorer", headers=ADMIN
    ) as c:
        yield c


async def test_a_segment_with_counters_and_one_answered_from_the_ratings(client: httpx.AsyncClient) -> None:
    counted = (await client.get("/v1/scores", params={"window": "7d", "segment": "store:paris-1"})).json()
    assert (counted["source"], counted["score"], counted["responses"]) == ("counters", 80.0, 10)
    params = {"window": "7d", "segment": ["store:paris-1", "channel:chat"]}
    combined = (await client.get("/v1/scores", params=params)).json()
    assert (combined["source"], combined["segment_key"]) == ("counters", "channel=chat|store=paris-1")
    # store x country is not a configured combination: only the stored ratings can answer.
    params = {"window": "7d", "segment": ["store:paris-1", "country:fr"]}
    uncounted = (await client.get("/v1/scores", params=params)).json()
    assert (uncounted["source"], uncounted["responses"]) == ("ratings", 0)


async def test_a_breakdown_ranks_each_store(client: httpx.AsyncClient) -> None:
    body = (await client.get("/v1/scores/breakdown", params={"by": "store", "window": "7d"})).json()
    assert [(s["value"], s["score"], s["rank"]) for s in body["segments"]] == [
        ("paris-1", 80.0, 1),
        ("lyon-2", 50.0, 2),
    ]
    asc = (await client.get("/v1/scores/breakdown", params={"by": "store", "order": "asc"})).json()
    assert [s["value"] for s in asc["segments"]] == ["lyon-2", "paris-1"]


async def test_a_rolling_series_sums_its_trailing_steps(client: httpx.AsyncClient) -> None:
    params = {"window": "4d", "step": "1d", "rolling": "2d"}
    body = (await client.get("/v1/scores/series", params=params)).json()
    assert [p["responses"] for p in body["points"]] == [1, 2, 2, 17]


async def test_a_customer_history_pages_newest_first(client: httpx.AsyncClient) -> None:
    wrong = await client.get("/v1/customers/cus-h/history", headers={"Authorization": "Bearer wrong"})
    assert wrong.status_code == 401
    key = {"X-API-Key": DEV_ADMIN_KEY}
    first = (await client.get("/v1/customers/cus-h/history", params={"limit": 2}, headers=key)).json()
    assert [r["rating_id"] for r in first["ratings"]] == ["h-2", "h-1"]
    assert (first["total"], first["lowest"]["score"], first["highest"]["score"]) == (3, 1, 5)
    params = {"limit": 2, "cursor": first["next_cursor"]}
    rest = (await client.get("/v1/customers/cus-h/history", params=params, headers=key)).json()
    assert [r["rating_id"] for r in rest["ratings"]] == ["h-0"] and rest["next_cursor"] is None


async def test_parameters_it_cannot_use_are_named_in_the_problem(client: httpx.AsyncClient) -> None:
    bad = await client.get("/v1/scores", params={"window": "5y"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "window"
    bad = await client.get("/v1/scores/breakdown", params={"by": "store,country"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "by"
    bad = await client.get("/v1/scores/series", params={"step": "1h", "rolling": "90m"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "rolling"


# ---- drift: what the detector says, in the scores API and its own listing ------------------------------
@pytest.fixture
async def drift_client() -> AsyncIterator[httpx.AsyncClient]:
    """Two stores judged daily for 180 days: one stable, one that dropped 20 points on day 150."""
    store, broker = two_stores(), Broker()
    store.dimensions.add("store")
    store.values["store"] = {"stable", "dropping"}
    await run_daily(store, broker)
    cfg = ScorerSettings(environment="test")
    end = midnight(START + timedelta(days=DAYS)) + timedelta(hours=2)
    deps = ScorerDeps(
        settings=cfg,
        scores=store.session,
        customers=store.session,
        clock=lambda: end,
        auth=authenticator("scorer"),
    )
    app = FastAPI()
    app.include_router(scores.router(deps))
    app.include_router(drift.router(deps))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://scorer", headers=ADMIN
    ) as c:
        yield c


async def test_the_scores_api_says_what_the_detector_saw(drift_client: httpx.AsyncClient) -> None:
    body = (await drift_client.get("/v1/scores", params={"segment": "store:dropping"})).json()
    d = body["drift"]
    assert d["status"] == "drop_detected" and d["since"] == "2026-06-04"
    assert d["drop"]["ci_low"] < d["drop"]["size"] < d["drop"]["ci_high"] and d["drop"]["size"] > 10
    assert d["message"].startswith("CSAT dropped by") and d["threshold"] == pytest.approx(8.203, abs=1e-3)
    # The period comparison stays, labelled as a one-look test.
    assert body["comparison"] == "one_look" and "significant_drop" in body and "p_value_drop" in body
    stable = (await drift_client.get("/v1/scores", params={"segment": "store:stable"})).json()["drift"]
    assert (stable["status"], stable["watched_drop"], stable["drop"]) == ("monitoring", 10.0, None)
    assert 0 < stable["days_to_confirm"] < 28 and stable["message"].startswith("watching for a drop of 10")
    unknown = (await drift_client.get("/v1/scores", params={"segment": "country:fr"})).json()["drift"]
    assert unknown["status"] == "not_monitored"
    never = (await drift_client.get("/v1/scores", params={"metric": "nps"})).json()["drift"]
    assert never["status"] == "not_evaluated"


async def test_the_breakdown_and_the_listing_carry_the_drift_status(drift_client: httpx.AsyncClient) -> None:
    rows = (await drift_client.get("/v1/scores/breakdown", params={"by": "store"})).json()["segments"]
    assert {r["value"]: r["drift_status"] for r in rows} == {
        "stable": "monitoring",
        "dropping": "drop_detected",
    }
    listed = (await drift_client.get("/v1/drift", params={"status": "drop_detected"})).json()
    assert [(s["segment_key"], s["segment"]) for s in listed["segments"]] == [
        ("store=dropping", {"store": "dropping"})
    ]
    assert listed["segments"][0]["drop"]["answers_after"] > 0 and listed["next_cursor"] is None
    first = (await drift_client.get("/v1/drift", params={"limit": 1})).json()
    second = (await drift_client.get("/v1/drift", params={"limit": 1, "cursor": first["next_cursor"]})).json()
    assert [s["segment_key"] for s in first["segments"] + second["segments"]] == [
        "store=dropping",
        "store=stable",
    ]
    assert second["next_cursor"] is None
    bad = await drift_client.get("/v1/drift", params={"status": "panicking"})
    assert bad.status_code == 422
    bad = await drift_client.get("/v1/drift", params={"cursor": "nope"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "cursor"


async def test_breakdown_rows_carry_the_response_rate_of_their_segment() -> None:
    """Each row of the rows returned gets ``response_rate``, ``completion_rate`` and ``low_response`` from
    its segment key's counters, as GET /v1/scores computes them; none for a segment no survey invited."""
    cfg = ScorerSettings.model_validate({"environment": "test", "min_sample": 5})
    store = MemoryScorerStore(combinations=cfg.combos)
    ratings = [rating(f"p-{i}", 5, segment=PARIS) for i in range(10)]
    ratings += [rating(f"l-{i}", 4, segment=LYON) for i in range(6)]
    await handler_for(store, cfg)(TX, batch(*ratings))
    hour = (NOW - timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    store.responses.add(
        [
            ResponseIncrement("csat", "store=paris-1", hour, 120, 10, 5),  # 8.3 % of 120: low
            ResponseIncrement("csat", "store=paris-1", hour - timedelta(days=30), 99, 99, 0),  # outside
            ResponseIncrement("nps", "store=lyon-2", hour, 10, 1, 0),  # another metric
        ]
    )
    deps = ScorerDeps(
        settings=cfg,
        scores=store.session,
        customers=store.session,
        clock=lambda: NOW,
        auth=authenticator("scorer"),
    )
    app = FastAPI()
    app.include_router(scores.router(deps))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://scorer", headers=ADMIN
    ) as client:
        body = (await client.get("/v1/scores/breakdown", params={"by": "store", "window": "7d"})).json()
        rows = {r["value"]: r for r in body["segments"]}
        paris = rows["paris-1"]["response_rate"]
        assert (paris["invited"], paris["answered"], paris["rate"], paris["low"]) == (120, 10, 10 / 120, True)
        assert (paris["ci_low"], paris["ci_high"]) == wilson_interval(10, 120)
        assert rows["paris-1"]["low_response"] is True
        assert rows["paris-1"]["completion_rate"]["rate"] == 0.5
        assert (rows["lyon-2"]["response_rate"], rows["lyon-2"]["low_response"]) == (None, False)
        single = (await client.get("/v1/scores", params={"window": "7d", "segment": "store:paris-1"})).json()
        for field in ("response_rate", "completion_rate", "low_response"):
            assert rows["paris-1"][field] == single[field], field
        first = (await client.get("/v1/scores/breakdown", params={"by": "store", "limit": 1})).json()
        assert [r["value"] for r in first["segments"]] == ["paris-1"] and first["total"] == 2
        assert first["segments"][0]["response_rate"]["invited"] == 120
