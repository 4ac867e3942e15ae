"""The <csat-rating> widget in a real browser (Debian chromium via Playwright) against a served collector:
ratings, and in-app survey invitations shown to the proven customer only.

Chromium comes from apt (`make chromium`, run by `make test`); Playwright never downloads a browser.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from playwright.async_api import Browser, Page, async_playwright

from services.collector.bootstrap import create_app
from services.collector.links import EmailLink, LinkSigner
from services.collector.settings import CollectorSettings
from shared.events import KeyKind, RatingSubmitted
from shared.identity.sourcekeys import sign_customer
from shared.topics import Topics
from tests.helpers import make_settings, read_events, read_to_end, serving
from tests.infra import Infra

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("CSAT_CHROMIUM", "/usr/bin/chromium")
ADMIN = {"Authorization": "Bearer dev-admin-key"}


def require_chromium() -> None:
    """A missing browser is a failure, not a skip: CI installs it with `make chromium`."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make chromium` (apt-get install chromium)")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    require_chromium()
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            await b.close()


def page_app(collector: str, key: str, proof: str = "") -> FastAPI:
    """A customer's website on another origin, embedding the widget from the collector; its server
    vouches for the customer id with ``proof``."""
    site = FastAPI()

    @site.get("/")
    async def index() -> HTMLResponse:
        return HTMLResponse(
            f"""<!doctype html><html lang="en"><body>
            <script src="{collector}/widget.js" defer></script>
            <csat-rating id="w" key="{key}" customer-id="cus-web-1" customer-proof="{proof}"
              metric="nps" comment="none"
              question="Recommend us?" segment='{{"channel":"web"}}' rating-id="web-nps-1"></csat-rating>
            <script>
              document.addEventListener("csat-submitted", e => document.title = "ok " + e.detail.rating_id);
              document.addEventListener("csat-error", e => document.title = "error " + e.detail.status);
            </script></body></html>"""
        )

    return site


