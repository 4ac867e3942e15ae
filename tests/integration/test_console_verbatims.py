"""The Verbatims view on the real stack: the scorer's ``GET /v1/verbatims`` on PostgreSQL (known commented
ratings published on the broker) and the console in front. The API's filters, paging, themes and their
trend; the page's figures equal the API's; the CSV is the page's comments; a store manager reads only
their store's comments, whatever the address says; the refusals (401/403 at the API, 404 outside grants,
400 naming the field).
"""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from shared.identity.scopes import Role, Scope
from shared.topics import Topics
from tests.credentials import ADMIN, bearer, person
from tests.infra import Infra
from tests.integration.console_stack import signed_in
from tests.integration.verbatims_stack import COMMENTS, VerbatimsStack, verbatims_stack

pytestmark = pytest.mark.integration


@pytest.fixture
async def stack(infra: Infra, database_url: str, topics: Topics) -> AsyncIterator[VerbatimsStack]:
    async with verbatims_stack(infra, database_url, topics) as s:
        yield s


def ids(body: Any) -> list[str]:
    return [i["rating_id"] for i in body["items"]]


def shown(page: httpx.Response) -> list[str]:
    return re.findall(r'<li class="verbatim" data-rating-id="([^"]+)"', page.text)


def text_of(page: httpx.Response) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page.text)))


async def test_the_api_filters_pages_and_counts_themes(stack: VerbatimsStack) -> None:
    paris = await stack.api(segment="store:paris-1")
    # newest first, only commented ratings, within 30 days (v-p7 is 40 days old), only paris-1
    assert ids(paris) == ["v-p1", "v-p2", "v-p3", "v-p4", "v-p5", "v-p6"]
    assert paris["total"] == 6 and paris["scanned"] == 6 and paris["truncated"] is False
    p1 = paris["items"][0]
    assert p1["customer_id"] == "cus-v-p1" and p1["score"] == 1 and p1["segment"] == {"store": "paris-1"}
    assert p1["language"] == "fr" and set(p1["themes"]) >= {"delivery_time", "product_quality"}
    assert p1["sentiment"] == "negative"
    assert next(i for i in paris["items"] if i["rating_id"] == "v-p4")["language"] == "en"
    themes = {t["theme"]: t for t in paris["themes"]}
    delivery = themes["delivery_time"]
    # v-p1, v-p4, v-p6 this period; v-p7 the 30 days before
    assert (delivery["count"], delivery["previous"], delivery["delta"]) == (3, 1, 2)
    assert delivery["share"] == 0.5 and sum(s["count"] for s in delivery["series"]) == 3
    assert len(delivery["series"]) == 30 and paris["step"] == "day"
    # filters: theme, score, language, text, sentiment; theme counts ignore the theme picked
    by_theme = await stack.api(segment="store:paris-1", theme="delivery_time")
    assert ids(by_theme) == ["v-p1", "v-p4", "v-p6"]
    assert {t["theme"]: t["count"] for t in by_theme["themes"]} == {
        t["theme"]: t["count"] for t in paris["themes"]
    }
    assert ids(await stack.api(segment="store:paris-1", score_max=2)) == ["v-p1", "v-p2", "v-p4", "v-p6"]
    assert ids(await stack.api(segment="store:paris-1", score_min=4)) == ["v-p3", "v-p5"]
    assert ids(await stack.api(segment="store:paris-1", language="en")) == ["v-p4", "v-p5"]
    assert ids(await stack.api(segment="store:paris-1", q="COLIS")) == ["v-p1", "v-p6"]
    assert ids(await stack.api(segment="store:paris-1", q="50%_")) == []  # LIKE characters are text
    positive = await stack.api(segment="store:paris-1", sentiment="positive")
    assert "v-p3" in ids(positive) and "v-p1" not in ids(positive)
    # paging
    page2 = await stack.api(segment="store:paris-1", per_page=4, page=2)
    assert ids(page2) == ["v-p5", "v-p6"] and page2["pages"] == 2 and page2["total"] == 6
    # dates: from/to are whole UTC days, "to" included; the whole platform without a segment
    wide = await stack.api(window="90d")
    assert len(ids(wide)) == len(COMMENTS)


async def test_the_api_refuses_without_a_credential_and_names_a_bad_field(stack: VerbatimsStack) -> None:
    async with httpx.AsyncClient(base_url=stack.scorer, timeout=30) as client:
        assert (await client.get("/v1/verbatims")).status_code == 401
        wrong = await client.get("/v1/verbatims", headers={"Authorization": "Bearer not-the-key"})
        assert wrong.status_code == 401  # not a credential at all (the Authenticator's rule)
    for params, field in (
        ({"theme": "weather"}, "theme"),
        ({"sentiment": "angry"}, "sentiment"),
        ({"language": "de"}, "language"),
        ({"window": "forever"}, "window"),
        ({"segment": "paris"}, "segment"),
        ({"score_min": 4, "score_max": 2}, "score_min"),
        ({"from": "2026-12-01", "to": "2026-11-01"}, "from"),
    ):
        async with httpx.AsyncClient(base_url=stack.scorer, timeout=30) as client:
            answer = await client.get("/v1/verbatims", params=params, headers=ADMIN)
        assert answer.status_code == 422, params
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert answer.json()["errors"][0]["field"] == field, params


