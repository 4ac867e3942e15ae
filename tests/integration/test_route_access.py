"""Every route of the five services, read from their OpenAPI documents (and from the apps' route tables,
for what the documents leave out), called without a credential, with wrong ones and with under-scoped
ones, on the real broker and PostgreSQL with a customer's data in every store.

A route that needs a credential must answer 401 (none, or one that is not valid) or 403 (valid but
without the scope) as an RFC 9457 problem, and no answer, refused or public, may carry the customer's
address or comment. Public routes are an explicit list: a new route is refused here until it needs a
credential or is added to that list on purpose.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.actions.bootstrap import create_app as create_actions
from services.actions.settings import ActionsSettings
from services.collector.bootstrap import create_app as create_collector
from services.collector.settings import CollectorSettings
from services.console.bootstrap import create_app as create_console
from services.console.settings import ConsoleSettings
from services.notifier.bootstrap import create_app as create_notifier
from services.notifier.settings import NotifierSettings
from services.scorer.bootstrap import create_app as create_scorer
from services.scorer.settings import ScorerSettings
from shared.identity.accesstokens import SigningKey
from shared.identity.scopes import Role
from shared.topics import Topics
from tests.credentials import ADMIN, JWKS, SIGNING_KEY, access_token, person
from tests.helpers import make_settings, running, wait_for
from tests.infra import Infra

pytestmark = pytest.mark.integration

#: What the seeded customer's data looks like wherever it is stored; no answer may contain either.
EMAIL = "leak.marker@example.com"
COMMENT = "Leakmarker waited forty minutes"
MARKERS = (EMAIL, "leak.marker", "Leakmarker")

PLATFORM = {("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/docs/oauth2-redirect"), ("GET", "/redoc")}
PLATFORM |= {("GET", "/metrics"), ("GET", "/healthz"), ("GET", "/readyz")}

#: Routes anyone may call, per service, and why (docs/security.md, "Planned access of every route").
PUBLIC: dict[str, set[tuple[str, str]]] = {
    "collector": PLATFORM
    | {
        ("GET", "/widget.js"),  # static asset
        ("GET", "/demo"),  # the widget's demo page (dev; shows no data)
        ("GET", "/v1/email/{token}"),  # holders of a signed email-link token
        ("POST", "/v1/email/{token}"),
        ("POST", "/v1/sms/twilio"),  # Twilio, checked by X-Twilio-Signature
    },
    "scorer": set(PLATFORM),
    "actions": set(PLATFORM),
    "notifier": PLATFORM | {("GET", "/u/{token}"), ("POST", "/u/{token}")},  # signed unsubscribe tokens
    "console": PLATFORM
    | {
        ("GET", "/.well-known/jwks.json"),  # public keys only
        ("GET", "/signin"),
        ("POST", "/signin"),  # pre-session CSRF token
        ("GET", "/auth/oidc/start"),
        ("GET", "/auth/oidc/callback"),
        ("GET", "/auth/link/{secret}"),  # holders of an unused one-time link
        ("POST", "/auth/link/{secret}"),
        ("GET", "/static"),
    },
}

#: The console's pages take the session cookie only (no bearer credential): without a session a GET is
#: sent to the sign-in page and a POST refused (CSRF). Listed so that a new page is a decision too.
SESSION_PAGES = {
    ("POST", "/auth/sign-out"),
    ("GET", "/"),
    ("GET", "/verbatims"),
    ("GET", "/verbatims.csv"),
    ("GET", "/alerts"),
    ("GET", "/alerts/rows"),
    ("GET", "/alerts/{alert_id}"),
    ("POST", "/alerts/{alert_id}/ack"),
    ("POST", "/alerts/{alert_id}/resolve"),
    ("POST", "/alerts/{alert_id}/assign"),
    ("GET", "/customers"),
    ("GET", "/customers/{customer_id:path}"),
    # The Customer page's GDPR flow (gdpr:admin checked server-side: test_console_customers.py).
    ("POST", "/customers/{customer_id:path}/export"),
    ("GET", "/customers/{customer_id:path}/erase"),
    ("POST", "/customers/{customer_id:path}/erase"),
    ("GET", "/customers/{customer_id:path}/erasures/{erasure_id}"),
    ("GET", "/scores"),
    ("GET", "/scores/panel"),
    ("GET", "/segments"),
    ("GET", "/segments.csv"),
    ("GET", "/live/scores"),
    ("GET", "/admin/people"),
    ("POST", "/admin/people"),
    ("POST", "/admin/people/{user_id}"),
    ("POST", "/admin/tokens"),
    ("POST", "/admin/tokens/{token_id}/revoke"),
    ("GET", "/rules"),
    ("GET", "/rules/history"),
    ("GET", "/rules/new"),
    ("GET", "/rules/{rule_id}/edit"),
    ("POST", "/rules/new"),
    ("POST", "/rules/{rule_id}/edit"),
    ("GET", "/rules/dry-run"),
    ("POST", "/rules/dry-run"),
}


#: The GDPR routes (docs/privacy.md): gdpr:admin, checked by each service's own Authenticator.
EXPORT = "/v1/gdpr/customers/{customer_id}/export"
GDPR_ROUTES = {(name, "GET", EXPORT) for name in ("collector", "scorer", "actions", "notifier", "console")}
GDPR_ROUTES |= {
    ("console", "POST", "/v1/gdpr/customers/{customer_id}/erase"),
    ("console", "GET", "/v1/gdpr/erasures/{erasure_id}"),
}


@dataclass
class Service:
    name: str
    app: FastAPI
    client: httpx.AsyncClient


def routes_of(app: FastAPI) -> Iterator[tuple[str, str]]:
    """(method, path) of every route the app serves, included routers and mounts too (HEAD aside)."""

    def walk(routes: list[Any], prefix: str) -> Iterator[tuple[str, str]]:
        for route in routes:
            included = getattr(route, "original_router", None)  # FastAPI's lazily included routers
            if included is not None:
                context = getattr(route, "include_context", None)
                yield from walk(included.routes, prefix + (getattr(context, "prefix", "") or ""))
                continue
            methods = getattr(route, "methods", None) or {"GET"}
            for method in sorted(methods - {"HEAD"}):
                yield method, prefix + route.path

    yield from walk(list(app.routes), "")


def documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}


def filled(path: str, ids: dict[str, str]) -> str:
    """The path with its parameters replaced by real ids of the seeded data (or a placeholder)."""
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: ids.get(m.group(1), "x"), path)


def assert_no_data(answer: httpx.Response, where: str) -> None:
    for marker in MARKERS:
        assert marker.lower() not in answer.text.lower(), f"{where} answered {marker!r}: {answer.text[:300]}"


def assert_refused(answer: httpx.Response, statuses: tuple[int, ...], where: str) -> None:
    assert answer.status_code in statuses, f"{where}: {answer.status_code} {answer.text[:300]}"
    assert answer.headers["content-type"].startswith("application/problem+json"), where
    body = answer.json()
    assert body["status"] == answer.status_code and body["title"], where
    assert set(body) <= {"type", "title", "status", "detail", "errors", "field"}, f"{where}: {body}"
    if answer.status_code == 401:
        assert answer.headers["www-authenticate"].startswith("Bearer"), where
    assert_no_data(answer, where)


#: The services the console calls (its GDPR export joins theirs).
BEHIND_CONSOLE = ("collector", "scorer", "actions", "notifier")


class ByHost(httpx.AsyncBaseTransport):
    """The console's calls to the other services, each sent to that service's app in this process."""

    def __init__(self) -> None:
        self.apps: dict[str, httpx.ASGITransport] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        app = self.apps.get(request.url.host)
        if app is None:
            return httpx.Response(502)
        return await app.handle_async_request(request)


@asynccontextmanager
async def five_services(infra: Infra, database_url: str, topics: Topics) -> AsyncIterator[dict[str, Service]]:
    common: dict[str, Any] = {
        "kafka_bootstrap": infra.bootstrap,
        "database_url": database_url,
        "topic_prefix": topics.prefix,
        "environment": "test",
        "identity_public_keys": JWKS,
    }
    others = ByHost()
    apps = {
        "collector": create_collector(make_settings(CollectorSettings, **common, require_api_key=True)),
        "scorer": create_scorer(make_settings(ScorerSettings, **common)),
        "actions": create_actions(make_settings(ActionsSettings, **common, timer_poll_s=0.5)),
        "notifier": create_notifier(
            make_settings(NotifierSettings, **common, dispatch_interval_s=0.05, quiet_hours="off")
        ),
        "console": create_console(
            make_settings(
                ConsoleSettings,
                **common,
                identity_signing_key=SIGNING_KEY.private_jwk(),
                bootstrap_admin_key=ADMIN["Authorization"].removeprefix("Bearer "),
                live_enabled=False,
                **{f"{name}_url": f"http://{name}.internal" for name in BEHIND_CONSOLE},
            ),
            http=httpx.AsyncClient(transport=others),
        ),
    }
    others.apps = {f"{name}.internal": httpx.ASGITransport(app=apps[name]) for name in BEHIND_CONSOLE}
    async with AsyncExitStack() as stack:
        yield {
            name: Service(name, app, await stack.enter_async_context(running(app)))
            for name, app in apps.items()
        }


async def seed(services: dict[str, Service]) -> dict[str, str]:
    """One strategic customer's low rating with an address and a comment, through the collector with a
    secret key, until every store holds it; returns ids to put in paths."""
    collector, actions, notifier = (services[n].client for n in ("collector", "actions", "notifier"))
    assert (
        await collector.post("/v1/sources", json={"source_id": "shop", "name": "Shop"}, headers=ADMIN)
    ).is_success
    key = (await collector.post("/v1/sources/shop/keys", json={"kind": "secret"}, headers=ADMIN)).json()[
        "key"
    ]
    rating = {
        "metric": "csat",
        "scale": "1-5",
        "score": 1,
        "comment": COMMENT,
        "customer": {"id": "cus-leak", "email": EMAIL},
        "segment": {"store": "paris-1", "channel": "chat"},
        "consent": {"contact": True},
        "account": {"id": "acc-leak", "tier": "strategic", "value": 250000},
    }
    posted = await collector.post("/v1/ratings", json=rating, headers={"X-API-Key": key})
    assert posted.status_code == 202, posted.text
    crm = {"email": EMAIL, "tier": "strategic", "owner_email": "owner@example.com"}
    assert (await actions.put("/v1/customers/cus-leak", json=crm, headers=ADMIN)).status_code == 200

    async def outbox() -> list[dict[str, Any]]:
        return list((await notifier.get("/v1/outbox", headers=ADMIN)).json()["messages"])

    messages = await wait_for(outbox, until=lambda m: any("Leakmarker" in str(x) for x in m), timeout_s=120)

    async def alerts() -> list[dict[str, Any]]:
        return list((await actions.get("/v1/alerts", headers=ADMIN)).json()["alerts"])

    alert = (await wait_for(alerts, until=bool, timeout_s=120))[0]

    async def history() -> int:
        found = await services["scorer"].client.get("/v1/customers/cus-leak/history", headers=ADMIN)
        return int(found.json()["total"])

    await wait_for(history, until=lambda n: n == 1, timeout_s=120)
    return {
        "customer_id": "cus-leak",
        "alert_id": alert["alert_id"],
        "notification_id": messages[0]["notification_id"],
        "rule_id": "strategic-account-alert",
        "version": "1",
        "source_id": "shop",
    }


async def test_every_route_of_the_five_services_refuses_without_a_valid_scoped_credential(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    async with five_services(infra, database_url, topics) as services:
        ids = await seed(services)
        console = services["console"].client
        # Two API tokens with one scope each, disjoint: a route needs one scope, so at least one of the
        # two lacks it whatever the route (a route added later that takes one of them still passes).
        single: dict[str, dict[str, str]] = {}
        for scope, role in (("usage:write", "viewer"), ("audit:read", "admin")):
            made = await console.post(
                "/v1/tokens", json={"name": scope, "role": role, "scopes": [scope]}, headers=ADMIN
            )
            assert made.status_code in (200, 201), made.text
            single[f"token with {scope} only"] = {"Authorization": f"Bearer {made.json()['secret']}"}
        wrong: dict[str, dict[str, str]] = {
            "garbage": {"Authorization": "Bearer not-a-credential"},
            "unknown API token": {"Authorization": "Bearer csat_0123456789ab_" + "A" * 43},
            "foreign access token": {
                "Authorization": f"Bearer {access_token(person(Role.ADMIN), key=SigningKey.generate())}"
            },
            "wrong X-API-Key": {"X-API-Key": "dev-admin-key-but-wrong"},
        }
        no_scope = {"Authorization": f"Bearer {access_token(person(Role.ADMIN, scopes=[]))}"}
        checked: dict[str, int] = {}
        refused: set[tuple[str, str, str]] = set()
        for name, service in services.items():
            doc = (await service.client.get("/openapi.json")).json()
            routes = documented(doc)
            hidden = set(routes_of(service.app)) - routes  # served, but left out of the document
            undeclared = {r for r in hidden if r not in PUBLIC[name] and r not in SESSION_PAGES}
            assert not undeclared, f"{name} serves routes outside its OpenAPI document: {sorted(undeclared)}"
            for method, path in sorted(routes | hidden):
                url = filled(path, ids)
                where = f"{name} {method} {path}"
                if (method, path) in PUBLIC[name]:
                    assert_no_data(await service.client.request(method, url), where)
                    continue
                if (method, path) in SESSION_PAGES:
                    page = await service.client.request(method, url, follow_redirects=False)
                    assert page.status_code in (303, 403), f"{where}: {page.status_code}"
                    assert page.status_code == 403 or page.headers["location"].startswith("/signin"), where
                    assert_no_data(page, where)
                    continue
                body: dict[str, Any] | None = {} if method in ("POST", "PUT", "PATCH") else None
                answer = await service.client.request(method, url, json=body)
                assert_refused(answer, (401,), f"{where} without a credential")
                for label, headers in wrong.items():
                    answer = await service.client.request(method, url, json=body, headers=headers)
                    assert_refused(answer, (401,), f"{where} with a {label}")
                answer = await service.client.request(method, url, json=body, headers=no_scope)
                assert_refused(answer, (403,), f"{where} with a person without scopes")
                refusals = 0
                for label, headers in single.items():
                    answer = await service.client.request(method, url, json=body, headers=headers)
                    assert_no_data(answer, f"{where} with a {label}")
                    if answer.status_code == 403:
                        assert_refused(answer, (403,), f"{where} with a {label}")
                        refusals += 1
                assert refusals >= 1, f"{where} accepted both single-scope tokens"
                checked[name] = checked.get(name, 0) + 1
                refused.add((name, method, path))
        # Every service has data routes, and each was asked: a broken enumeration cannot pass.
        assert set(checked) == set(services) and all(n >= 2 for n in checked.values()), checked
        # The GDPR routes were enumerated and refused like the others (none slipped into a public list).
        assert refused >= GDPR_ROUTES, sorted(GDPR_ROUTES - refused)
        # ... and gdpr:admin alone opens them: each service's export holds the seeded customer, and the
        # console's export, which forwards the caller's credential to the four services, answers it too.
        made = await console.post(
            "/v1/tokens", json={"name": "gdpr", "role": "admin", "scopes": ["gdpr:admin"]}, headers=ADMIN
        )
        assert made.status_code in (200, 201), made.text
        gdpr = {"Authorization": f"Bearer {made.json()['secret']}"}
        export = filled(EXPORT, ids)
        for name in ("collector", "scorer", "actions", "notifier", "console"):
            answer = await services[name].client.get(export, headers=gdpr)
            assert answer.status_code == 200, f"{name} export with gdpr:admin: {answer.text[:300]}"
        for name in ("actions", "console"):  # actions holds the CRM address; the console joins all four
            answer = await services[name].client.get(export, headers=gdpr)
            assert EMAIL in answer.text, f"{name} export did not show the seeded customer"
        # Routes that start surveys or read and edit them are data routes, refused above like the others
        # (the helpdesk webhooks take the secret key as their bearer: not public).
        survey_routes = {
            ("collector", "POST", "/v1/interactions"),
            ("collector", "POST", "/v1/interactions/batch"),
            ("collector", "POST", "/v1/webhooks/{provider}"),
            ("actions", "GET", "/v1/surveys"),
            ("actions", "PUT", "/v1/surveys"),
            ("actions", "GET", "/v1/surveys/versions"),
            ("actions", "POST", "/v1/surveys/validate"),
            ("actions", "GET", "/v1/surveys/{survey_id}"),
            ("actions", "PUT", "/v1/surveys/{survey_id}"),
            ("actions", "DELETE", "/v1/surveys/{survey_id}"),
            ("actions", "GET", "/v1/surveys/{survey_id}/stats"),
        }
        assert refused >= survey_routes, sorted(survey_routes - refused)
        # The seeded data is there for whoever may read it (the refusals above were not for lack of it).
        answer = await services["notifier"].client.get("/v1/outbox", headers=ADMIN)
        assert EMAIL in answer.text or "Leakmarker" in answer.text
