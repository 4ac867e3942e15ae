"""The Verbatims view in a real browser (Debian chromium via Playwright) on the real stack: filter by theme
and tone through the form (the address carries them, so the link can be shared), download the CSV and
read it back against the comments shown, a store manager who edits the address to another store gets
the "not found" page; axe-core finds no serious or critical violation at 390 px and 1280 px; no
Content-Security-Policy violation. Screenshots go to ``$CSAT_TEST_ARTEFACTS`` (docs/images/console/).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, expect

from devstack.ports import free_port
from shared.topics import Topics
from tests.infra import Infra
from tests.integration.test_console_browser import (  # noqa: F401 - fixtures used by name
    PHONE,
    artefacts,
    axe,
    browser,
    local_sign_in,
    overflow,
    watched_page,
)
from tests.integration.verbatims_stack import VerbatimsStack, verbatims_stack

pytestmark = pytest.mark.integration


@pytest.fixture
async def stack(infra: Infra, database_url: str, topics: Topics) -> AsyncIterator[VerbatimsStack]:
    port = free_port()
    async with verbatims_stack(
        infra, database_url, topics, port=port, public_url=f"http://127.0.0.1:{port}"
    ) as s:
        yield s


async def test_filter_share_export_and_a_refused_store_in_a_browser(
    stack: VerbatimsStack,
    browser: Browser,  # noqa: F811 - the console browser test's fixture, by name
    tmp_path: Path,
) -> None:
    url = stack.console
    context = await browser.new_context(locale="en-GB", accept_downloads=True)
    page, problems = await watched_page(context, url)
    await local_sign_in(page, url, "maya@example.com")
    await page.get_by_role("navigation", name="Main navigation").get_by_role("link", name="Verbatims").click()
    await page.wait_for_url(f"{url}/verbatims")
    await page.get_by_label("Segment", exact=True).fill("store:paris-1")
    await page.get_by_label("Theme", exact=True).select_option("delivery_time")
    await page.get_by_role("button", name="Show").click()
    await page.wait_for_url(f"{url}/verbatims?segment=store%3Aparis-1**theme=delivery_time**")
    items = page.locator("li.verbatim")
    await expect(items).to_have_count(3)
    api = await stack.api(segment="store:paris-1", theme="delivery_time")
    shown = [await items.nth(i).get_attribute("data-rating-id") for i in range(3)]
    assert shown == [i["rating_id"] for i in api["items"]]
    # the address is the view: opened again (a shared link), it shows the same comments
    shared = page.url
    other = await context.new_page()
    await other.goto(shared)
    await expect(other.locator("li.verbatim")).to_have_count(3)
    await other.close()
    async with page.expect_download() as info:
        await page.get_by_role("link", name="Download this page's comments (CSV)").click()
    download = await info.value
    target = tmp_path / download.suggested_filename
    await download.save_as(target)
    raw = target.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    exported = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert [r["rating_id"] for r in exported] == shown
    assert [r["comment"].lstrip("'") for r in exported] == [i["comment"] for i in api["items"]]
    assert problems == []
    await context.close()
    # a store manager edits the address to another store: not found, no comment of it
    context = await browser.new_context(locale="en-GB")
    page, problems = await watched_page(context, url)
    await local_sign_in(page, url, "bo@example.com")
    await page.goto(f"{url}/verbatims")
    await page.wait_for_url(f"{url}/verbatims?segment=store%3Aparis-1")
    answer = await page.goto(f"{url}/verbatims?segment=store:lyon-2")
    assert answer is not None and answer.status == 404
    await expect(page.get_by_role("heading", level=1)).to_have_text("Page not found")
    assert "Lyon:" not in await page.content()
    await context.close()


async def test_verbatims_at_390_px_and_desktop_pass_axe(
    stack: VerbatimsStack,
    browser: Browser,  # noqa: F811 - the console browser test's fixture, by name
    artefacts: Path,  # noqa: F811 - the console browser test's fixture, by name
) -> None:
    context = await browser.new_context(viewport=PHONE, bypass_csp=True, locale="en-GB")
    page = await context.new_page()
    await local_sign_in(page, stack.console, "maya@example.com")
    found: dict[str, list[dict[str, Any]]] = {}
    for name, address in (
        ("verbatims", "/verbatims?segment=store:paris-1"),
        ("verbatims-fr", "/verbatims?segment=store:paris-1&theme=delivery_time&lang=fr"),
    ):
        await page.goto(stack.console + address)
        assert await overflow(page) == 0, name
        await page.screenshot(path=str(artefacts / f"{name}-390.png"), full_page=True)
        found[name] = await axe(page)
        await page.set_viewport_size({"width": 1280, "height": 900})
        await page.screenshot(path=str(artefacts / f"{name}-1280.png"), full_page=True)
        found[f"{name}-1280"] = await axe(page)
        await page.set_viewport_size(PHONE)
    await context.close()
    print("FIGURES verbatims axe serious/critical:", json.dumps({k: len(v) for k, v in found.items()}))
    assert found == {k: [] for k in found}
