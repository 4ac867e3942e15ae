"""The Alerts view on the real stack: actions and notifier on PostgreSQL and the broker, alerts raised by
the default playbook from published ratings, the console in front. A CSM sees only the alerts of the
accounts they own (another's answers 404, by the inbox, the page and every action); a manager sees all;
the figures shown are the actions service's; acknowledge, assign and resolve change the alert there;
CSRF; a new alert reaches the inbox's rows without a reload; French.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import httpx
import pytest

from shared.topics import Topics
from tests.infra import Infra
from tests.integration.alerts_stack import (
    COMMENT_A,
    CSM_A,
    CSM_B,
    MANAGER,
    VIEWER,
    actions_api,
    alerts_of,
    customer,
    low_rating,
    people,
    seed,
)
from tests.integration.rules_stack import PASSWORD, RulesStack, rules_stack
from tests.integration.test_console import csrf_of, sign_in

pytestmark = pytest.mark.integration


class Alerts:
    def __init__(self, stack: RulesStack, infra: Infra, topics: Topics, seeded: dict[str, dict[str, object]]):
        self.stack = stack
        self.infra = infra
        self.topics = topics
        self.a = str(seeded["a"]["alert_id"])
        self.b = str(seeded["b"]["alert_id"])
        self.users = {}  # type: dict[str, object]


@pytest.fixture
async def site(infra: Infra, database_url: str, topics: Topics) -> AsyncIterator[Alerts]:
    async with rules_stack(infra, database_url, topics) as stack:
        users = await people(stack)
        out = Alerts(stack, infra, topics, await seed(stack, infra, topics))
        out.users = dict(users)
        yield out


@asynccontextmanager
async def browser(site: Alerts, email: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=site.stack.console, client=("192.0.2.10", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="https://console.test") as client:
        assert (await sign_in(client, email, PASSWORD)).status_code == 303
        yield client


def text_of(page: httpx.Response) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page.text)))


def listed(page: httpx.Response) -> list[str]:
    """The alert ids of the inbox's rows, in the order shown."""
    return re.findall(r'<tr data-alert-id="([^"]+)"', page.text)


async def alert(site: Alerts, alert_id: str) -> dict[str, object]:
    answer = await actions_api(site.stack, "GET", f"/v1/alerts/{alert_id}")
    assert answer.status_code == 200
    found: dict[str, object] = answer.json()
    return found


async def test_a_csm_sees_only_the_alerts_of_their_accounts_and_a_manager_sees_all(site: Alerts) -> None:
    async with browser(site, CSM_A) as carla:
        inbox = await carla.get("/alerts")
        assert inbox.status_code == 200
        assert listed(inbox) == [site.a]
        # editing the address does not open Dan's alert: the page, its rows and every action say 404
        assert (await carla.get(f"/alerts/{site.b}")).status_code == 404
        assert listed(await carla.get("/alerts/rows?status=all")) == [site.a]
        token = csrf_of(inbox)
        for verb in ("ack", "resolve", "assign"):
            posted = await carla.post(f"/alerts/{site.b}/{verb}", data={"csrf_token": token, "owner": "x"})
            assert posted.status_code == 404, verb
        assert (await alert(site, site.b))["status"] == "open"
    async with browser(site, MANAGER) as maya:
        inbox = await maya.get("/alerts")
        # the strategic account's high-priority alert first, then the normal one
        assert listed(inbox) == [site.a, site.b]
        assert (await maya.get(f"/alerts/{site.b}")).status_code == 200
    async with browser(site, VIEWER) as vic:
        assert (await vic.get("/alerts")).status_code == 403  # viewers have no alerts:read
        assert (await vic.get(f"/alerts/{site.a}")).status_code == 403
        assert 'href="/alerts"' not in (await vic.get("/")).text
    transport = httpx.ASGITransport(app=site.stack.console)
    async with httpx.AsyncClient(transport=transport, base_url="https://console.test") as anonymous:
        answer = await anonymous.get("/alerts")
        assert answer.status_code == 303 and answer.headers["location"].startswith("/signin")


async def test_the_inbox_and_the_alert_show_what_the_actions_service_says(site: Alerts) -> None:
    api = {a["alert_id"]: a for a in await alerts_of(site.stack)}
    a = api[site.a]
    assert a["priority"] == "high" and a["status"] == "open" and a["due_at"]
    due = datetime.fromisoformat(str(a["due_at"]))
    async with browser(site, MANAGER) as maya:
        inbox = text_of(await maya.get("/alerts"))
        assert "cus-a: 2 on 1-5 (CSAT)" in inbox and "cus-b: 1 on 1-5 (CSAT)" in inbox
        assert "Alerts 1 to 2 of 2: 2 open, 0 past their SLA, 0 escalated." in inbox
        assert "High" in inbox and "Normal" in inbox and "No SLA" in inbox
        assert re.search(r"2[34] h \d+ min left", inbox), inbox  # the 24 h SLA, counting down
        page = await maya.get(f"/alerts/{site.a}")
        body = text_of(page)
        assert COMMENT_A in body  # the whole comment, escaped (the <b> is text, not markup)
        assert "&lt;b&gt;et&lt;/b&gt;" in page.text and "<b>et</b>" not in page.text
        assert f'datetime="{due.isoformat()}"' in page.text
        assert "Carla CSM" in body and "strategic" in body and "120,000" in body
        assert "strategic-account-alert" in body
        fr = text_of(await maya.get("/alerts?lang=fr"))
        assert "cus-a : 2 sur 1-5 (CSAT)" in fr and "Haute" in fr and "Sans délai" in fr
        assert "Alertes 1 à 2 sur 2 : 2 ouverte(s), 0 hors délai, 0 escaladée(s)." in fr
        assert "120 000" in text_of(await maya.get(f"/alerts/{site.a}?lang=fr")).replace("\u202f", " ")


