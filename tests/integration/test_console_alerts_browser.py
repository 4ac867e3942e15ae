"""The Alerts view in a real browser (Debian chromium via Playwright) on the real stack: a CSM works the
inbox with the keyboard only (j/k and the arrows move a visible focus, Enter opens), acknowledges and
resolves an alert with a note, and sees a new alert arrive without reloading; a manager walks to the
second page of 120 alerts by the keyboard (End, Tab to "Next alerts", Enter); axe-core finds no
serious or critical violation on the inbox, its second page and an alert at 390 px and 1280 px; no
Content-Security-Policy violation. Screenshots go to ``$CSAT_TEST_ARTEFACTS`` (docs/images/console/) or
a temporary directory.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from devstack.ports import free_port
from shared.topics import Topics
from tests.helpers import serving
from tests.infra import Infra
from tests.integration.alerts_stack import CSM_A, MANAGER, alerts_of, customer, low_rating, people, seed
from tests.integration.rules_stack import RulesStack, rules_stack
from tests.integration.test_console_alerts_pages import _alert as paged_alert
from tests.integration.test_console_alerts_pages import insert
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


class Site:
    def __init__(
        self, url: str, stack: RulesStack, infra: Infra, topics: Topics, ids: dict[str, str]
    ) -> None:
        self.url = url
        self.stack = stack
        self.infra = infra
        self.topics = topics
        self.ids = ids


@pytest.fixture
async def site(infra: Infra, database_url: str, topics: Topics) -> AsyncIterator[Site]:
    port = free_port()
    async with rules_stack(
        infra,
        database_url,
        topics,
        serve_console=True,
        cookie_secure=False,  # plain http on loopback
        public_url=f"http://127.0.0.1:{port}",
        alerts_poll_s=1,
    ) as stack:
        await people(stack)
        seeded = await seed(stack, infra, topics)
        # a second alert of Carla's, older and without SLA: the inbox has two rows to move between
        await customer(stack, "cus-d", owner_email=CSM_A, tier="standard")
        d = await low_rating(stack, infra, topics, "r-d1", "cus-d", 2, comment="Pas de réponse au chat")
        ids = {"a": str(seeded["a"]["alert_id"]), "b": str(seeded["b"]["alert_id"]), "d": str(d["alert_id"])}
        async with serving(stack.console, port=port) as url:
            yield Site(url, stack, infra, topics, ids)


async def focused_alert(page: Page) -> str | None:
    found: str | None = await page.evaluate(
        "document.activeElement && document.activeElement.closest('tr[data-alert-id]') "
        "? document.activeElement.closest('tr[data-alert-id]').dataset.alertId : null"
    )
    return found


async def focus_ring(page: Page) -> str:
    """The focused element's outline as drawn (a visible focus: not none, not zero wide)."""
    ring: str = await page.evaluate(
        "(() => { const s = getComputedStyle(document.activeElement); "
        "return s.outlineStyle + ' ' + s.outlineWidth; })()"
    )
    return ring


