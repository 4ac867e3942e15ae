"""The Customer view in a real browser (Debian chromium via Playwright) on the real stack: from an alert
to its customer's page, whose history chart has its text; axe-core finds no serious or critical
violation on the customer page and the search page at 390 px and 1280 px; no Content-Security-Policy
violation. An admin sees the account's health, exports the customer's data (the file read back) and
erases the customer (the id typed wrong first, then right; the status until every service is done;
the customer and their comment gone), axe on the erase form and the status page too. Screenshots go to
``$CSAT_TEST_ARTEFACTS`` (docs/images/console/).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, expect

from devstack.ports import free_port
from shared.identity.scopes import Role
from shared.topics import Topics
from tests.helpers import produce, serving, wait_for
from tests.infra import Infra
from tests.integration.alerts_stack import ACCOUNT_A, COMMENT_A, CSM_A, MANAGER, people, seed
from tests.integration.rules_stack import ADMIN_KEY, rules_stack
from tests.integration.test_actions import rating
from tests.integration.test_console_browser import (  # noqa: F401 - fixtures used by name
    PHONE,
    artefacts,
    axe,
    browser,
    local_sign_in,
    overflow,
    watched_page,
)

pytestmark = pytest.mark.integration

ADMIN = "ada@example.com"


class Site:
    def __init__(self, url: str, alert_id: str) -> None:
        self.url = url
        self.alert_id = alert_id


@pytest.fixture
async def site(infra: Infra, database_url: str, topics: Topics) -> AsyncIterator[Site]:
    port = free_port()
    async with rules_stack(
        infra,
        database_url,
        topics,
        serve_console=True,
        with_scorer=True,
        with_collector=True,
        cookie_secure=False,  # plain http on loopback
        public_url=f"http://127.0.0.1:{port}",
    ) as stack:
        await people(stack, with_accounts=True)
        await stack.person(ADMIN, Role.ADMIN, "Ada Admin")
        now = datetime.now(UTC)
        await produce(
            infra.bootstrap,
            [
                rating(
                    f"a{i}", s, topic=topics.ratings, customer="cus-a", occurred_at=now - timedelta(days=d)
                )
                for i, (s, d) in enumerate(((5, 40), (4, 30), (5, 20), (3, 10)))
            ],
        )
        seeded = await seed(stack, infra, topics)
        scorer = stack.bridge.routes["scorer.internal"]

        async def stored() -> Any:
            async with httpx.AsyncClient(transport=scorer, base_url="http://scorer.internal") as client:
                answer = await client.get("/v1/customers/cus-a/history", headers=ADMIN_KEY)
                return answer.json().get("ratings", [])

        await wait_for(stored, until=lambda r: len(r) == 5, timeout_s=60)
        actions = stack.bridge.routes["actions.internal"]

        async def health() -> int:
            async with httpx.AsyncClient(transport=actions, base_url="http://actions.internal") as client:
                answer = await client.get(f"/v1/accounts/{ACCOUNT_A}/health", headers=ADMIN_KEY)
                return answer.status_code

        await wait_for(health, until=lambda s: s == 200, timeout_s=60)
        async with serving(stack.console, port=port) as url:
            yield Site(url, str(seeded["a"]["alert_id"]))


async def test_from_an_alert_to_its_customer_and_axe_on_the_customer_pages(
    site: Site,
    browser: Browser,  # noqa: F811 - the console browser test's fixture, by name
    artefacts: Path,  # noqa: F811 - the console browser test's fixture, by name
) -> None:
    context = await browser.new_context(locale="en-GB")
    page, problems = await watched_page(context, site.url)
    await local_sign_in(page, site.url, CSM_A)
    await page.goto(f"{site.url}/alerts/{site.alert_id}")
    await page.get_by_role("link", name="cus-a").click()
    await page.wait_for_url(f"{site.url}/customers/cus-a")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Customer cus-a")
    chart = page.get_by_role("img", name="Scores over time, oldest first: 5/1-5, 4/1-5, 5/1-5, 3/1-5, 2/1-5")
    await expect(chart).to_be_visible()
    await expect(page.locator("[data-fact=trend]")).to_contain_text("Declining")
    assert problems == []
    await context.close()

    context = await browser.new_context(viewport=PHONE, bypass_csp=True, locale="en-GB")
    page = await context.new_page()
    await local_sign_in(page, site.url, MANAGER)
    found: dict[str, list[dict[str, Any]]] = {}
    for name, address in (
        ("customer", "/customers/cus-a"),
        ("customer-fr", "/customers/cus-a?lang=fr"),
        ("customers", "/customers"),
    ):
        await page.goto(site.url + address)
        assert await overflow(page) == 0, name
        await page.screenshot(path=str(artefacts / f"{name}-390.png"), full_page=True)
        found[name] = await axe(page)
        await page.set_viewport_size({"width": 1280, "height": 900})
        await page.screenshot(path=str(artefacts / f"{name}-1280.png"), full_page=True)
        found[f"{name}-1280"] = await axe(page)
        await page.set_viewport_size(PHONE)
    await context.close()
    print("FIGURES customer axe serious/critical:", json.dumps({k: len(v) for k, v in found.items()}))
    assert found == {k: [] for k in found}


async def test_an_admin_sees_the_health_exports_then_erases_the_customer(
    site: Site,
    browser: Browser,  # noqa: F811 - the console browser test's fixture, by name
    artefacts: Path,  # noqa: F811 - the console browser test's fixture, by name
) -> None:
    context = await browser.new_context(locale="en-GB", accept_downloads=True, bypass_csp=True)
    page = await context.new_page()
    await local_sign_in(page, site.url, ADMIN)
    await page.goto(f"{site.url}/customers/cus-a")
    await expect(page.locator("p[data-fact=health]")).to_contain_text(f"Account {ACCOUNT_A}:")
    await expect(page.locator("p[data-fact=health]")).to_contain_text("out of 100")
    await expect(page.get_by_text(COMMENT_A)).to_be_visible()
    found = {"customer-admin": await axe(page)}
    await page.screenshot(path=str(artefacts / "customer-admin-1280.png"), full_page=True)

    # export: the download is the console's GDPR document, read back
    async with page.expect_download() as info:
        await page.get_by_role("button", name="Export this customer's data").click()
    download = await info.value
    document = json.loads(await asyncio.to_thread(Path(await download.path()).read_text))
    assert document["format"] == "csat-customer-export/1" and document["customer_id"] == "cus-a"
    assert set(document["services"]) == {"collector", "scorer", "actions", "notifier"}
    assert COMMENT_A in json.dumps(document, ensure_ascii=False)

    # erase: the id typed wrong is refused at the field, nothing erased; typed right, it goes
    await page.get_by_role("link", name="Erase this customer…").click()
    field = page.get_by_label("Type the customer id (cus-a) to confirm")
    await field.fill("cus-b")
    await page.get_by_role("button", name="Erase for good").click()
    await expect(page.locator("#confirm-error")).to_contain_text("That is not the customer id")
    await expect(field).to_have_attribute("aria-invalid", "true")
    found["erase-form"] = await axe(page)
    await page.screenshot(path=str(artefacts / "customer-erase-1280.png"), full_page=True)
    await field.fill("cus-a")
    await page.get_by_role("button", name="Erase for good").click()
    await page.wait_for_url("**/customers/cus-a/erasures/er_*")
    done = page.locator("[data-fact=erasure-complete]")
    await expect(done).to_have_text("Complete: every service has erased the customer.", timeout=60_000)
    for service in ("collector", "scorer", "actions", "notifier"):
        await expect(page.locator(f"tr[data-service={service}] td").nth(1)).to_have_text("Done")
    found["erasure"] = await axe(page)
    await page.screenshot(path=str(artefacts / "customer-erasure-1280.png"), full_page=True)

    # the customer is gone: no page, no comment; an export now holds nothing of them
    answer = await page.goto(f"{site.url}/customers/cus-a")
    assert answer is not None and answer.status == 404
    assert COMMENT_A not in await page.content()
    await page.goto(f"{site.url}/customers/cus-a")
    await context.close()
    print("FIGURES customer admin axe serious/critical:", json.dumps({k: len(v) for k, v in found.items()}))
    assert found == {k: [] for k in found}
