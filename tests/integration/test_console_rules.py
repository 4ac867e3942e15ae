"""The Rules view on the real stack: the actions and notifier apps on PostgreSQL and the broker, and the
console in front of them. Roles, the cards in both languages, an edit refused at its field then saved,
the revision and its diff, two managers editing at once, CSRF, and dry runs that send, store and
publish nothing (row counts of every actions/notifier table and every topic's end offsets unchanged).
"""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import DBAPIError

from services.actions.repository import PgTransactions
from shared.db import make_engine
from shared.identity.scopes import Role
from shared.topics import Topics
from tests.helpers import produce, wait_for
from tests.infra import Infra
from tests.integration.rules_stack import ADMIN_KEY, PASSWORD, RulesStack, rules_stack, topic_ends
from tests.integration.test_actions import rating
from tests.integration.test_console import csrf_of, sign_in

pytestmark = pytest.mark.integration

HTML = {"accept": "text/html"}


@pytest.fixture
async def stack(infra: Infra, database_url: str, topics: Topics) -> AsyncIterator[RulesStack]:
    async with rules_stack(infra, database_url, topics) as s:
        yield s


@asynccontextmanager
async def browser(
    stack: RulesStack, email: str, role: Role, name: str | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """A browser signed in as a new person of ``role``."""
    await stack.person(email, role, name)
    transport = httpx.ASGITransport(app=stack.console, client=("192.0.2.10", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="https://console.test") as client:
        assert (await sign_in(client, email, PASSWORD)).status_code == 303
        yield client


def text_of(page: httpx.Response) -> str:
    """The page's text as read: tags dropped, entities decoded, spaces collapsed."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page.text)))


def form_fields(page: httpx.Response) -> dict[str, str]:
    """The edit form's values as the browser would post them (checkbox ticked -> "true")."""
    out: dict[str, str] = {}
    for name, value in re.findall(r'<input[^>]*name="([a-z_]+)"[^>]*value="([^"]*)"', page.text):
        out[name] = html.unescape(value)
    if 'id="field-enabled" name="enabled" value="true" checked' not in page.text:
        out.pop("enabled", None)
    for name, body in re.findall(r'<textarea[^>]*name="([a-z_]+)"[^>]*>(.*?)</textarea>', page.text, re.S):
        out[name] = html.unescape(body)
    selected = re.search(r'name="on".*?<option value="([a-z_]+)" selected', page.text, re.S)
    out["on"] = selected.group(1) if selected else "rating"
    return out


async def test_only_the_rules_scopes_open_the_view_and_edits_are_checked_on_the_server(
    stack: RulesStack,
) -> None:
    for email, role in (("vi@example.com", Role.VIEWER), ("cs@example.com", Role.CSM)):
        async with browser(stack, email, role) as person:
            token = csrf_of(await person.get("/"))
            for path in (
                "/rules",
                "/rules/history",
                "/rules/dry-run",
                "/rules/new",
                "/rules/low-score-csm-alert/edit",
            ):
                assert (await person.get(path, headers=HTML)).status_code == 403, (role, path)
            posted = await person.post(
                "/rules/low-score-csm-alert/edit",
                data={"csrf_token": token, "cooldown": "1d", "actions": "[]"},
            )
            assert posted.status_code == 403
            home = await person.get("/")
            assert 'href="/rules"' not in home.text  # the link is hidden too (a courtesy, not the check)
    assert not [c for c in stack.bridge.calls if c[0] == "PUT"]  # nothing reached the rules API


async def test_the_playbook_reads_as_cards_in_evaluation_order_in_both_languages(stack: RulesStack) -> None:
    async with browser(stack, "ana@example.com", Role.MANAGER, "Ana Manager") as ana:
        page = await ana.get("/rules")
        french = text_of(await ana.get("/rules?lang=fr"))
    assert page.status_code == 200
    english = text_of(page)
    assert "Revision 1" in english
    assert (
        "Rule 1 strategic-account-alert" in english
        and "When the rating is negative and (the account tier is strategic or enterprise, or the account "
        "value is 50,000 or more)"
        in english
    )
    assert "Group csm-alert: only the first rule that matches fires" in english
    assert "SLA respond within 24 hours; escalates to the CSM's manager when it runs out" in english
    assert "At most once every 2 weeks per customer" in english  # low-score-resurvey's 14d
    assert (
        english.index("strategic-account-alert")
        < english.index("churn-risk-alert")
        < english.index("low-score-csm-alert")
    )
    assert "Whenever a segment's score drops" in english
    assert 'href="/rules/strategic-account-alert/edit"' in page.text  # a manager edits
    # (text_of folds the locale's narrow no-break spaces into plain ones)
    assert "ou la valeur du compte vaut 50 000 ou plus" in french
    assert "Délai de réponse répondre sous 24 heures" in french


async def test_an_invalid_edit_is_refused_at_its_field_then_saved_with_its_revision_and_diff(
    stack: RulesStack,
) -> None:
    async with browser(stack, "ana@example.com", Role.MANAGER, "Ana Manager") as ana:
        page = await ana.get("/rules/low-score-customer-email/edit")
        assert page.status_code == 200
        fields = form_fields(page)
        assert (
            fields["cooldown"] == "7d" and fields["revision"] == "1" and "customer_email" in fields["actions"]
        )
        wrong = await ana.post("/rules/low-score-customer-email/edit", data={**fields, "cooldown": "2 weeks"})
        assert wrong.status_code == 422
        assert re.search(
            r'id="field-cooldown"[^>]*aria-invalid="true" aria-describedby="cooldown-hint cooldown-error"',
            wrong.text,
        )
        error = re.search(r'<p class="field-error" id="cooldown-error">(.*?)</p>', wrong.text, re.S)
        assert error and "duration '2 weeks' must look like 90s, 30m, 24h, 7d or 2w" in html.unescape(
            error.group(1)
        )
        assert 'href="#field-cooldown"' in wrong.text and "2 weeks" in form_fields(wrong)["cooldown"]  # kept
        sla = fields["actions"] + "  sla: 24h\n"
        refused = await ana.post("/rules/low-score-customer-email/edit", data={**fields, "actions": sla})
        assert refused.status_code == 422 and 'id="actions-error"' in refused.text
        assert "actions.0.sla: only csm_alert actions have an SLA" in html.unescape(refused.text)
        broken = await ana.post(
            "/rules/low-score-customer-email/edit", data={**fields, "when": "sentiment: ["}
        )
        assert broken.status_code == 422 and "This is not valid YAML" in html.unescape(broken.text)
        assert [c for c in stack.bridge.calls if c[0] == "PUT"] == [
            ("PUT", "actions.internal", "/v1/rules/low-score-customer-email")
        ] * 2
        saved = await ana.post("/rules/low-score-customer-email/edit", data={**fields, "cooldown": "14d"})
        assert saved.status_code == 303 and saved.headers["location"] == "/rules/history?to=2&saved=2#diff"
        history = text_of(await ana.get(saved.headers["location"]))
    assert "Saved as revision 2." in history
    assert "Changes from revision 1 to revision 2" in history
    assert "0 added, 0 removed, 1 changed, 0 moved" in history
    assert "Changed low-score-customer-email" in history and "cooldown before: 7d after: 14d" in history
    async with stack.client(stack.actions, "http://actions") as actions:
        rule = (await actions.get("/v1/rules/low-score-customer-email", headers=ADMIN_KEY)).json()
    assert rule["revision"] == 2 and rule["rule"]["cooldown"] == "14d"
    assert rule["rule"]["actions"] == [{"type": "customer_email", "template": "low_score_followup"}]


async def test_two_managers_editing_at_once_get_a_clear_conflict_and_nothing_is_lost(
    stack: RulesStack,
) -> None:
    async with (
        browser(stack, "ana@example.com", Role.MANAGER, "Ana Manager") as ana,
        browser(stack, "bo@example.com", Role.ADMIN, "Bo Admin") as bo,
    ):
        ana_form = form_fields(await ana.get("/rules/promoter-thank-you/edit"))
        bo_form = form_fields(await bo.get("/rules/promoter-thank-you/edit"))
        first = await bo.post("/rules/promoter-thank-you/edit", data={**bo_form, "cooldown": "60d"})
        assert first.status_code == 303
        clash = await ana.post(
            "/rules/promoter-thank-you/edit", data={**ana_form, "description": "Thanks, Ana's words"}
        )
        assert clash.status_code == 409
        said = text_of(clash)
        assert "Someone else saved the rules (revision 2) after you opened this form" in said
        assert "cooldown before: 30d after: 60d" in said  # what the other person changed
        kept = form_fields(clash)
        assert (
            kept["description"] == "Thanks, Ana's words"
            and kept["revision"] == "2"
            and kept["cooldown"] == "30d"
        )
        again = await ana.post("/rules/promoter-thank-you/edit", data=kept)  # deliberate, knowing
        assert again.status_code == 303 and "to=3" in again.headers["location"]
        new_rule = await ana.get("/rules/new")
        exists = await ana.post(
            "/rules/new",
            data={**form_fields(new_rule), "rule_id": "promoter-thank-you", "actions": "- type: csm_alert"},
        )
        assert exists.status_code == 409 and "A rule with this id exists already" in text_of(exists)
        created = await ana.post(
            "/rules/new",
            data={
                **form_fields(new_rule),
                "rule_id": "nps-watch",
                "when": "metric: nps",
                "actions": "- type: csm_alert",
            },
        )
        assert created.status_code == 303 and "to=4" in created.headers["location"]
        history = text_of(await ana.get(created.headers["location"]))
    assert (
        "Added nps-watch Field Before After id (none) after: nps-watch when.metric (none) after: nps"
        in history
    )
    # who saved what: the actions service records the person whose token saved each revision
    assert "Ana Manager" in history and "Bo Admin" in history
    assert "the rules file (deployment)" in history and "an API key" not in history


async def test_a_post_without_the_csrf_token_changes_nothing(stack: RulesStack) -> None:
    async with browser(stack, "ana@example.com", Role.MANAGER) as ana:
        fields = form_fields(await ana.get("/rules/low-score-csm-alert/edit"))
        fields.pop("csrf_token")
        refused = await ana.post("/rules/low-score-csm-alert/edit", data={**fields, "cooldown": "1d"})
        dry = await ana.post("/rules/dry-run", data={"metric": "csat", "score": "1"})
    assert refused.status_code == 403 and dry.status_code == 403
    assert not [c for c in stack.bridge.calls if c[0] in ("PUT", "POST")]


async def settled(stack: RulesStack, bootstrap: str, ratings: int) -> None:
    """Actions decided on the ratings and the notifier sent every requested message (nothing moves after)."""
    async with stack.client(stack.actions, "http://actions") as actions:

        async def stored() -> Any:
            return (await actions.get("/v1/rules/dry-run/ratings", headers=ADMIN_KEY)).json()

        await wait_for(stored, until=lambda r: len(r) == ratings, timeout_s=60)

    async def quiet() -> dict[str, int]:
        return await topic_ends(bootstrap, stack.topics)

    await wait_for(
        quiet,
        until=lambda e: (
            e[stack.topics.notifications] > 0 and e[stack.topics.outcomes] == e[stack.topics.notifications]
        ),
        timeout_s=60,
        every_s=0.5,
    )


async def test_a_dry_run_shows_what_fires_and_what_would_be_sent_and_writes_nothing(
    stack: RulesStack, infra: Infra
) -> None:
    async with stack.client(stack.actions, "http://actions") as actions:
        context = {
            "email": "ana.client@example.com",
            "owner_email": "owner@example.com",
            "tier": "strategic",
            "locale": "fr",
            "consent": {"contact": True},
        }
        assert (await actions.put("/v1/customers/cus-9", json=context, headers=ADMIN_KEY)).status_code == 200
    await produce(
        infra.bootstrap,
        [
            rating("r-1", 1, topic=stack.topics.ratings, customer="cus-1"),
            rating("r-2", 5, topic=stack.topics.ratings, customer="cus-2"),
        ],
    )
    await settled(stack, infra.bootstrap, ratings=2)
    before = (await stack.counts(), await topic_ends(infra.bootstrap, stack.topics))
    async with browser(stack, "ana@example.com", Role.MANAGER) as ana:
        page = await ana.get("/rules/dry-run")
        assert page.status_code == 200 and "r-1" in page.text and "r-2" in page.text  # recent, to pick
        token = csrf_of(page)
        typed = {
            "csrf_token": token,
            "metric": "csat",
            "scale": "1-5",
            "score": "1",
            "customer": "cus-9",
            "locale": "fr",
            "segment": "store: paris-1",
            "tier": "strategic",
            "contact": "true",
        }
        result = await ana.post("/rules/dry-run", data=typed)
        assert result.status_code == 200
        said = text_of(result)
        assert "✔ strategic-account-alert : Fires" in said
        assert "⤼ churn-risk-alert : Skipped: an earlier rule of its group fired" in said
        assert (
            "✔ low-score-customer-email : Fires" in said and "· promoter-thank-you : Does not match" in said
        )
        assert "Creates a high-priority alert for owner@example.com, due in 24 hours" in said
        assert (
            "[Alerte CSAT, priorité haute] strategic cus-9 a noté 1 (CSAT 1-5)" in said
        )  # the notifier's French
        assert "[CSAT alert, high priority] strategic cus-9 rated 1 (CSAT 1-5)" in said  # and its English
        assert "the customer (address hidden)" in said and "Nous sommes désolés de votre expérience" in said
        assert "ana.client@example.com" not in result.text  # a manager never sees the customer's address
        assert (
            "3 rule(s) fire; 2 message(s) would be sent at once and 1 later. Nothing was sent or stored."
            in said
        )
        assert (
            "Ask the customer one open question (low-score-resurvey) To the customer (address hidden)" in said
        )
        assert "When in 2 hours" in said and "In French (the customer's language: this one is sent)" in said
        picked = await ana.get("/rules/dry-run?pick=r-1")
        assert 'name="rating_id" value="r-1"' in picked.text
        picked_run = await ana.post("/rules/dry-run", data={**form_fields(picked), "csrf_token": token})
        assert picked_run.status_code == 200 and "low-score-csm-alert : Fires" in text_of(picked_run)
        proposed = "rules: [{id: everyone-thanks, actions: [{type: customer_email, template: thank_you}]}]"
        tried = text_of(await ana.post("/rules/dry-run", data={**typed, "proposed": proposed}))
        assert "Evaluated against the unsaved rules you gave." in tried and "everyone-thanks : Fires" in tried
        wrong = await ana.post("/rules/dry-run", data={**typed, "score": "9"})
        assert wrong.status_code == 422 and 'id="score-error"' in wrong.text
        assert "score 9 is outside scale 1-5" in html.unescape(wrong.text)
        bad_rules = await ana.post(
            "/rules/dry-run", data={**typed, "proposed": "rules: [{id: x, actions: [{type: nope}]}]"}
        )
        assert bad_rules.status_code == 422 and 'id="proposed-error"' in bad_rules.text
    async with browser(stack, "root@example.com", Role.ADMIN) as root:
        token = csrf_of(await root.get("/rules/dry-run"))
        as_admin = await root.post("/rules/dry-run", data={**typed, "csrf_token": token})
        assert "ana.client@example.com" in as_admin.text  # admins see where it would go
    after = (await stack.counts(), await topic_ends(infra.bootstrap, stack.topics))
    assert after == before
    assert before[0]["actions.decisions"] > 0 and before[0]["notifier.deliveries"] > 0  # real data was there


async def test_the_dry_runs_transaction_refuses_any_write(stack: RulesStack) -> None:
    engine = make_engine(stack.database_url)
    try:
        async with PgTransactions(engine).read_only() as stores:
            with pytest.raises(DBAPIError, match="read-only transaction"):
                await stores.rule_sets.insert(version=99, document={"rules": []}, origin="test")
    finally:
        await engine.dispose()