async def new_source(client: httpx.AsyncClient, source_id: str, origins: list[str]) -> str:
    r = await client.post(
        "/v1/sources",
        json={"source_id": source_id, "name": source_id, "allowed_origins": origins},
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text
    key: str = r.json()["key"]["key"]
    return key


async def wait_title(page: Page, prefix: str, timeout_ms: int = 20_000) -> str:
    await page.wait_for_function(f"document.title.startsWith({prefix!r})", timeout=timeout_ms)
    title: str = await page.title()
    return title


def collector_settings(infra: Infra, topics: Topics, database_url: str, **kw: Any) -> CollectorSettings:
    return make_settings(
        CollectorSettings,
        kafka_bootstrap=infra.bootstrap,
        topic_prefix=topics.prefix,
        database_url=database_url,
        require_api_key=True,
        **kw,
    )


async def test_demo_page_widget_posts_a_rating_with_a_comment(
    infra: Infra, topics: Topics, database_url: str, browser: Browser
) -> None:
    from services.collector.provision import ensure_demo_source

    key = await ensure_demo_source(database_url, origins=[])
    app = create_app(collector_settings(infra, topics, database_url, demo_widget_key=key))
    async with serving(app) as url:
        page = await browser.new_page()
        await page.goto(f"{url}/demo")
        await page.locator("#csat button[aria-label^='2/5']").click()
        await page.locator("#csat textarea").fill("The parcel arrived late")
        await page.locator("#csat button.send").click()
        await page.wait_for_selector("#csat[data-state='submitted']", timeout=20_000)
        assert "Thank you" in await page.locator("#csat .msg").inner_text()
        log = await page.locator("#log").inner_text()
        assert "submitted" in log
        await page.close()
    (event,) = await read_events(infra.bootstrap, topics.ratings, count=1)
    data = event.data
    assert isinstance(data, RatingSubmitted)
    assert (data.score, data.sentiment.value, data.source) == (2, "negative", "demo")
    assert data.comment == "The parcel arrived late" and data.customer.id == "cus_demo"
    assert data.segment == {"channel": "web", "store": "demo"} and data.touchpoint == "web_demo"
    # The demo page plays the site's server: it vouches for cus_demo, so the answer is that customer's.
    assert data.provenance is not None and data.provenance.key_kind is KeyKind.PUBLISHABLE
    assert data.customer_verified


async def test_widget_on_an_allowed_origin_posts_cross_origin_and_others_are_blocked(
    infra: Infra, topics: Topics, database_url: str, browser: Browser
) -> None:
    app = create_app(collector_settings(infra, topics, database_url, key_cache_s=0))
    # the site's origin is only known once it is served: the source's origins are set afterwards
    async with serving(app) as collector, httpx.AsyncClient(base_url=collector) as admin:
        site_key = await new_source(admin, "site", [])
        blog_key = await new_source(admin, "blog", ["https://blog.example.com"])
        assert site_key.startswith("pk_")  # the widget carries a publishable key
        issued = await admin.post("/v1/sources/site/identity-secret", headers=ADMIN)
        proof = sign_customer(
            identity_secret=issued.json()["identity_secret"],
            customer_id="cus-web-1",
            expires_at=int(time.time()) + 600,
        )
        async with serving(page_app(collector, site_key, proof)) as site:
            patched = await admin.patch("/v1/sources/site", json={"allowed_origins": [site]}, headers=ADMIN)
            assert patched.status_code == 200
            page = await browser.new_page()
            await page.goto(site)
            await page.locator("#w button[aria-label='9']").click()
            assert await wait_title(page, "ok") == "ok web-nps-1"
            await page.close()
        async with serving(page_app(collector, blog_key)) as other_site:
            page = await browser.new_page()
            await page.goto(other_site)
            await page.locator("#w button[aria-label='3']").click()
            # the blog's key is not allowed from this origin: no CORS headers, nothing recorded
            assert (await wait_title(page, "error", timeout_ms=30_000)).startswith("error")
            await page.close()
    records = await read_to_end(infra.bootstrap, topics.ratings)  # answered after the broker's ack
    assert [dict(r.headers)["ce_id"] for r in records] == [b"web-nps-1"]
    (event,) = await read_events(infra.bootstrap, topics.ratings, count=1)
    assert isinstance(event.data, RatingSubmitted)
    assert (event.data.metric.value, event.data.score, event.data.nps_class, event.data.source) == (
        "nps",
        9,
        "promoter",
        "site",
    )
    assert event.data.customer_verified and event.data.provenance is not None
    assert event.data.provenance.key_kind is KeyKind.PUBLISHABLE


def invitation_site(collector: str, key: str, customer: str, proof: str) -> FastAPI:
    """A customer's website showing the widget in invitation mode: it asks whether an in-app survey
    waits for this (proven) customer, and shows nothing when none does."""
    site = FastAPI()

    @site.get("/")
    async def index() -> HTMLResponse:
        return HTMLResponse(
            f"""<!doctype html><html lang="en"><body>
            <script src="{collector}/widget.js" defer></script>
            <csat-rating id="w" invitation key="{key}" customer-id="{customer}" customer-proof="{proof}"
              comment="none"></csat-rating>
            <script>
              document.addEventListener("csat-submitted", e => document.title = "ok " + e.detail.survey_id);
              document.addEventListener("csat-error", e => document.title = "error " + e.detail.status);
            </script></body></html>"""
        )

    return site


async def test_widget_shows_the_customers_in_app_invitation_in_french_and_answers_it_once(
    infra: Infra, topics: Topics, database_url: str, browser: Browser
) -> None:
    cfg = collector_settings(infra, topics, database_url, key_cache_s=0)
    invitation = "8e0c0a4e-3333-5444-8555-a66677778888"
    link = EmailLink(
        survey_id=invitation,
        customer_id="cus-app-1",
        metric="csat",
        scale="1-5",
        expires_at=(datetime.now(UTC) + timedelta(days=7)).replace(microsecond=0),
        locale="fr",
        question="Êtes-vous satisfait de votre livraison ?",
        reclick_window_s=0,
    )
    token = LinkSigner(secret=cfg.signing_secret.get_secret_value()).sign(link)  # as actions signs it
    async with serving(create_app(cfg)) as collector, httpx.AsyncClient(base_url=collector) as admin:
        key = await new_source(admin, "app", [])
        registered = await admin.post(
            "/v1/inapp-surveys",
            json={"customer": {"id": "cus-app-1"}, "answer_link": f"{collector}/v1/email/{token}"},
            headers=ADMIN,
        )
        assert registered.status_code == 201, registered.text
        secret = (await admin.post("/v1/sources/app/identity-secret", headers=ADMIN)).json()[
            "identity_secret"
        ]

        def proof(customer: str) -> str:
            return sign_customer(
                identity_secret=secret, customer_id=customer, expires_at=int(time.time()) + 600
            )

        async with serving(invitation_site(collector, key, "cus-app-1", proof("cus-app-1"))) as site:
            patched = await admin.patch("/v1/sources/app", json={"allowed_origins": [site]}, headers=ADMIN)
            assert patched.status_code == 200
            page = await browser.new_page()
            await page.goto(site)
            await page.wait_for_selector("#w[data-state='asking']", timeout=20_000)
            assert await page.locator("#w .q").inner_text() == "Êtes-vous satisfait de votre livraison ?"
            await page.locator("#w button[aria-label^='4/5']").click()
            assert await wait_title(page, "ok") == f"ok {invitation}"
            assert "Merci" in await page.locator("#w .msg").inner_text()
            # The next visit: answered, nothing shown.
            await page.goto(site)
            await page.wait_for_selector("#w[data-state='none']", state="attached", timeout=20_000)
            assert await page.locator("#w .q").count() == 0
            await page.close()
        # Someone typing the customer id beside the public key, with no valid proof, sees nothing.
        async with serving(invitation_site(collector, key, "cus-app-1", proof("cus-other"))) as forged:
            await admin.patch("/v1/sources/app", json={"allowed_origins": [forged]}, headers=ADMIN)
            page = await browser.new_page()
            await page.goto(forged)
            assert await wait_title(page, "error") == "error 403"
            assert await page.locator("#w .q").count() == 0
            await page.close()
    (event,) = await read_events(infra.bootstrap, topics.ratings, count=1)
    assert isinstance(event.data, RatingSubmitted)
    assert (event.data.rating_id, event.data.survey_id, event.data.score) == (link.rating_id, invitation, 4)
