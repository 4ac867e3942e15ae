"""The alert inbox a page at a time, on the real stack (actions on PostgreSQL, the console in front).

250 alerts of three owners and five accounts, every status, priority, escalation and SLA state, and
pairs created in the same instant (ties broken by id), written to ``actions.alerts`` directly (the
pipeline that raises alerts is covered by test_console_alerts.py; this is about reading them). Walking
the "next" links shows every alert once, in the working order the console's own sort gives the same
alerts (an independent implementation of the order the service computes in SQL), and walking back the
"previous" links gives the same pages; a CSM sees only the alerts of their address or their accounts
on every page; the rows a page polls keep their page while a new alert lands on the first one; an
edited cursor is refused by field.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from services.console import alertview
from shared.db import make_engine
from shared.identity.ports import User
from shared.topics import Topics
from tests.infra import Infra
from tests.integration.alerts_stack import ACCOUNT_A, ACCOUNT_B, CSM_A, CSM_B, MANAGER, actions_api, people
from tests.integration.rules_stack import PASSWORD, RulesStack, rules_stack
from tests.integration.test_console import sign_in

pytestmark = pytest.mark.integration

ALERTS = 250
OTHER = "olga.other@example.com"
PRIORITIES = ("urgent", "high", "normal", "low")


@dataclass
class Site:
    stack: RulesStack
    users: dict[str, User]
    now: datetime


def _alert(i: int, now: datetime) -> dict[str, Any]:
    status = ("open", "open", "acknowledged", "resolved")[i % 4]
    handled = now - timedelta(minutes=30) if status != "open" else None
    return {
        "id": f"pg-{i:03d}",
        "owner": (CSM_A, CSM_B, OTHER)[i % 3],
        "account": (ACCOUNT_A, ACCOUNT_B, "acc-x", "acc-y", "acc-z")[i % 5],
        "priority": PRIORITIES[(i // 2) % 4],
        "status": status,
        # the SLA's state: none, overdue, due soon, later
        "due": None if i % 6 == 0 else now + timedelta(hours=(i % 48) - 12, minutes=i % 7),
        "escalated": now - timedelta(hours=1) if i % 7 == 0 else None,
        "acknowledged": handled,
        "resolved": handled if status == "resolved" else None,
        "created": now - timedelta(minutes=i // 2),  # pairs created in the same instant
    }


async def insert(stack: RulesStack, rows: list[dict[str, Any]]) -> None:
    engine = make_engine(stack.database_url)
    try:
        async with engine.begin() as conn:
            for r in rows:
                context = {
                    "rating": {"metric": "csat", "scale": "1-5", "score": 1, "comment": f"Comment {r['id']}"},
                    "customer": {"account_id": r["account"], "tier": "gold"},
                }
                await conn.execute(
                    text(
                        "INSERT INTO actions.alerts (alert_id, rule_id, rating_id, customer_id, "
                        "owner_email, owner_name, priority, status, due_at, escalated_at, acknowledged_at, "
                        "resolved_at, context, created_at) VALUES (:id, 'paging', :id, :customer, :owner, "
                        "NULL, :priority, :status, :due, :escalated, :acknowledged, :resolved, "
                        "CAST(:context AS jsonb), :created)"
                    ),
                    {**r, "customer": f"cus-{r['id']}", "context": json.dumps(context)},
                )
    finally:
        await engine.dispose()


@pytest.fixture
async def site(infra: Infra, database_url: str, topics: Topics) -> AsyncIterator[Site]:
    async with rules_stack(infra, database_url, topics) as stack:
        users = await people(stack, with_accounts=True)
        now = datetime.now(UTC).replace(microsecond=123456)
        await insert(stack, [_alert(i, now) for i in range(ALERTS)])
        yield Site(stack, users, now)


@asynccontextmanager
async def browser(site: Site, email: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=site.stack.console, client=("192.0.2.10", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="https://console.test") as client:
        assert (await sign_in(client, email, PASSWORD)).status_code == 303
        yield client


def listed(page: httpx.Response) -> list[str]:
    return re.findall(r'<tr data-alert-id="([^"]+)"', page.text)


def link(page: httpx.Response, rel: str) -> str | None:
    found = re.search(rf'<a href="([^"]+)" rel="{rel}"', page.text)
    return html.unescape(found.group(1)) if found else None


def counts_line(page: httpx.Response) -> str:
    found = re.search(r'<p id="inbox-counts" class="hint">([^<]+)</p>', page.text)
    assert found, page.text[:2000]
    return html.unescape(found.group(1))


async def expected(site: Site, email: str, status: str) -> list[str]:
    """Every alert of the service (admin key), filtered and sorted by the console's own pure rules."""
    answer = await actions_api(site.stack, "GET", "/v1/alerts", params={"limit": 500})
    bodies = answer.json()["alerts"]
    who = site.users[email].principal()
    return [r.alert_id for r in alertview.inbox(who, alertview.InboxQuery(status=status), bodies)]