async def test_keyboard_inbox_acknowledge_resolve_and_a_new_alert_without_reload(
    site: Site,
    browser: Browser,  # noqa: F811 - the console browser test's fixture, by name
) -> None:
    context = await browser.new_context(locale="en-GB")
    page, problems = await watched_page(context, site.url)
    await local_sign_in(page, site.url, CSM_A)
    await page.goto(f"{site.url}/alerts")
    rows = page.locator("#inbox tr[data-alert-id]")
    await expect(rows).to_have_count(2)
    # the strategic account's alert (high, 24 h SLA) comes first, then the normal one
    assert [await r.get_attribute("data-alert-id") for r in await rows.all()] == [
        site.ids["a"],
        site.ids["d"],
    ]
    # keyboard only: j moves to the first alert, j to the next, k back, ArrowDown again; focus is visible
    await page.keyboard.press("j")
    assert await focused_alert(page) == site.ids["a"]
    ring = await focus_ring(page)
    assert not ring.startswith("none") and not ring.endswith(" 0px"), ring
    await page.keyboard.press("j")
    assert await focused_alert(page) == site.ids["d"]
    await page.keyboard.press("k")
    assert await focused_alert(page) == site.ids["a"]
    await page.keyboard.press("ArrowDown")
    assert await focused_alert(page) == site.ids["d"]
    await page.keyboard.press("ArrowUp")
    await page.keyboard.press("Enter")
    await page.wait_for_url(f"{site.url}/alerts/{site.ids['a']}")
    await expect(page.locator("blockquote.comment")).to_contain_text(
        "Livraison en retard de 3 jours <b>et</b>"
    )
    # acknowledge, then resolve with a note
    await page.get_by_role("button", name="Acknowledge").click()
    await page.wait_for_url(f"{site.url}/alerts/{site.ids['a']}?done=ack")
    await expect(page.get_by_role("status")).to_have_text("Acknowledged: the escalation is stopped.")
    await page.get_by_label("Resolution note (what was done)").fill("Called back, refund sent.")
    await page.get_by_role("button", name="Resolve").click()
    await page.wait_for_url(f"{site.url}/alerts/{site.ids['a']}?done=resolve")
    await expect(page.get_by_role("status")).to_have_text("Resolved.")
    stored = {a["alert_id"]: a for a in await alerts_of(site.stack)}[site.ids["a"]]
    assert stored["status"] == "resolved" and stored["note"] == "Called back, refund sent."
    # back in the inbox: one row left; a new low rating of Carla's customer appears without a reload
    await page.get_by_role("link", name="Back to the alerts").click()
    await expect(rows).to_have_count(1)
    await page.keyboard.press("j")
    assert await focused_alert(page) == site.ids["d"]
    await page.evaluate("window.__notReloaded = true")
    await customer(site.stack, "cus-e", owner_email=CSM_A, tier="enterprise")
    new = await low_rating(site.stack, site.infra, site.topics, "r-e1", "cus-e", 1, comment="Tout est cassé")
    await expect(page.locator(f'#inbox tr[data-alert-id="{new["alert_id"]}"]')).to_be_visible(timeout=30_000)
    await expect(page.locator("#inbox-live")).to_have_text("1 new alert(s).")
    assert await page.evaluate("window.__notReloaded === true")  # the same page, not a reload
    assert await focused_alert(page) == site.ids["d"]  # the focus stayed on the alert it was on
    await expect(page.locator(f'#inbox tr[data-alert-id="{new["alert_id"]}"] .new-mark')).to_have_text("New")
    assert problems == []  # no Content-Security-Policy violation, no script error
    await context.close()


async def test_alert_pages_at_390_px_and_desktop_pass_axe(
    site: Site,
    browser: Browser,  # noqa: F811 - the console browser test's fixture, by name
    artefacts: Path,  # noqa: F811 - the console browser test's fixture, by name
) -> None:
    # axe is injected as a script: this context alone bypasses the CSP that would (rightly) refuse it
    context = await browser.new_context(viewport=PHONE, bypass_csp=True, locale="en-GB")
    page = await context.new_page()
    await local_sign_in(page, site.url, MANAGER)
    found: dict[str, list[dict[str, Any]]] = {}

    async def check(name: str) -> None:
        assert await overflow(page) == 0, name  # wide tables scroll inside their own region
        await page.screenshot(path=str(artefacts / f"{name}-390.png"), full_page=True)
        found[name] = await axe(page)
        await page.set_viewport_size({"width": 1280, "height": 900})
        await page.screenshot(path=str(artefacts / f"{name}-1280.png"), full_page=True)
        found[f"{name}-1280"] = await axe(page)
        await page.set_viewport_size(PHONE)

    await page.goto(f"{site.url}/alerts")
    await expect(page.locator("#inbox tr[data-alert-id]")).to_have_count(3)
    await page.keyboard.press("j")  # the focused row as a keyboard user sees it
    await check("alerts")
    await page.goto(f"{site.url}/alerts/{site.ids['a']}")
    await check("alert")
    await page.goto(f"{site.url}/alerts?lang=fr&status=all")
    await check("alerts-fr")
    await context.close()
    print("FIGURES alerts axe serious/critical:", json.dumps({k: len(v) for k, v in found.items()}))
    assert found == {k: [] for k in found}


