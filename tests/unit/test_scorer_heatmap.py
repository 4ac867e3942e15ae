"""Two-dimension breakdowns (store x channel) and the one-look comparisons of the scores API, on the
in-memory store; the same route on PostgreSQL is checked by tests/integration/test_console_scores.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.scorer import heatmap
from services.scorer.deps import ScorerDeps
from services.scorer.routes import heatmap as heatmap_routes
from services.scorer.routes import scores
from services.scorer.settings import ScorerSettings
from tests.credentials import ADMIN, authenticator
from tests.fakes.scorer_store import MemoryScorerStore
from tests.unit.test_scorer_handlers import NOW, TX, batch, handler_for, rating

COMBOS = [("channel", "store")]


def stores(*specs: tuple[str, str, int, int], ago: timedelta = timedelta(hours=1)) -> list[Any]:
    """(store, channel, happy, unhappy) -> that many 5s and 1s."""
    out = []
    for store, channel, happy, unhappy in specs:
        seg = {"store": store, "channel": channel}
        tag = f"{store}-{channel}-{ago.days}"
        out += [rating(f"{tag}-h{i}", 5, segment=seg, at=NOW - ago) for i in range(happy)]
        out += [rating(f"{tag}-u{i}", 1, segment=seg, at=NOW - ago) for i in range(unhappy)]
    return out


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    cfg = ScorerSettings.model_validate({"environment": "test", "min_sample": 5})
    store = MemoryScorerStore(combinations=cfg.combos)
    ratings = stores(
        ("paris-1", "chat", 8, 2),
        ("paris-1", "web", 3, 3),
        ("lyon-2", "chat", 1, 4),
        ("nice-3", "phone", 2, 0),
    )
    # Paris a week earlier (the previous 7 days): 2 of 10 happy, so today's 80 % on chat is a real rise.
    ratings += stores(("paris-1", "chat", 2, 8), ago=timedelta(days=10))
    # A year earlier, same week: 10 of 10 happy, so today's 80 % is a drop against it.
    ratings += stores(("paris-1", "chat", 10, 0), ago=timedelta(days=364, hours=1))
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
    app.include_router(heatmap_routes.router(deps))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://scorer", headers=ADMIN
    ) as c:
        yield c


async def test_every_pair_of_the_combination_is_a_cell_busiest_rows_first(client: httpx.AsyncClient) -> None:
    params = {"rows": "store", "columns": "channel", "window": "7d"}
    body = (await client.get("/v1/scores/heatmap", params=params)).json()
    assert (body["rows_by"], body["columns_by"]) == ("store", "channel")
    assert body["rows"] == ["paris-1", "lyon-2", "nice-3"]  # 16, 5 and 2 answers
    assert body["columns"] == ["chat", "web", "phone"]
    cells = {(c["row"], c["column"]): (c["score"], c["responses"]) for c in body["cells"]}
    assert cells == {
        ("paris-1", "chat"): (80.0, 10),
        ("paris-1", "web"): (50.0, 6),
        ("lyon-2", "chat"): (20.0, 5),
        ("nice-3", "phone"): (100.0, 2),
    }
    chat = next(c for c in body["cells"] if (c["row"], c["column"]) == ("paris-1", "chat"))
    assert (
        chat["segment"] == {"store": "paris-1", "channel": "chat"} and chat["ci_low"] < 80 < chat["ci_high"]
    )
    assert (chat["previous"], chat["delta"], chat["significant_rise"]) == (20.0, 60.0, True)
    small = await client.get("/v1/scores/heatmap", params={**params, "limit_rows": 1, "limit_columns": 1})
    assert [(c["row"], c["column"]) for c in small.json()["cells"]] == [("paris-1", "chat")]
    assert (small.json()["total_rows"], small.json()["total_columns"]) == (3, 3)


async def test_a_filter_on_one_dimension_is_the_drill_down(client: httpx.AsyncClient) -> None:
    params = {"rows": "store", "columns": "channel", "window": "7d", "segment": "store:paris-1"}
    body = (await client.get("/v1/scores/heatmap", params=params)).json()
    assert body["segment"] == {"store": "paris-1"} and body["rows"] == ["paris-1"]
    assert [(c["column"], c["score"]) for c in body["cells"]] == [("chat", 80.0), ("web", 50.0)]
    both = {**params, "segment": ["store:lyon-2", "channel:chat"]}
    one = (await client.get("/v1/scores/heatmap", params=both)).json()
    assert [(c["row"], c["column"], c["responses"]) for c in one["cells"]] == [("lyon-2", "chat", 5)]
    nobody = {**params, "segment": "store:nowhere"}
    assert (await client.get("/v1/scores/heatmap", params=nobody)).json()["cells"] == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"rows": "store", "columns": "country"}, "columns"),  # not a counted combination
        ({"rows": "store", "columns": "store"}, "columns"),
        ({"rows": "store", "columns": "channel", "segment": "country:fr"}, "segment"),
        ({"rows": "store", "columns": "channel", "segment": "store"}, "segment"),
        ({"rows": "store", "columns": "channel", "window": "5y"}, "window"),
    ],
)
async def test_what_the_counters_cannot_answer_is_named(
    client: httpx.AsyncClient, params: dict[str, str], field: str
) -> None:
    answer = await client.get("/v1/scores/heatmap", params=params)
    assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == field


def test_the_plan_names_the_counted_combinations() -> None:
    with pytest.raises(heatmap.HeatmapError, match=r"counted: channel x store"):
        heatmap.plan(rows_by="store", columns_by="agent", filters={}, combos=COMBOS)
    fixed = heatmap.plan(rows_by="channel", columns_by="store", filters={"store": "a|b"}, combos=COMBOS)
    assert fixed.free == ("channel",)
    assert fixed.keys_for(["chat"]) == ["channel=chat|store=a%7Cb"]  # escaped as the counters' keys


async def test_the_scores_api_tests_both_comparisons_both_ways(client: httpx.AsyncClient) -> None:
    params = {"window": "7d", "segment": ["store:paris-1", "channel:chat"]}
    body = (await client.get("/v1/scores", params=params)).json()
    assert (body["score"], body["previous"]) == (80.0, 20.0)
    assert (body["significant_rise"], body["significant_drop"]) == (True, False)
    year = body["year_ago"]
    assert (year["score"], year["responses"], year["delta"]) == (100.0, 10, -20.0)
    # 8 of 10 against 10 of 10: z = -1.49, p = 0.068, not a significant drop at alpha 0.05
    assert (year["z"], year["p_value_drop"]) == (-1.491, 0.06802)
    assert (year["significant_drop"], year["significant_rise"]) == (False, False)


def test_keeping_the_shown_pairs_first_gives_the_same_grid() -> None:
    """The route scores only the pairs ``heatmap.keep`` chooses from the counts; the grid must be the
    one it would draw from every pair scored (rows, columns, cells, totals), grants and a minimum of
    answers included, ties in the order of the values."""
    from services.scorer.domain import parse_segment_key, segment_key

    heat = heatmap.plan(rows_by="store", columns_by="channel", filters={}, combos=COMBOS)
    responses = {
        segment_key({"store": f"s{i}", "channel": ch}): (i * 7 + j * 3) % 11
        for i in range(40)
        for j, ch in enumerate(("web", "chat", "phone", "mail"))
    }
    hidden = {"s3", "s17"}

    def visible(attrs: Any) -> bool:
        return attrs["store"] not in hidden

    for min_responses in (0, 4):
        rows = [
            {"segment": a, "segment_key": k, "responses": n, "score": n / 10, "value": "x", "rank": 1}
            for k, n in responses.items()
            if n >= max(min_responses, 1) and visible(a := parse_segment_key(k))
        ]
        full = heatmap.grid(rows, heat, limit_rows=7, limit_columns=3)
        kept = heatmap.keep(
            responses, heat, limit_rows=7, limit_columns=3, min_responses=min_responses, visible=visible
        )
        narrowed = heatmap.grid(
            [r for r in rows if r["segment_key"] in kept.keys], heat, limit_rows=7, limit_columns=3, kept=kept
        )
        assert narrowed == full
        assert len(kept.keys) <= 7 * 3 < len(rows)
        assert full["total_rows"] == 38 and full["total_columns"] == 4
