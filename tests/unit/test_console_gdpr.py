"""The console's GDPR routes on fakes: 202 only once the broker took the erasure, the opt-out carried,
a status per service, an export that is whole or refused, every call audited."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import pytest

from services.console.bootstrap import create_app
from services.console.ports import ErasureDone, EventsUnavailable
from services.console.settings import ConsoleSettings
from shared import events as ev
from shared.envelope import OutgoingRecord, decode
from shared.identity.accounts import TokenRequest, create_api_token
from shared.identity.passwords import Passwords
from shared.identity.ports import AuditAction, AuditOutcome, AuditQuery, NewUser
from shared.identity.scopes import Role, Scope
from tests.fakes.console_store import MemoryConsoleStore
from tests.fakes.identity_store import MemoryIdentityStore

CHEAP = Passwords(time_cost=1, memory_cost=8, parallelism=1)


@dataclass
class Events:
    records: list[OutgoingRecord] = field(default_factory=list)
    down: bool = False

    async def publish(self, record: OutgoingRecord) -> None:
        if self.down:
            raise EventsUnavailable("broker away")
        self.records.append(record)


@dataclass
class Services:
    """What the other services answer the console (by path)."""

    opted_out: bool | None = None  # None: actions holds no context (404)
    actions_down: bool = False
    failing: str | None = None  # the base URL of a service answering 500 to its export
    actions: str | None = None  # the actions service's base URL
    presented: dict[str, str] = field(default_factory=dict)  # URL -> the Authorization it came with

    def handle(self, request: httpx.Request) -> httpx.Response:
        host, path = str(request.url), request.url.path
        self.presented[host] = request.headers.get("authorization", "")
        if path.endswith("/export") and self.actions and host.startswith(self.actions):
            if self.actions_down:
                return httpx.Response(502)
            customer = (
                None if self.opted_out is None else {"email": "a@example.com", "opted_out": self.opted_out}
            )
            return httpx.Response(200, json={"customer": customer, "ratings": []})
        if path.endswith("/export"):
            if self.failing and host.startswith(self.failing):
                return httpx.Response(500, json={"title": "boom"})
            return httpx.Response(200, json={"from": host})
        return httpx.Response(404)


@dataclass
class Site:
    client: httpx.AsyncClient
    identity: MemoryIdentityStore
    console: MemoryConsoleStore
    events: Events
    services: Services
    gdpr: dict[str, str]
    reader: dict[str, str]
    urls: dict[str, str]

    async def audit(self, action: AuditAction) -> list[tuple[str | None, AuditOutcome]]:
        records = await self.identity.read_audit(query=AuditQuery(action=action))
        return [(r.entry.target, r.entry.outcome) for r in records]


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    identity = MemoryIdentityStore()
    admin = await identity.create_user(
        user=NewUser(email="ana@example.com", display_name="Ana", role=Role.ADMIN, segments=None)
    )

    async def token(*scopes: Scope) -> dict[str, str]:
        made = await create_api_token(
            tokens=identity,
            users=identity,
            audit=identity,
            by=admin.principal(),
            request=TokenRequest(name="t", role=Role.ADMIN, scopes=frozenset(scopes), expires_at=None),
            service="test",
            at=datetime.now(UTC),
        )
        return {"Authorization": f"Bearer {made.secret}"}

    events = Events()
    console = MemoryConsoleStore(identity)
    cfg = ConsoleSettings.model_validate(
        {"environment": "test", "live_enabled": False, "log_format": "console"}
    )
    services = Services(actions=str(cfg.service_urls.actions).rstrip("/"))
    http = httpx.AsyncClient(transport=httpx.MockTransport(services.handle))
    app = create_app(cfg, identity=identity, console=console, passwords=CHEAP, http=http, events=events)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://console.test") as client:
            yield Site(
                client=client,
                identity=identity,
                console=console,
                events=events,
                services=services,
                gdpr=await token(Scope.GDPR_ADMIN),
                reader=await token(Scope.AUDIT_READ),
                urls={name: str(getattr(cfg.service_urls, name)) for name in ("notifier", "actions")},
            )


async def test_erase_answers_202_once_published_with_the_opt_out_and_audits_the_erasure_id(
    site: Site,
) -> None:
    site.services.opted_out = True
    answer = await site.client.post("/v1/gdpr/customers/c:42/erase", headers=site.gdpr)
    assert answer.status_code == 202, answer.text
    erasure_id = answer.json()["erasure_id"]
    assert answer.json()["status_url"] == f"/v1/gdpr/erasures/{erasure_id}"
    [record] = site.events.records
    envelope = decode(headers=record.headers, key=record.key, value=record.value)
    erased = ev.CustomerErased.model_validate(envelope.data)
    assert envelope.type == ev.CUSTOMER_ERASED and record.key == b"c:42"
    assert record.topic.endswith("csat.customers.erased.v1")
    assert (erased.customer_id, erased.erasure_id, erased.opted_out) == ("c:42", erasure_id, True)
    assert erased.pseudonym.startswith("erased_") and "c:42" not in erased.pseudonym
    assert await site.audit(AuditAction.GDPR_ERASE) == [(erasure_id, AuditOutcome.OK)]
    site.services.opted_out = None  # no context in actions: nothing to keep
    again = await site.client.post("/v1/gdpr/customers/c-7/erase", headers=site.gdpr)
    assert again.status_code == 202
    assert ev.CustomerErased.model_validate(json.loads(site.events.records[1].value)).opted_out is False


async def test_erase_refuses_with_503_when_the_broker_or_actions_cannot_take_it(site: Site) -> None:
    site.events.down = True
    answer = await site.client.post("/v1/gdpr/customers/c-1/erase", headers=site.gdpr)
    assert answer.status_code == 503 and answer.headers["content-type"].startswith("application/problem+json")
    assert site.events.records == []
    [(target, outcome)] = await site.audit(AuditAction.GDPR_ERASE)
    assert outcome is AuditOutcome.FAILED and target is not None and target.startswith("er_")
    site.events.down = False
    site.services.opted_out = True
    site.services.actions_down = True
    refused = await site.client.post("/v1/gdpr/customers/c-1/erase", headers=site.gdpr)
    assert refused.status_code == 503 and site.events.records == []


async def test_status_shows_each_service_pending_then_done(site: Site) -> None:
    erasure_id = "er_" + "a" * 32
    first = (await site.client.get(f"/v1/gdpr/erasures/{erasure_id}", headers=site.gdpr)).json()
    assert first["complete"] is False
    assert {s["status"] for s in first["services"].values()} == {"pending"}
    at = datetime(2026, 12, 5, tzinfo=UTC)
    site.console.erasures[erasure_id] = [
        ErasureDone(service=s, erased_at=at, removed={f"{s}.t": 1})
        for s in ("collector", "scorer", "actions")
    ]
    partial = (await site.client.get(f"/v1/gdpr/erasures/{erasure_id}", headers=site.gdpr)).json()
    assert partial["complete"] is False and partial["services"]["notifier"] == {"status": "pending"}
    assert partial["services"]["scorer"] == {
        "status": "done",
        "erased_at": at.isoformat(),
        "removed": {"scorer.t": 1},
    }
    site.console.erasures[erasure_id].append(ErasureDone(service="notifier", erased_at=at, removed={}))
    done = (await site.client.get(f"/v1/gdpr/erasures/{erasure_id}", headers=site.gdpr)).json()
    assert done["complete"] is True
    bad = await site.client.get("/v1/gdpr/erasures/not-an-id", headers=site.gdpr)
    assert bad.status_code == 422


async def test_export_is_whole_or_refused_and_audited(site: Site) -> None:
    whole = await site.client.get("/v1/gdpr/customers/c-1/export", headers=site.gdpr)
    assert whole.status_code == 200 and whole.headers["cache-control"] == "no-store"
    assert set(whole.json()["services"]) == {"collector", "scorer", "actions", "notifier"}
    # Each service was shown the caller's own credential (it checks gdpr:admin itself), no key of ours.
    assert len(site.services.presented) == 4
    assert set(site.services.presented.values()) == {site.gdpr["Authorization"]}
    site.services.failing = site.urls["notifier"].rstrip("/")
    partial = await site.client.get("/v1/gdpr/customers/c-1/export", headers=site.gdpr)
    assert partial.status_code == 503 and "notifier" in partial.json()["detail"]
    assert "services" not in partial.json()
    assert await site.audit(AuditAction.GDPR_EXPORT) == [
        ("c-1", AuditOutcome.FAILED),
        ("c-1", AuditOutcome.OK),
    ]
    assert (await site.client.get("/v1/gdpr/customers/c-1/export", headers=site.reader)).status_code == 403
