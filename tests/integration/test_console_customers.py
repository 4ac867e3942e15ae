"""The Customer view on the real stack: the scorer, actions and notifier apps on PostgreSQL and the
broker (ratings published as the collector does), the console in front. The page shows the scorer's
history and trend, the comments, the actions service's alerts and context (tier, value, consent,
opt-out), the notifier's deliveries, the account's health; a CSM reads only the customers they own
(another's is 404), a viewer has no access; French. Export and erasure: only for ``gdpr:admin`` (the
buttons and the routes), CSRF-protected, erasure only with the customer's id typed exactly.
"""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from shared.identity.scopes import Role
from shared.topics import Topics
from tests.credentials import bearer, person
from tests.helpers import produce, wait_for
from tests.infra import Infra
from tests.integration.alerts_stack import (
    ACCOUNT_A,
    COMMENT_A,
    CSM_A,
    CSM_B,
    MANAGER,
    VIEWER,
    actions_api,
    customer,
    people,
    seed,
)
from tests.integration.rules_stack import ADMIN_KEY, PASSWORD, RulesStack, rules_stack, topic_ends
from tests.integration.test_actions import rating
from tests.integration.test_console import csrf_of, sign_in

pytestmark = pytest.mark.integration


@pytest.fixture
async def stack(infra: Infra, database_url: str, topics: Topics) -> AsyncIterator[RulesStack]:
    async with rules_stack(infra, database_url, topics, with_scorer=True, with_collector=True) as s:
        await people(s, with_accounts=True)
        # cus-a rated before: 5 then 4, then the low 2 (with its comment) that raises the alert
        older = [
            rating(
                "r-a0",
                5,
                topic=topics.ratings,
                customer="cus-a",
                occurred_at=_ago(days=20),
                account=ACCOUNT_A,
            ),
            rating(
                "r-a00",
                4,
                topic=topics.ratings,
                customer="cus-a",
                occurred_at=_ago(days=10),
                account=ACCOUNT_A,
            ),
        ]
        await produce(infra.bootstrap, older)
        await seed(s, infra, topics)
        await customer(
            s,
            "cus-a",
            owner_email=CSM_A,
            owner_name="Carla CSM",
            tier="strategic",
            value=120000,
            consent={"contact": True, "review": False},
        )

        async def ready() -> tuple[int, int]:
            history = await scorer(s, "/v1/customers/cus-a/history")
            sent = await notifier(s, "/v1/deliveries", customer_id="cus-a")
            return len(history["ratings"]), len(sent["deliveries"])

        await wait_for(ready, until=lambda v: v[0] == 3 and v[1] >= 1, timeout_s=60)
        yield s


def _ago(**kw: float) -> datetime:
    return datetime.now(UTC) - timedelta(**kw)


async def scorer(s: RulesStack, path: str, **params: Any) -> Any:
    return await _get(s, "scorer.internal", path, **params)


async def notifier(s: RulesStack, path: str, **params: Any) -> Any:
    return await _get(s, "notifier.internal", path, **params)


async def _get(s: RulesStack, host: str, path: str, **params: Any) -> Any:
    transport = s.bridge.routes[host]
    async with httpx.AsyncClient(transport=transport, base_url=f"http://{host}") as client:
        answer = await client.get(path, params=params, headers=ADMIN_KEY)
    assert answer.status_code == 200, answer.text
    return answer.json()


@asynccontextmanager
async def browser(s: RulesStack, email: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=s.console, client=("192.0.2.10", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="https://console.test") as client:
        assert (await sign_in(client, email, PASSWORD)).status_code == 303
        yield client


def text_of(page: httpx.Response) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page.text)))


def fact(page: httpx.Response, name: str) -> str:
    found = re.search(rf'data-fact="{name}">(.*?)</', page.text, re.S)
    assert found, name
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", found.group(1)))).strip()