async def walk(client: httpx.AsyncClient, first: str) -> list[httpx.Response]:
    pages = [await client.get(first)]
    while (nxt := link(pages[-1], "next")) is not None:
        assert len(pages) < 20, "the next links do not end"
        pages.append(await client.get(nxt))
        assert pages[-1].status_code == 200
    return pages


async def test_a_manager_walks_every_alert_once_in_working_order_and_back(site: Site) -> None:
    want = await expected(site, MANAGER, "all")
    assert len(want) == ALERTS
    async with browser(site, MANAGER) as maya:
        pages = await walk(maya, "/alerts?status=all")
        ids = [i for p in pages for i in listed(p)]
        assert len(pages) == 5 and all(len(listed(p)) == alertview.PAGE_SIZE for p in pages)
        assert ids == want  # no duplicate, no gap, the order of the console's own sort
        assert counts_line(pages[0]).startswith("Alerts 1 to 50 of 250:")
        assert counts_line(pages[2]).startswith("Alerts 101 to 150 of 250:")
        # the filter stays in every link, so a page's address is shareable
        assert all("status=all" in (link(p, "next") or "status=all") for p in pages)
        assert link(pages[0], "prev") is None and link(pages[-1], "next") is None
        back = [pages[-1]]
        while (prev := link(back[-1], "prev")) is not None:
            back.append(await maya.get(prev))
        assert [listed(p) for p in reversed(back)] == [listed(p) for p in pages]
        # the rows the page polls are the same page's
        second = link(pages[0], "next")
        assert second is not None
        assert listed(await maya.get(second.replace("/alerts?", "/alerts/rows?"))) == listed(pages[1])
        # French
        fr = await maya.get(second + "&lang=fr")
        assert counts_line(fr).startswith("Alertes 51 à 100 sur 250 :")
        assert "Alertes suivantes" in fr.text and "Alertes précédentes" in fr.text


async def test_a_csm_sees_only_their_alerts_on_every_page(site: Site) -> None:
    for email, account in ((CSM_A, ACCOUNT_A), (CSM_B, ACCOUNT_B)):
        want = await expected(site, email, "active")
        async with browser(site, email) as client:
            pages = await walk(client, "/alerts")
            ids = [i for p in pages for i in listed(p)]
        assert len(pages) > 1 and len(ids) == len(set(ids)) == len(want)
        assert ids == want
        mine = {
            a["id"]
            for a in (_alert(i, site.now) for i in range(ALERTS))
            if a["status"] != "resolved" and (a["owner"] == email or a["account"] == account)
        }
        assert set(ids) == mine


async def test_a_new_alert_lands_on_the_first_page_and_the_second_keeps_its_rows(site: Site) -> None:
    async with browser(site, MANAGER) as maya:
        first = await maya.get("/alerts")
        second_url = link(first, "next")
        assert second_url is not None
        second_rows = listed(await maya.get(second_url.replace("/alerts?", "/alerts/rows?")))
        urgent = {**_alert(0, site.now), "id": "pg-new", "status": "open", "acknowledged": None}
        # open, escalated, urgent and the most overdue: first in working order
        urgent.update(resolved=None, escalated=site.now, priority="urgent", due=site.now - timedelta(days=1))
        urgent["created"] = site.now + timedelta(seconds=1)
        await insert(site.stack, [urgent])
        polled_first = await maya.get("/alerts/rows")
        assert listed(polled_first)[0] == "pg-new"
        assert counts_line(polled_first).endswith("escalated.") and "of 189" in counts_line(polled_first)
        assert listed(await maya.get(second_url.replace("/alerts?", "/alerts/rows?"))) == second_rows


async def test_an_edited_cursor_is_refused_by_field(site: Site) -> None:
    async with browser(site, MANAGER) as maya:
        assert (await maya.get("/alerts?after=not*a*cursor")).status_code == 400
        assert (await maya.get("/alerts?after=bm90LWpzb24")).status_code == 400  # base64 of "not-json"
    answer = await actions_api(
        site.stack, "GET", "/v1/alerts", params={"order": "work", "after": "bm90LWpzb24"}
    )
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "after"
    newest = await actions_api(site.stack, "GET", "/v1/alerts", params={"order": "newest", "limit": 2})
    page = newest.json()
    assert page["total"] == ALERTS and page["next_cursor"] and page["prev_cursor"] is None
    # a cursor of one order is not one of the other
    wrong = await actions_api(
        site.stack, "GET", "/v1/alerts", params={"order": "work", "after": page["next_cursor"]}
    )
    assert wrong.status_code == 422
    # the historical answer is unchanged without paging parameters
    plain = await actions_api(site.stack, "GET", "/v1/alerts", params={"limit": 3})
    assert list(plain.json()) == ["alerts"] and len(plain.json()["alerts"]) == 3
