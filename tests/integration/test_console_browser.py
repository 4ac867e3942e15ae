"""The console in a real browser (Debian chromium via Playwright): OpenID Connect against a real provider
process, a local account, the phone layout, and axe-core on the pages.

Chromium comes from apt (`make chromium`); Playwright never downloads a browser. axe-core is vendored
in tests/assets (tests/assets/VENDORED.md) and injected by the test: the console never serves it.
Screenshots go to ``$CSAT_TEST_ARTEFACTS`` (docs/images/console/ holds the ones docs/console.md shows)
or to the test's temporary directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, ViewportSize, async_playwright

from devstack.ports import free_port, wait_for_port
from services.console.bootstrap import create_app
from services.console.settings import ConsoleSettings
from shared.db import make_engine
from shared.identity.passwords import Passwords
from shared.identity.ports import NewUser
from shared.identity.principal import SegmentGrant
from shared.identity.repository import PgIdentityStore
from shared.identity.scopes import Role
from tests.credentials import SIGNING_KEY
from tests.helpers import make_settings, serving
from tests.integration.test_widget_browser import CHROMIUM, require_chromium
from tests.unit.test_console_views import scorer_app

pytestmark = pytest.mark.integration

AXE = Path(__file__).resolve().parents[1] / "assets" / "axe-core-4.14.1" / "axe.min.js"
CHEAP = Passwords(time_cost=1, memory_cost=1024, parallelism=1)
PASSWORD = "a long local password"
ALICE = {"sub": "alice-0001", "email": "Alice@Example.com", "email_verified": True, "name": "Alice Martin"}
PHONE: ViewportSize = {"width": 390, "height": 844}


@dataclass
class Site:
    url: str
    provider: str


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    require_chromium()
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
def provider() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-W",
            "ignore",
            "-m",
            "oidc_provider_mock",
            "--port",
            str(port),
            "--require-nonce",
            "true",
            "--user-claims",
            json.dumps(ALICE),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, timeout_s=20.0)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
async def site(database_url: str, provider: str) -> AsyncIterator[Site]:
    engine = make_engine(database_url)
    store = PgIdentityStore(engine=engine, timeout_s=5)
    # Alice is invited by address (OpenID), Bo has a local password, Root administers.
    await store.create_user(
        user=NewUser(email="alice@example.com", display_name="Alice Martin", role=Role.MANAGER)
    )
    await store.create_user(
        user=NewUser(
            email="bo@example.com",
            display_name="Bo Store",
            role=Role.VIEWER,
            segments=frozenset({SegmentGrant.parse("store:paris-1")}),
            password_hash=CHEAP.hash(PASSWORD),
        )
    )
    await store.create_user(
        user=NewUser(
            email="root@example.com", display_name="Root", role=Role.ADMIN, password_hash=CHEAP.hash(PASSWORD)
        )
    )
    await engine.dispose()
    port = free_port()
    # The shared link below opens the Scores view: a scorer answers it from the in-memory store.
    async with serving(await scorer_app()) as scorer_url:
        cfg = make_settings(
            ConsoleSettings,
            environment="test",
            database_url=database_url,
            cookie_secure=False,  # plain http on loopback: Secure cookies would not come back
            public_url=f"http://127.0.0.1:{port}",
            oidc_issuer=provider,
            oidc_client_id="csat-console",
            oidc_client_secret="console-secret",
            oidc_display_name="Test IdP",
            scorer_url=scorer_url,
            live_enabled=False,
            identity_signing_key=SIGNING_KEY.private_jwk(),  # the scorer trusts this key's tokens
        )
        async with serving(create_app(cfg, passwords=CHEAP), port=port) as url:
            yield Site(url=url, provider=provider)


@pytest.fixture
def artefacts(tmp_path: Path) -> Path:
    out = Path(os.environ.get("CSAT_TEST_ARTEFACTS") or tmp_path / "artefacts")
    out.mkdir(parents=True, exist_ok=True)
    return out


async def watched_page(context: BrowserContext, origin: str) -> tuple[Page, list[str]]:
    """A page whose errors on the console's origin are collected: Content-Security-Policy violations,
    script errors, missing resources (the provider's own pages are not the console's business)."""
    page = await context.new_page()
    problems: list[str] = []

    def note(message: ConsoleMessage) -> None:
        where = str(message.location.get("url", ""))
        if message.type == "error" and where.startswith(origin):
            problems.append(f"{where}: {message.text}")

    page.on("console", note)
    page.on("pageerror", lambda e: problems.append(str(e)))
    return page, problems


async def local_sign_in(page: Page, url: str, email: str) -> None:
    await page.goto(f"{url}/signin")
    await page.get_by_label("Email address").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await page.wait_for_url(f"{url}/")


async def test_openid_connect_then_a_local_account_land_with_their_role(
    site: Site,
    browser: Browser,
) -> None:
    context = await browser.new_context(locale="en-GB")
    page, problems = await watched_page(context, site.url)
    await page.goto(f"{site.url}/scores?metric=csat&window=30d")  # a shared link: sign in, then back to it
    await page.wait_for_url(f"{site.url}/signin?*")
    await page.get_by_role("link", name="Sign in with Test IdP").click()
    await page.wait_for_url(f"{site.provider}/**")
    await page.get_by_role("button", name="alice-0001").click()  # the provider's predefined person
    await page.wait_for_url(f"{site.url}/scores?metric=csat&window=30d")
    await page.get_by_role("link", name="Home", exact=True).click()
    role = page.locator("#role-line")
    assert await role.get_attribute("data-role") == "manager"
    assert await role.inner_text() == "Your role: Manager"
    assert await page.evaluate("typeof htmx") == "object"  # served by the console, not a CDN
    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url(f"{site.url}/signin?notice=signed_out")
    # the switch sets a cookie: the next pages stay in French
    await page.get_by_role("link", name="Français").click()
    await local_sign_in_fr(page, site.url, "bo@example.com")
    role = page.locator("#role-line")
    assert (
        await role.get_attribute("data-role") == "viewer"
        and await role.inner_text() == "Votre rôle : Lecteur"
    )
    assert "Segments : store:paris-1" in await page.locator("main").inner_text()
    assert await page.get_by_role("link", name="Alertes").count() == 0  # not for a viewer
    assert problems == []  # no Content-Security-Policy violation, no script error
    await context.close()


async def local_sign_in_fr(page: Page, url: str, email: str) -> None:
    await page.get_by_label("Adresse e-mail").fill(email)
    await page.get_by_label("Mot de passe").fill(PASSWORD)
    await page.get_by_role("button", name="Se connecter", exact=True).click()
    await page.wait_for_url(f"{url}/")


async def overflow(page: Page) -> int:
    """How many CSS pixels the page is wider than the screen (0: no sideways scrolling)."""
    width: int = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    return width


async def axe(page: Page) -> list[dict[str, Any]]:
    """axe-core's violations of impact serious or critical on the current page."""
    await page.add_script_tag(content=AXE.read_text())
    result: dict[str, Any] = await page.evaluate(
        "async () => await axe.run(document, {resultTypes: ['violations']})"
    )
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:3]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