@pytest.fixture
async def paged_site(infra: Infra, database_url: str, topics: Topics) -> AsyncIterator[Site]:
    """120 alerts written straight to the actions tables (as test_console_alerts_pages.py does)."""
    port = free_port()
    async with rules_stack(
        infra,
        database_url,
        topics,
        serve_console=True,
        cookie_secure=False,
        public_url=f"http://127.0.0.1:{port}",
        alerts_poll_s=1,
    ) as stack:
        await people(stack)
        now = datetime.now(UTC)
        await insert(stack, [paged_alert(i, now) for i in range(120)])
        async with serving(stack.console, port=port) as url:
            yield Site(url, stack, infra, topics, {})


async def test_the_keyboard_walks_to_the_second_page_which_passes_axe(
    paged_site: Site,
    browser: Browser,  # noqa: F811 - the console browser test's fixture, by name
) -> None:
    site = paged_site
    context = await browser.new_context(locale="en-GB")
    page, problems = await watched_page(context, site.url)
    await local_sign_in(page, site.url, MANAGER)
    await page.goto(f"{site.url}/alerts?status=all")
    rows = page.locator("#inbox tr[data-alert-id]")
    await expect(rows).to_have_count(50)
    first_page = [await r.get_attribute("data-alert-id") for r in await rows.all()]
    await expect(page.locator("#inbox-counts")).to_contain_text("Alerts 1 to 50 of 120:")
    pager = page.get_by_role("navigation", name="Pages of alerts")
    await expect(pager.get_by_role("link")).to_have_count(1)  # no previous page from the first
    # keyboard only: j to the first alert, End to the last of the page, Tab to "Next alerts", Enter
    await page.keyboard.press("j")
    await page.keyboard.press("End")
    assert await focused_alert(page) == first_page[-1]
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.getAttribute('rel')") == "next"
    assert await page.evaluate("document.activeElement.textContent.trim()") == "Next alerts"
    ring = await focus_ring(page)
    assert not ring.startswith("none") and not ring.endswith(" 0px"), ring
    await page.keyboard.press("Enter")
    await page.wait_for_url(lambda url: "after=" in url and "status=all" in url)
    await expect(page.locator("#inbox-counts")).to_contain_text("Alerts 51 to 100 of 120:")
    second_page = [await r.get_attribute("data-alert-id") for r in await rows.all()]
    assert len(second_page) == 50 and not set(second_page) & set(first_page)
    # the page polls its own page's rows (every 1 s here): after a poll, the same rows, and the focus
    # still on the page link it was on
    await page.get_by_role("link", name="Previous alerts").focus()
    await page.evaluate("window.__notReloaded = true")
    async with page.expect_response(lambda r: "/alerts/rows?" in r.url and "after=" in r.url) as polled:
        pass
    assert (await polled.value).ok
    await expect(page.locator("#inbox a[data-pager='prev']")).to_be_focused()
    assert [await r.get_attribute("data-alert-id") for r in await rows.all()] == second_page
    assert await page.evaluate("window.__notReloaded === true")
    assert problems == []
    await context.close()
    # axe on the second page, at 1280 px and on a phone (its own context: axe needs the CSP bypassed)
    context = await browser.new_context(viewport=PHONE, bypass_csp=True, locale="en-GB")
    page = await context.new_page()
    await local_sign_in(page, site.url, MANAGER)
    await page.goto(f"{site.url}/alerts?status=all")
    await page.get_by_role("link", name="Next alerts").click()
    await page.wait_for_url(lambda url: "after=" in url)
    assert await overflow(page) == 0
    found = {"phone": await axe(page)}
    await page.set_viewport_size({"width": 1280, "height": 900})
    found["desktop"] = await axe(page)
    await page.goto(page.url + "&lang=fr")
    found["fr"] = await axe(page)
    await context.close()
    print("FIGURES alerts page 2 axe serious/critical:", json.dumps({k: len(v) for k, v in found.items()}))
    assert found == {k: [] for k in found}
