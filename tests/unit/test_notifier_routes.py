"""The notifier's routes on the in-memory store: they need only their ports, never the database."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import httpx
from fastapi import FastAPI

from services.notifier.deps import NotifierDeps
from services.notifier.policy import AddressKeys, legacy_address_key
from services.notifier.ports import NewRequest, SuppressionEntry
from services.notifier.routes import deliveries, outbox, suppressions, unsubscribe
from services.notifier.routes import templates as previews
from services.notifier.templating import Templates
from services.notifier.tokens import UnsubscribeClaim, UnsubscribeTokens
from shared.http import install_common
from shared.identity.scopes import Role
from shared.security.hashing import AddressHasher
from tests.credentials import ADMIN, authenticator, bearer, person
from tests.fakes.identity_store import MemoryIdentityStore
from tests.fakes.notifier_store import MemoryNotifierStore

TOKENS = UnsubscribeTokens(["unit-secret"])
KEYS = AddressKeys(AddressHasher(["unit-test-address-hash-key-32-chars-long"]))


@asynccontextmanager
async def client(
    store: MemoryNotifierStore, audit: MemoryIdentityStore | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_common(app, service="notifier", checks={})
    deps = NotifierDeps(
        deliveries=store,
        suppressions=store,
        tokens=TOKENS,
        auth=authenticator("notifier"),
        audit=audit or MemoryIdentityStore(),
        address_keys=KEYS,
        templates=Templates(),
        public_base_url="https://notifier.example/",
    )
    for routes in (unsubscribe, outbox, deliveries, suppressions, previews):
        app.include_router(routes.router(deps))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://notifier") as c:
        yield c


async def test_a_get_of_the_unsubscribe_link_changes_nothing_and_the_post_suppresses_who_and_where() -> None:
    store = MemoryNotifierStore()
    key = KEYS.key("email", "ana@example.com")
    claim = UnsubscribeClaim(
        customer_id="cus-1", scope="email", address_key=key, notification_id="n", locale="fr"
    )
    token = TOKENS.make(claim)
    async with client(store) as c:
        page = await c.get(f"/u/{token}")
        assert page.status_code == 200 and 'method="post"' in page.text and not store.state.suppressions
        assert (await c.post(f"/u/{token[:-2]}xx")).status_code == 400
        done = await c.post(f"/u/{token}", content=b"List-Unsubscribe=One-Click")
        assert done.status_code == 200 and "désabonné" in done.text
    assert set(store.state.suppressions) == {
        SuppressionEntry("email", key),
        SuppressionEntry("customer", "cus-1"),
    }
    assert {s.reason for s in store.state.suppressions.values()} == {"unsubscribed"}


async def test_admins_add_list_and_lift_suppressions_by_customer_email_or_phone() -> None:
    store, audit = MemoryNotifierStore(), MemoryIdentityStore()
    async with client(store, audit) as c:
        assert (await c.get("/v1/suppressions")).status_code == 401
        person = {"email": "Ana@Example.com", "phone": "+33 6 12 34 56 78"}
        added = await c.post("/v1/suppressions", json=person, headers=ADMIN)
        assert (added.status_code, added.json()) == (201, {"added": 2})
        again = await c.post("/v1/suppressions", json={"email": "ana@example.com"}, headers=ADMIN)
        assert again.json() == {"added": 0}  # an existing entry keeps its first reason
        listed = (await c.get("/v1/suppressions", params={"phone": "+33612345678"}, headers=ADMIN)).json()
        assert [(s["scope"], s["key"]) for s in listed["suppressions"]] == [
            ("sms", KEYS.key("sms", "+33612345678"))
        ]
        nothing = await c.delete("/v1/suppressions", headers=ADMIN)
        assert nothing.status_code == 422 and nothing.json()["errors"][0]["field"] == "customer_id"
        removed = await c.delete("/v1/suppressions", params={"email": "ana@example.com"}, headers=ADMIN)
        assert removed.json() == {"removed": 1}
    assert set(store.state.suppressions) == {SuppressionEntry("sms", KEYS.key("sms", "+33612345678"))}
    # every change is audited with who and how many, never an address
    logged = [
        (r.entry.actor, r.entry.action.value, r.entry.target, dict(r.entry.details)) for r in audit.audit
    ]
    assert logged == [
        ("token:bootstrap", "suppression.add", "suppressions", {"email": True, "phone": True, "added": 2}),
        ("token:bootstrap", "suppression.add", "suppressions", {"email": True, "phone": False, "added": 0}),
        (
            "token:bootstrap",
            "suppression.remove",
            "suppressions",
            {"email": True, "phone": False, "removed": 1},
        ),
    ]
    assert "example.com" not in repr(audit.audit) and "612345678" not in repr(audit.audit)


async def test_entries_of_earlier_releases_are_still_found_and_lifted_by_address() -> None:
    store = MemoryNotifierStore()
    legacy = SuppressionEntry("email", legacy_address_key("email", "bob@example.com"))
    async with store.begin() as tx:
        await tx.suppress(
            entries=[legacy], reason="unsubscribed", source="old", customer_id=None, notification_id=None
        )
    async with client(store) as c:
        listed = (await c.get("/v1/suppressions", params={"email": "Bob@example.com"}, headers=ADMIN)).json()
        assert [s["key"] for s in listed["suppressions"]] == [legacy.key]
        removed = await c.delete("/v1/suppressions", params={"email": "bob@example.com"}, headers=ADMIN)
        assert removed.json() == {"removed": 1} and not store.state.suppressions


async def test_an_unknown_delivery_is_a_404_problem_and_lists_need_the_admin_key() -> None:
    async with client(MemoryNotifierStore()) as c:
        assert (await c.get("/v1/deliveries/nope")).status_code == 401
        missing = await c.get("/v1/deliveries/nope", headers=ADMIN)
        assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
        assert (await c.get("/v1/deliveries")).status_code == 401
        page = await c.get("/v1/deliveries", params={"status": "failed"}, headers=ADMIN)
        assert page.json() == {"deliveries": [], "counts": {}}
        assert (await c.get("/v1/outbox")).status_code == 401
        assert (await c.get("/v1/outbox", headers=ADMIN)).json() == {"messages": []}


async def test_a_csm_reads_the_deliveries_of_the_accounts_they_own_and_nothing_else() -> None:
    store = MemoryNotifierStore()
    async with store.begin() as tx:
        await tx.insert_requests(
            requests=[
                NewRequest(
                    notification_id=f"n-{account}",
                    channel="email",
                    provider="outbox",
                    rule_id="r",
                    customer_id=f"cus-{account}",
                    transactional=False,
                    request_json=json.dumps({"context": {"customer": {"account_id": account}}}),
                    due_at=datetime(2026, 12, 1, tzinfo=UTC),
                    event_id=f"e-{account}",
                    source_topic="t",
                    source_partition=0,
                    source_offset=i,
                )
                for i, account in enumerate(["acme", "globex"])
            ]
        )
    ana = bearer(person(Role.CSM, accounts=["acme"]))
    async with client(store) as c:
        mine = await c.get("/v1/deliveries/n-acme", headers=ana)
        assert mine.status_code == 200 and mine.json()["account_id"] == "acme"
        other = await c.get("/v1/deliveries/n-globex", headers=ana)
        assert other.status_code == 404 and "globex" not in other.text
        assert (await c.get("/v1/deliveries", headers=ana)).status_code == 403  # lists: every account
        # one customer's list: hers when a message of it names an account she owns, else 404
        own = await c.get("/v1/deliveries", params={"customer_id": "cus-acme"}, headers=ana)
        assert own.status_code == 200 and [d["notification_id"] for d in own.json()["deliveries"]] == [
            "n-acme"
        ]
        foreign = await c.get("/v1/deliveries", params={"customer_id": "cus-globex"}, headers=ana)
        assert foreign.status_code == 404 and "globex" not in foreign.text
        assert (
            await c.get("/v1/deliveries", params={"customer_id": "nobody"}, headers=ana)
        ).status_code == 404
        viewer = await c.get("/v1/deliveries/n-acme", headers=bearer(person(Role.VIEWER)))
        assert viewer.status_code == 403 and "deliveries:read" in viewer.json()["detail"]
        manager = bearer(person(Role.MANAGER))
        assert (await c.get("/v1/deliveries/n-globex", headers=manager)).status_code == 200
        assert (await c.get("/v1/outbox", headers=manager)).status_code == 403  # outbox:read: admins


async def test_a_preview_renders_each_message_as_sent_in_its_locale_and_channel_and_stores_nothing() -> None:
    store = MemoryNotifierStore()
    before = repr(store.state)
    context = {
        "customer": {"id": "cus-1", "email": "•••", "tier": "strategic"},
        "rating": {"score": 1, "metric": "csat", "scale": "1-5", "touchpoint": "support_chat"},
        "alert": {"priority": "high", "due_at": "2026-12-07T10:00:00+00:00"},
    }
    messages = [
        {"template": "csm_alert", "locale": "en", "channel": "email", "context": context},
        {"template": "low_score_followup", "locale": "fr", "channel": "email", "transactional": False},
        {"template": "low_score_followup", "locale": "fr", "channel": "sms", "transactional": False},
        {"template": "thank_you", "locale": "de", "channel": "email"},
    ]
    async with client(store) as c:
        assert (await c.post("/v1/templates/preview", json={"messages": messages})).status_code == 401
        answer = await c.post("/v1/templates/preview", json={"messages": messages}, headers=ADMIN)
        assert answer.status_code == 200
        alert, email, sms, german = answer.json()["previews"]
        unknown = await c.post(
            "/v1/templates/preview", json={"messages": [{"template": "nope"}]}, headers=ADMIN
        )
    assert alert["subject"] == "[CSAT alert, high priority] strategic cus-1 rated 1 (CSAT 1-5)"
    assert "Email: •••" in alert["body"] and alert["variant"] is None
    assert email["subject"] == "Nous sommes désolés de votre expérience"
    assert "https://notifier.example/u/preview" in email["body"]  # a placeholder, never a working token
    assert sms["variant"] == "sms" and sms["subject"] is None and sms["locale"] == "fr"
    assert german["locale"] == "en" and german["body"]  # no German templates: English, as a send would
    assert unknown.status_code == 422
    assert repr(store.state) == before