async def test_the_page_shows_what_the_api_says_and_the_csv_is_the_page(
    stack: VerbatimsStack,
) -> None:
    maya = await signed_in(stack.console, "maya@example.com")
    try:
        query = "segment=store:paris-1&theme=delivery_time"
        page = await maya.get(f"/verbatims?{query}")
        assert page.status_code == 200
        api = await stack.api(segment="store:paris-1", theme="delivery_time")
        assert shown(page) == ids(api)
        for t in api["themes"]:
            cell = re.search(rf'data-theme-count="{t["theme"]}">([^<]+)<', page.text)
            assert cell and cell.group(1) == f"{t['count']:,}", t
        body = text_of(page)
        assert "3 comment(s), newest first; page 1 of 1." in body
        assert "Livraison en retard de trois jours et colis abîmé, très déçu" in body
        assert 'role="img" aria-label="Comments per day: ' in page.text  # the trend's text alternative
        assert 'aria-current="true">Delivery time' in page.text
        exported = await maya.get(f"/verbatims.csv?{query}")
        assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
        assert exported.content.startswith("\ufeff".encode())
        rows = list(csv.DictReader(io.StringIO(exported.content.decode("utf-8-sig"))))
        assert [r["rating_id"] for r in rows] == ids(api)
        assert rows[0]["comment"] == api["items"][0]["comment"] and rows[0]["segment"] == "store:paris-1"
        injected = next(r for r in rows if r["rating_id"] == "v-p6")
        assert injected["comment"].startswith("'=HYPERLINK")  # never run by a spreadsheet
        fr_page = await maya.get(f"/verbatims?{query}&lang=fr")
        fr = text_of(fr_page)
        assert "3 commentaire(s), les plus récents d'abord ; page 1 sur 1." in fr
        assert "Délais de livraison" in fr and "Commentaires par jour : " in html.unescape(fr_page.text)
        assert (await maya.get("/verbatims?sentiment=angry")).status_code == 400
        assert (await maya.get("/verbatims?score_min=x")).status_code == 400
    finally:
        await maya.aclose()
    assert all(path == "/v1/verbatims" for path, _ in stack.transport.calls)


async def test_a_store_manager_reads_only_their_store_whatever_the_address(stack: VerbatimsStack) -> None:
    bo = await signed_in(stack.console, "bo@example.com")  # viewer, store:paris-1
    try:
        landing = await bo.get("/verbatims?theme=delivery_time")
        assert landing.status_code == 303
        assert landing.headers["location"] == "/verbatims?segment=store%3Aparis-1&theme=delivery_time"
        page = await bo.get(landing.headers["location"])
        assert shown(page) == ["v-p1", "v-p4", "v-p6"]
        before = len(stack.transport.calls)
        for address in (
            "/verbatims?segment=store:lyon-2",
            "/verbatims.csv?segment=store:lyon-2",
            "/verbatims?segment=channel:web",
            "/verbatims?segment=store:paris-1&segment=channel:web&segment=store:lyon-2",
        ):
            answer = await bo.get(address)
            assert answer.status_code in (404, 400), address
            assert "Lyon:" not in answer.text
        assert len(stack.transport.calls) == before  # refused before the scorer was asked
        csv_redirect = await bo.get("/verbatims.csv")
        assert csv_redirect.status_code == 303
        assert (await bo.get("/alerts")).status_code == 403  # a viewer has no inbox
    finally:
        await bo.aclose()


async def test_the_scorer_applies_the_callers_scope_and_segment_grants_itself(stack: VerbatimsStack) -> None:
    """``GET /v1/verbatims`` on its own (no console): 401 without a credential, 403 without
    ``verbatims:read``, 404 for a segment outside the grants, and only granted comments otherwise."""
    store_manager = bearer(person(Role.VIEWER, subject="u-bo", segments=["store:paris-1"]))
    scores_only = bearer(person(Role.VIEWER, subject="u-so", scopes=[Scope.SCORES_READ]))
    async with httpx.AsyncClient(base_url=stack.scorer, timeout=30) as client:
        assert (await client.get("/v1/verbatims")).status_code == 401
        assert (await client.get("/v1/verbatims", headers=scores_only)).status_code == 403
        outside = await client.get("/v1/verbatims", params={"segment": "store:lyon-2"}, headers=store_manager)
        assert outside.status_code == 404 and "Lyon:" not in outside.text
        # the whole platform is outside a store's grant, as for the scores
        whole = await client.get("/v1/verbatims", headers=store_manager)
        assert whole.status_code == 404 and "Lyon:" not in whole.text
        mine = await client.get(
            "/v1/verbatims", params={"segment": "store:paris-1", "per_page": 200}, headers=store_manager
        )
        assert mine.status_code == 200, mine.text
        assert set(ids(mine.json())) == {
            rid for rid, _, days, store, _ in COMMENTS if store == "paris-1" and days < 30
        }
        everyone = await client.get("/v1/verbatims", params={"per_page": 200}, headers=ADMIN)
        assert {"v-l1", "v-l2"} <= set(ids(everyone.json()))