async def test_the_page_shows_what_the_services_say(stack: RulesStack) -> None:
    history = await scorer(stack, "/v1/customers/cus-a/history")
    sent = await notifier(stack, "/v1/deliveries", customer_id="cus-a")
    everyone = await notifier(stack, "/v1/deliveries")
    # the notifier's filter: cus-a's messages only (cus-b has some too), counts over them alone
    assert {d["customer_id"] for d in sent["deliveries"]} == {"cus-a"}
    assert {d["customer_id"] for d in everyone["deliveries"]} >= {"cus-a", "cus-b"}
    assert sum(sent["counts"].values()) == len(sent["deliveries"]) < len(everyone["deliveries"])
    alerts = (await actions_api(stack, "GET", "/v1/alerts", params={"customer_id": "cus-a"})).json()["alerts"]
    async with browser(stack, CSM_A) as carla:
        page = await carla.get("/customers/cus-a")
        assert page.status_code == 200
        body = text_of(page)
        # ratings: newest first, as the scorer lists them, and its trend in words
        assert re.findall(r'<tr data-rating-id="([^"]+)"', page.text) == [
            r["rating_id"] for r in history["ratings"]
        ]
        assert fact(page, "ratings-total") == f"{history['total']} rating(s) in all; the newest 3 below."
        assert history["trend"]["direction"] == "declining"
        assert fact(page, "trend").startswith("Declining: the latest ratings are lower")
        assert 'role="img" aria-label="Scores over time, oldest first: 5/1-5, 4/1-5, 2/1-5"' in page.text
        assert COMMENT_A in body
        # alerts and messages as the actions service and the notifier list them
        assert re.findall(r'<tr data-alert-id="([^"]+)"', page.text) == [a["alert_id"] for a in alerts]
        shown = re.findall(r'<tr data-notification-id="([^"]+)"', page.text)
        assert shown == [d["notification_id"] for d in sent["deliveries"]]
        assert fact(page, "delivery-counts") == " · ".join(
            f"{ {'sent': 'Sent', 'pending': 'Waiting', 'sending': 'Waiting'}.get(k, k) }: {n}"
            for k, n in sorted(sent["counts"].items())
        )
        # account, consent, opt-out as stored
        assert "strategic" in body and "120,000" in body and "Carla CSM" in body
        assert fact(page, "consent-contact") == "Yes" and fact(page, "consent-review") == "No"
        assert fact(page, "opted-out") == "No"
        assert 'id="gdpr"' not in page.text  # admins only
        fr = await carla.get("/customers/cus-a?lang=fr")
        assert fact(fr, "consent-contact") == "Oui" and fact(fr, "trend").startswith("En baisse")
    await customer(stack, "cus-a", owner_email=CSM_A, opted_out=True)
    async with browser(stack, CSM_A) as carla:
        page = await carla.get("/customers/cus-a")
        assert fact(page, "opted-out") == "Yes: no message goes to this customer"


async def test_a_csm_reads_only_their_customers_and_a_viewer_none(stack: RulesStack) -> None:
    async with browser(stack, CSM_B) as dan:
        assert (await dan.get("/customers/cus-a")).status_code == 404  # Carla's
        assert (await dan.get("/customers/cus-b")).status_code == 200
        assert (await dan.get("/customers/nobody-at-all")).status_code == 404
        found = await dan.get("/customers?id=cus-b")
        assert found.status_code == 303 and found.headers["location"] == "/customers/cus-b"
    async with browser(stack, MANAGER) as maya:
        assert (await maya.get("/customers/cus-a")).status_code == 200
        assert (await maya.get("/customers/cus-b")).status_code == 200
        assert (await maya.get("/customers/nobody-at-all")).status_code == 404
    async with browser(stack, VIEWER) as vic:
        assert (await vic.get("/customers/cus-a")).status_code == 403
        assert (await vic.get("/customers")).status_code == 403


async def test_the_notifiers_customer_filter_is_for_who_owns_the_customer(stack: RulesStack) -> None:
    """``GET /v1/deliveries?customer_id=`` with a person's own token: deliveries:read and the customer
    owned (one of its messages names an account they own); another's is 404, the whole list 403."""
    notifier = stack.bridge.routes["notifier.internal"]
    carla = bearer(person(Role.CSM, subject="u-carla", accounts=[ACCOUNT_A], owner_email=CSM_A))
    vic = bearer(person(Role.VIEWER, subject="u-vic"))
    async with httpx.AsyncClient(transport=notifier, base_url="http://notifier.internal") as client:
        assert (await client.get("/v1/deliveries", params={"customer_id": "cus-a"})).status_code == 401
        assert (
            await client.get("/v1/deliveries", params={"customer_id": "cus-a"}, headers=vic)
        ).status_code == 403
        own = await client.get("/v1/deliveries", params={"customer_id": "cus-a"}, headers=carla)
        assert own.status_code == 200, own.text
        assert own.json()["deliveries"] and {d["account_id"] for d in own.json()["deliveries"]} == {ACCOUNT_A}
        # a status with none of her customer's messages is still her customer: an empty page, not 404
        none = await client.get(
            "/v1/deliveries", params={"customer_id": "cus-a", "status": "unknown"}, headers=carla
        )
        assert none.status_code == 200 and none.json()["deliveries"] == []
        other = await client.get("/v1/deliveries", params={"customer_id": "cus-b"}, headers=carla)
        assert other.status_code == 404 and "cus-b" not in other.text
        assert (await client.get("/v1/deliveries", headers=carla)).status_code == 403


