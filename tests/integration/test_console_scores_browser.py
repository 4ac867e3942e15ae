"""The Scores and Segments views in a real browser (Debian chromium via Playwright) on the real stack: the
worked example read on the page, a live update arriving without a reload after a rating, the drill-down,
the CSV downloaded and read back, no Content-Security-Policy violation, axe-core on every page, the phone
width. Screenshots go to ``$CSAT_TEST_ARTEFACTS`` (docs/images/console/ for docs/console.md)."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, ViewportSize
from playwright.async_api import TimeoutError as PlaywrightTimeout

from shared.topics import Topics
from tests.infra import Infra
from tests.integration.console_stack import PASSWORD, ScoresStack, scores_stack
from tests.integration.test_console_browser import artefacts, axe, browser, overflow, watched_page

pytestmark = pytest.mark.integration

__all__ = ["artefacts", "browser"]  # fixtures shared with the sign-in browser test

PHONE: ViewportSize = {"width": 390, "height": 844}
DESKTOP: ViewportSize = {"width": 1280, "height": 900}


async def sign_in(page: Page, url: str, email: str) -> None:
    await page.goto(f"{url}/signin")
    await page.get_by_label("Email address").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await page.wait_for_url(f"{url}/")


async def tile_responses(page: Page) -> int:
    return int(await page.locator('li.tile[data-metric="csat"]').get_attribute("data-responses") or 0)


async def walk_scores(page: Page, stack: ScoresStack) -> None:
    await page.goto(f"{stack.console}/scores?metric=csat&window=30d&segment=store:paris-1")
    csat = page.locator('li.tile[data-metric="csat"]')
    assert await csat.locator(".value").inner_text() == "70.0%"
    assert "1,000 answers" in await csat.inner_text()
    # the survey's response rate beside it: 100 of 1,250 invited, flagged low (under 10 %)
    rate = page.locator('li.tile[data-metric="response-rate"]')
    assert await rate.locator(".value").inner_text() == "8.0%"
    shown = await rate.inner_text()
    assert "100 answered of 1,250 invited" in shown and "6.6% to 9.6%" in shown
    assert "Low response (under 10.0%)" in shown and "With a comment: 25.0%, 25 of 100 answers" in shown
    await page.wait_for_selector("#trend-chart canvas")  # uPlot drew the trend
    await page.get_by_text("The trend as a table").click()
    assert await page.locator("details.alt-table tbody tr").count() == 30
    # live: a rating moves the store's score; the panel is swapped in place, no reload
    await page.wait_for_selector("#live-status:text-matches('^Live:')")
    await page.evaluate("window.samePage = true")
    moved = 'li.tile[data-metric="csat"]:not([data-responses="1000"])'
    for _ in range(30):
        await stack.rate(1, store="paris-1", channel="chat")
        try:
            await page.wait_for_selector(moved, timeout=2000)
            break
        except PlaywrightTimeout:  # not yet: the feed may have positioned itself after that rating
            continue
    assert await tile_responses(page) > 1000 and await page.evaluate("window.samePage === true")
    assert "updated at" in await page.locator("#live-status").inner_text()
    await page.wait_for_selector("#trend-chart canvas")  # redrawn after the swap


async def walk_segments(page: Page, stack: ScoresStack, downloads: Path) -> list[dict[str, str]]:
    await page.goto(f"{stack.console}/segments?by=store&metric=csat&window=30d")
    rows = page.locator("table.ranking tbody tr")
    assert await rows.count() == 5
    assert await page.locator("tr.below").get_attribute("data-value") == "lyon-2"
    assert await page.locator("table.heatmap tbody tr").count() == 5
    async with page.expect_download() as info:
        await page.get_by_role("link", name="Download these rows (CSV)").click()
    download = await info.value
    target = downloads / download.suggested_filename
    await download.save_as(target)
    raw = target.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and download.suggested_filename == "segments-store-csat-30d.csv"
    exported = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    shown = [await rows.nth(i).get_attribute("data-value") for i in range(await rows.count())]
    assert [r["value"] for r in exported] == shown
    # drill-down: a store's channels, compared with the store
    await page.get_by_role("rowheader", name="paris-1").get_by_role("link").first.click()
    await page.wait_for_url(re.compile(r".*/segments\?by=channel&.*segment=store%3Aparis-1.*"))
    assert await page.locator("table.ranking tbody tr").count() == 2
    assert "store:paris-1 as a whole" in await page.locator("main").inner_text()
    return exported


async def test_scores_and_segments_in_a_browser(
    infra: Infra, database_url: str, topics: Topics, browser: Browser, artefacts: Path, tmp_path: Path
) -> None:
    async with scores_stack(infra, database_url, topics) as stack:
        # first the pages as fed (the screenshots show the worked example), then the walk adds ratings
        found = await accessibility_and_screenshots(browser, stack, artefacts)
        context = await browser.new_context(viewport=DESKTOP, locale="en-GB", accept_downloads=True)
        try:
            page, problems = await watched_page(context, stack.console)
            await sign_in(page, stack.console, "maya@example.com")
            await walk_scores(page, stack)
            exported = await walk_segments(page, stack, tmp_path)
        finally:
            await context.close()  # its live stream ends with it: the servers can stop
        assert [r["value"] for r in exported] == ["nice-3", "lille-4", "paris-1", "marseille-5", "lyon-2"]
        assert problems == []  # no Content-Security-Policy violation, no script error
    print("FIGURES axe serious/critical:", json.dumps({k: len(v) for k, v in found.items()}))
    assert all(v == [] for v in found.values()), found


async def accessibility_and_screenshots(browser: Browser, stack: ScoresStack, out: Path) -> dict[str, Any]:
    """axe-core on every page at desktop and phone widths (this context alone bypasses the CSP so the
    test can inject axe), no sideways scrolling at 390 px, and the screenshots docs/console.md shows."""
    context = await browser.new_context(viewport=DESKTOP, bypass_csp=True, locale="en-GB")
    try:
        return await _audit(await context.new_page(), stack, out)
    finally:
        await context.close()


async def _audit(page: Page, stack: ScoresStack, out: Path) -> dict[str, Any]:
    await sign_in(page, stack.console, "maya@example.com")
    pages = {
        "scores": "/scores?metric=csat&window=30d&segment=store:paris-1",
        "scores-nps": "/scores?metric=nps&window=30d",
        "segments": "/segments?by=store&metric=csat&window=30d",
        "drill": "/segments?by=channel&metric=csat&window=30d&segment=store:paris-1",
        "scores-fr": "/scores?metric=csat&window=30d&segment=store:paris-1&lang=fr",
    }
    found: dict[str, Any] = {}
    for name, path in pages.items():
        for width, viewport in (("1280", DESKTOP), ("390", PHONE)):
            await page.set_viewport_size(viewport)
            await page.goto(stack.console + path)
            if name.startswith("scores"):
                await page.wait_for_selector("#trend-chart canvas")
            found[f"{name}-{width}"] = await axe(page)
            if width == "390":
                assert await overflow(page) == 0, name
            if name in ("scores", "segments") or (name in ("scores-fr", "drill") and width == "1280"):
                await page.screenshot(path=str(out / f"{name}-{width}.png"), full_page=True)
    return found