async def test_phone_layout_and_accessibility(
    site: Site,
    browser: Browser,
    artefacts: Path,
) -> None:
    # axe is injected as a script: this context alone bypasses the CSP that would (rightly) refuse it
    context = await browser.new_context(viewport=PHONE, bypass_csp=True, locale="en-GB")
    page = await context.new_page()
    found: dict[str, list[dict[str, Any]]] = {}
    await page.goto(f"{site.url}/signin")
    assert await overflow(page) == 0
    await page.screenshot(path=str(artefacts / "signin-390.png"), full_page=True)
    found["signin"] = await axe(page)
    await local_sign_in(page, site.url, "root@example.com")
    assert await overflow(page) == 0
    await page.screenshot(path=str(artefacts / "home-390.png"), full_page=True)
    found["home"] = await axe(page)
    await page.goto(f"{site.url}/admin/people")
    assert await overflow(page) == 0  # wide tables scroll inside their own region
    found["people"] = await axe(page)
    # keyboard: the first Tab reaches the skip link, which moves focus to the main content
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.className") == "skip-link"
    await page.keyboard.press("Enter")
    assert await page.evaluate("document.activeElement.id") == "main"
    await page.set_viewport_size({"width": 1280, "height": 900})
    await page.screenshot(path=str(artefacts / "people-1280.png"), full_page=True)
    # an htmx form: the row is swapped in place (no page load), its POST carrying the CSRF header
    await page.evaluate("window.samePage = true")
    row = page.locator("tr", has=page.get_by_role("rowheader", name="Bo Store"))
    await row.get_by_label("Role of Bo Store").select_option("csm")
    await row.get_by_role("button", name="Save role").click()
    await page.wait_for_function(
        "document.querySelector('tr td select option[value=csm][selected]') !== null"
    )
    assert await page.evaluate("window.samePage === true")
    assert await row.get_by_label("Role of Bo Store").input_value() == "csm"
    await page.goto(f"{site.url}/?lang=fr")
    await page.screenshot(path=str(artefacts / "home-fr-1280.png"), full_page=True)
    found["home-fr"] = await axe(page)
    await context.close()
    print("FIGURES axe serious/critical:", json.dumps({k: len(v) for k, v in found.items()}))
    assert found == {"signin": [], "home": [], "people": [], "home-fr": []}