ADMIN = "ada@example.com"


async def test_the_page_shows_the_accounts_health_as_the_actions_service_computes_it(
    stack: RulesStack,
) -> None:
    health = await wait_for(
        lambda: actions_api(stack, "GET", f"/v1/accounts/{ACCOUNT_A}/health"),
        until=lambda r: r.status_code == 200,
        timeout_s=60,
    )
    body = health.json()
    async with browser(stack, CSM_A) as carla:
        page = await carla.get("/customers/cus-a")
        found = re.search(r'<p data-fact="health">(.*?)</p>', page.text, re.S)
        assert found
        shown = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", found.group(1))).split())
        assert shown.startswith(f"Account {ACCOUNT_A}:"), shown
        assert f"{body['score']:.1f} out of 100" in shown
        band = {"healthy": "healthy", "at_risk": "at risk", "critical": "critical"}[body["band"]]
        assert band in shown
        ids = re.findall(r'<tr data-component="([^"]+)"', page.text)
        assert ids == [c["id"] for c in body["explanation"]]
        fr = await carla.get("/customers/cus-a?lang=fr")
        assert f'<p data-fact="health">Compte {ACCOUNT_A} :' in fr.text


async def test_export_and_erasure_are_for_gdpr_admins_only_and_need_the_typed_id(
    stack: RulesStack, infra: Infra
) -> None:
    await stack.person(ADMIN, Role.ADMIN, "Ada Admin")
    for email in (MANAGER, CSM_A):
        async with browser(stack, email) as someone:
            page = await someone.get("/customers/cus-a")
            assert page.status_code == 200
            assert 'id="gdpr"' not in page.text and "/export" not in page.text and "/erase" not in page.text
            token = csrf_of(await someone.get("/customers"))  # their own valid token: the scope refuses
            assert (await someone.get("/customers/cus-a/erase")).status_code == 403
            export = await someone.post("/customers/cus-a/export", data={"csrf_token": token})
            assert export.status_code == 403 and "cus-a" not in export.headers.get("content-disposition", "")
            erase = await someone.post(
                "/customers/cus-a/erase", data={"csrf_token": token, "confirm": "cus-a"}
            )
            assert erase.status_code == 403
    before = await erased_end(infra, stack)
    async with browser(stack, ADMIN) as ada:
        page = await ada.get("/customers/cus-a")
        assert 'data-action="export"' in page.text and 'href="/customers/cus-a/erase"' in page.text
        token = csrf_of(page)
        # no CSRF token, or a wrong one: refused before anything is read or published
        assert (await ada.post("/customers/cus-a/export")).status_code == 403
        assert (await ada.post("/customers/cus-a/erase", data={"confirm": "cus-a"})).status_code == 403
        assert (
            await ada.post("/customers/cus-a/erase", data={"csrf_token": "0" * 64, "confirm": "cus-a"})
        ).status_code == 403
        # the id mistyped: the form again, the error at the field, nothing published
        wrong = await ada.post("/customers/cus-a/erase", data={"csrf_token": token, "confirm": "cus-b"})
        assert wrong.status_code == 400
        assert 'aria-invalid="true"' in wrong.text and 'id="confirm-error"' in wrong.text
        assert "That is not the customer id" in text_of(wrong)
        form = await ada.get("/customers/cus-a/erase?lang=fr")
        assert "Saisissez l'identifiant du client (cus-a)" in text_of(form)
        # export: the console's GDPR document, every service's part
        export = await ada.post("/customers/cus-a/export", data={"csrf_token": token})
        assert export.status_code == 200, export.text[:300]
        assert export.headers["content-disposition"].startswith("attachment")
        document = export.json()
        assert document["customer_id"] == "cus-a" and set(document["services"]) == {
            "collector",
            "scorer",
            "actions",
            "notifier",
        }
        assert COMMENT_A in export.text
    assert await erased_end(infra, stack) == before  # nothing was erased


async def erased_end(infra: Infra, stack: RulesStack) -> int:
    """Records ever published on the erasure topic (its end offsets summed)."""
    return (await topic_ends(infra.bootstrap, stack.topics))[stack.topics.customers_erased]
