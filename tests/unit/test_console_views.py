"""The Scores and Segments views on in-memory stores: the console's routes calling the scorer's real routes
(on the in-memory scorer store) through ASGI, with a person of each kind signed in.

The same on PostgreSQL, the broker and real processes: tests/integration/test_console_scores.py.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

from services.console.bootstrap import create_app
from services.console.settings import ConsoleSettings
from services.scorer.deps import ScorerDeps
from services.scorer.routes import heatmap, scores
from services.scorer.settings import ScorerSettings
from shared.identity.passwords import Passwords
from shared.identity.ports import NewUser
from shared.identity.principal import SegmentGrant
from shared.identity.scopes import Role
from tests.credentials import ADMIN, SIGNING_KEY, authenticator
from tests.fakes.console_store import MemoryConsoleStore
from tests.fakes.identity_store import MemoryIdentityStore
from tests.fakes.scorer_store import MemoryScorerStore
from tests.unit.test_scorer_handlers import NOW, TX, batch, handler_for, rating

CHEAP = Passwords(time_cost=1, memory_cost=1024, parallelism=1)
PASSWORD = "correct horse battery staple"
HTML = {"accept": "text/html"}


@dataclass
class Site:
    app: FastAPI
    scorer: httpx.AsyncClient

    def browser(self) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app)
        return httpx.AsyncClient(transport=transport, base_url="https://console.test", headers=HTML)


async def scorer_app() -> FastAPI:
    cfg = ScorerSettings.model_validate({"environment": "test", "min_sample": 5})
    store = MemoryScorerStore(combinations=cfg.combos)
    ratings = []
    for store_name, channel, scores_ in (
        ("paris-1", "chat", [5] * 300 + [4] * 400 + [3] * 100 + [2] * 200),  # CSAT 70 % over 1,000
        ("lyon-2", "web", [5] * 10 + [1] * 30),
        ("lyon-2", "chat", [5] * 2),
    ):
        segment = {"store": store_name, "channel": channel}
        ratings += [
            rating(f"{store_name}-{channel}-{i}", s, segment=segment, at=NOW - timedelta(hours=2))
            for i, s in enumerate(scores_)
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
    app.include_router(heatmap.router(deps))
    return app


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    identity = MemoryIdentityStore()
    for email, role, grants in (
        ("manager@example.com", Role.MANAGER, None),
        ("paris@example.com", Role.VIEWER, frozenset({SegmentGrant.parse("store:paris-1")})),
        ("nobody@example.com", Role.VIEWER, frozenset()),
    ):
        await identity.create_user(
            user=NewUser(
                email=email,
                display_name=email.split("@")[0].title(),
                role=role,
                segments=grants,
                password_hash=CHEAP.hash(PASSWORD),
            )
        )
    scorer = await scorer_app()
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=scorer))
    cfg = ConsoleSettings.model_validate(
        {
            "environment": "test",
            "live_enabled": False,
            "log_format": "console",
            # the scorer trusts this key's tokens (tests.credentials.authenticator)
            "identity_signing_key": SIGNING_KEY.private_jwk(),
        }
    )
    app = create_app(cfg, identity=identity, console=MemoryConsoleStore(identity), passwords=CHEAP, http=http)
    async with app.router.lifespan_context(app):
        yield Site(
            app=app,
            scorer=httpx.AsyncClient(
                transport=httpx.ASGITransport(app=scorer), base_url="http://s", headers=ADMIN
            ),
        )


async def signed_in(site: Site, email: str) -> httpx.AsyncClient:
    client = site.browser()
    form = await client.get("/signin")
    token = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', form.text)
    assert token
    answer = await client.post(
        "/signin", data={"email": email, "password": PASSWORD, "csrf_token": token.group(1), "next": "/"}
    )
    assert answer.status_code == 303, answer.text[:300]
    return client


def tile(page: str, metric: str) -> dict[str, str]:
    found = re.search(
        rf'<li class="tile[^"]*" data-metric="{metric}" data-state="(\w+)" data-score="([^"]*)" '
        rf'data-responses="(\d+)"',
        page,
    )
    assert found, page[:2000]
    return {"state": found.group(1), "score": found.group(2), "responses": found.group(3)}


async def test_a_store_of_1000_answers_shows_70_percent_in_both_languages(site: Site) -> None:
    client = await signed_in(site, "manager@example.com")
    page = await client.get("/scores", params={"window": "7d", "segment": "store:paris-1"})
    assert page.status_code == 200, page.text[:500]
    assert tile(page.text, "csat") == {"state": "ok", "score": "70.0", "responses": "1000"}
    assert "70.0%" in page.text and "1,000 answers" in page.text
    api = (await site.scorer.get("/v1/scores", params={"window": "7d", "segment": "store:paris-1"})).json()
    assert (api["score"], api["responses"]) == (70.0, 1000)
    assert tile(page.text, "nps")["state"] == "empty"
    fr = await client.get("/scores", params={"window": "7d", "segment": "store:paris-1", "lang": "fr"})
    assert "70,0\u00a0%" in fr.text and "1\u202f000 réponses" in fr.text
    # the distribution of the focused metric, with a table; the trend's data for the chart script
    assert '<data value="400">400</data>' in page.text
    assert '<script type="application/json" id="trend-data">' in page.text
    panel = await client.get("/scores/panel", params={"window": "7d", "segment": "store:paris-1"})
    assert panel.status_code == 200 and "<html" not in panel.text  # the part a live update swaps in
    assert panel.text.lstrip().startswith("<section")


async def test_a_store_manager_reads_their_store_only_whatever_the_address(site: Site) -> None:
    client = await signed_in(site, "paris@example.com")
    home = await client.get("/scores")  # no segment: the whole is not theirs, their store is
    assert (
        home.status_code == 303
        and home.headers["location"] == "/scores?metric=csat&window=30d&segment=store%3Aparis-1"
    )
    assert (await client.get("/scores", params={"segment": "store:paris-1"})).status_code == 200
    for path in ("/scores", "/scores/panel", "/live/scores"):
        other = await client.get(path, params={"segment": "store:lyon-2"})
        assert other.status_code == 404, path
    assert (await client.get("/scores", params={"segment": "channel:chat"})).status_code == 404
    for path in ("/segments", "/segments.csv"):
        drill = await client.get(path, params={"by": "channel", "segment": "store:lyon-2"})
        assert drill.status_code == 404, path
    ranking = await client.get("/segments.csv", params={"by": "store", "window": "7d"})
    values = [row["value"] for row in csv.DictReader(io.StringIO(ranking.text.lstrip("\ufeff")))]
    assert values == ["paris-1"]  # lyon-2 is in the scorer's breakdown, not for this person
    page = await client.get("/segments", params={"by": "store", "window": "7d"})
    assert "lyon-2" not in page.text and "not compared with the whole" in page.text
    nobody = await signed_in(site, "nobody@example.com")
    assert (await nobody.get("/scores")).status_code == 403


async def test_the_ranking_marks_what_is_significantly_below_and_exports_it(site: Site) -> None:
    client = await signed_in(site, "manager@example.com")
    params = {"by": "store", "window": "7d"}
    page = await client.get("/segments", params=params)
    assert page.status_code == 200, page.text[:500]
    rows = re.findall(r'<tr class="(below|)" data-value="([^"]+)"', page.text)
    # the whole is 68.3 % (712 of 1,042); lyon-2's 28.6 % of 42 has its interval far below it
    assert rows == [("", "paris-1"), ("below", "lyon-2")]
    exported = await client.get("/segments.csv", params=params)
    assert exported.headers["content-type"] == "text/csv; charset=utf-8"
    assert 'filename="segments-store-csat-7d.csv"' in exported.headers["content-disposition"]
    assert exported.content.startswith(b"\xef\xbb\xbf")
    lines = list(csv.DictReader(io.StringIO(exported.content.decode("utf-8-sig"))))
    assert [(r["rank"], r["value"], r["score"], r["responses"], r["below_whole"]) for r in lines] == [
        ("1", "paris-1", "70", "1000", "false"),
        ("2", "lyon-2", "28.57", "42", "true"),
    ]
    assert lines[0]["whole_score"] == "68.33"
    # the heat map: store x channel, colour and text in each cell
    assert '<table class="heatmap">' in page.text and 'class="heat-3"' in page.text
    # drill-down: lyon-2's channels, compared with lyon-2
    drill = await client.get("/segments", params={"by": "channel", "segment": "store:lyon-2", "window": "7d"})
    assert re.findall(r'data-value="([^"]+)"', drill.text) == ["chat", "web"]
    assert "store:lyon-2 as a whole" in drill.text


async def test_the_ranking_pages_through_the_scorer_and_keeps_the_address(site: Site) -> None:
    client = await signed_in(site, "manager@example.com")
    params = {"by": "store", "window": "7d", "limit": "1"}
    first = await client.get("/segments", params=params)
    assert re.findall(r'data-value="([^"]+)" data-score', first.text) == ["paris-1"]
    assert "1 to 1 of 2." in first.text
    nxt = re.search(r'<a href="/segments\?([^"]+)" rel="next">Next 1</a>', first.text)
    assert nxt is not None and 'rel="prev"' not in first.text
    assert "limit=1" in nxt.group(1) and "page=2" in nxt.group(1) and "window=7d" in nxt.group(1)
    second = await client.get("/segments?" + nxt.group(1).replace("&amp;", "&"))
    assert re.findall(r'data-value="([^"]+)" data-score', second.text) == ["lyon-2"]
    assert "2 to 2 of 2." in second.text and 'rel="prev"' in second.text and 'rel="next"' not in second.text
    # the rank is the place in the whole ranking; the CSV is the page shown
    exported = await client.get("/segments.csv", params={**params, "page": "2"})
    lines = list(csv.DictReader(io.StringIO(exported.content.decode("utf-8-sig"))))
    assert [(r["rank"], r["value"]) for r in lines] == [("2", "lyon-2")]
    past = await client.get("/segments", params={**params, "page": "3"})
    assert past.status_code == 200 and "past the end of the ranking (2 rows)" in past.text
    for bad in ("0", "100001"):
        assert (await client.get("/segments", params={**params, "page": bad})).status_code == 400
    fr = await client.get("/segments", params={**params, "lang": "fr"})
    assert "1 à 1 sur 2." in fr.text and "1 suivants" in fr.text