async def test_acknowledge_assign_and_resolve_change_the_alert_in_the_actions_service(
    site: Alerts, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    carla_id = site.users[CSM_A].user_id  # type: ignore[attr-defined]
    dan = site.users[CSM_B]
    async with browser(site, CSM_A) as carla:
        page = await carla.get(f"/alerts/{site.a}")
        acked = await carla.post(f"/alerts/{site.a}/ack", data={"csrf_token": csrf_of(page)})
        assert acked.status_code == 303 and acked.headers["location"] == f"/alerts/{site.a}?done=ack"
        stored = await alert(site, site.a)
        assert stored["status"] == "acknowledged" and stored["acknowledged_by"] == f"person:{carla_id}"
        shown = text_of(await carla.get(acked.headers["location"]))
        assert "Acknowledged: the escalation is stopped." in shown and "Carla CSM" in shown
        refused = await carla.post(
            f"/alerts/{site.a}/assign", data={"csrf_token": csrf_of(page), "owner": "nobody"}
        )
        assert refused.status_code == 400  # only a listed person; the alert stays Carla's
        assert (await alert(site, site.a))["owner_email"] == CSM_A
        assigned = await carla.post(
            f"/alerts/{site.a}/assign",
            data={"csrf_token": csrf_of(page), "owner": dan.user_id},  # type: ignore[attr-defined]
        )
        assert assigned.status_code == 303
        stored = await alert(site, site.a)
        assert stored["owner_email"] == CSM_B and stored["owner_name"] == "Dan CSM"
        # handed over: no longer Carla's
        assert (await carla.get(f"/alerts/{site.a}")).status_code == 404
        assert listed(await carla.get("/alerts")) == []
    async with browser(site, CSM_B) as dan_browser:
        # open alerts before acknowledged ones: the one nobody has looked at yet comes first
        assert listed(await dan_browser.get("/alerts")) == [site.b, site.a]
        page = await dan_browser.get(f"/alerts/{site.a}")
        assert "previously " + CSM_A in text_of(page)
        resolved = await dan_browser.post(
            f"/alerts/{site.a}/resolve",
            data={"csrf_token": csrf_of(page), "note": "  Called her; refund sent.  "},
        )
        assert resolved.status_code == 303
        stored = await alert(site, site.a)
        assert stored["status"] == "resolved" and stored["note"] == "Called her; refund sent."
        # resolved alerts leave the default inbox, stay under "resolved", and take no more actions
        assert listed(await dan_browser.get("/alerts")) == [site.b]
        assert listed(await dan_browser.get("/alerts?status=resolved")) == [site.a]
        again = await dan_browser.post(f"/alerts/{site.a}/ack", data={"csrf_token": csrf_of(page)})
        assert again.status_code == 409
        assert "already been resolved" in text_of(again)
    logs = caplog.text
    assert "alert_changed" in logs  # the console's log lines are here
    for personal in ("cus-", "@example.com", "refund"):  # customers' ids, addresses, the note
        assert personal not in logs


async def test_a_post_without_the_csrf_token_changes_nothing(site: Alerts) -> None:
    async with browser(site, MANAGER) as maya:
        answer = await maya.post(f"/alerts/{site.b}/resolve", data={"note": "x"})
        assert answer.status_code == 403
    assert (await alert(site, site.b))["status"] == "open"


async def test_unknown_filters_are_refused_and_filters_are_kept_in_the_address(site: Alerts) -> None:
    async with browser(site, MANAGER) as maya:
        for query in ("status=closed", "priority=whenever", "escalated=maybe"):
            assert (await maya.get(f"/alerts?{query}")).status_code == 400, query
        high = await maya.get("/alerts?priority=high")
        assert listed(high) == [site.a]
        assert 'data-rows-url="/alerts/rows?priority=high"' in high.text
        assert listed(await maya.get("/alerts?escalated=1")) == []


async def test_a_new_alert_reaches_the_inbox_rows_without_a_reload(site: Alerts) -> None:
    async with browser(site, CSM_A) as carla:
        before = listed(await carla.get("/alerts/rows"))
        assert before == [site.a]
        await customer(site.stack, "cus-c", owner_email=CSM_A, tier="enterprise")
        new = await low_rating(
            site.stack, site.infra, site.topics, "r-c1", "cus-c", 1, comment="Rien ne marche"
        )
        after = listed(await carla.get("/alerts/rows"))
        assert set(after) == {site.a, new["alert_id"]}
