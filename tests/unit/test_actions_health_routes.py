"""The accounts and health-model routes on the in-memory stores: keys (401, 403), 404, validation at
the component and field, versions, and the handler following the newest saved model."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.actions.deps import ActionsDeps
from services.actions.health.model import load_health_file
from services.actions.health_handler import HealthHandler
from services.actions.routes import accounts, health_models
from services.actions.settings import DEFAULT_HEALTH, ActionsSettings
from services.actions.yamlio import load_yaml
from shared import events as ev
from shared.identity.scopes import Role
from shared.topics import Topics
from tests.credentials import ADMIN, authenticator, bearer, person
from tests.fakes.actions_store import MemoryActions
from tests.fakes.identity_store import MemoryIdentityStore

#: A CSM who owns the accounts whose owner is ana@example.com (and sees no other).
CSM = bearer(person(Role.CSM, subject="u-ana", owner_email="ana@example.com"))
OTHER_CSM = bearer(person(Role.CSM, subject="u-bo", owner_email="bo@example.com"))
MANAGER = bearer(person(Role.MANAGER, subject="u-m"))
NOW = datetime(2026, 11, 23, tzinfo=UTC)


def make_deps(db: MemoryActions, **extra: Any) -> ActionsDeps:
    return ActionsDeps(
        settings=ActionsSettings.model_validate({"log_format": "console", "environment": "test"}),
        transactions=db,
        rulebook=None,  # type: ignore[arg-type] # these routes do not read the rules
        clock=lambda: NOW,
        dry_run=None,  # type: ignore[arg-type]
        surveybook=None,  # type: ignore[arg-type] # these routes do not read the surveys
        auth=authenticator("actions"),
        audit=MemoryIdentityStore(),
        customer_ref=lambda c: f"customer#{c}",
        **extra,
    )


def app(db: MemoryActions) -> TestClient:
    deps = make_deps(db)
    api = FastAPI()
    api.include_router(accounts.router(deps))
    api.include_router(health_models.router(deps))
    return TestClient(api)


def document() -> dict[str, Any]:
    data = load_yaml(DEFAULT_HEALTH.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_credentials_scopes_and_ownership() -> None:
    client = app(MemoryActions())
    assert client.get("/v1/accounts/at-risk").status_code == 401
    assert client.get("/v1/accounts/at-risk", headers={"Authorization": "Bearer nope"}).status_code == 401
    viewer = bearer(person(Role.VIEWER))  # no customers:read
    assert client.get("/v1/accounts/at-risk", headers=viewer).status_code == 403
    assert client.get("/v1/accounts/at-risk", headers=CSM).json() == {"accounts": []}
    assert client.get("/v1/accounts/acc/health", headers=CSM).status_code == 404
    # writes: customers:admin for an account, rules:admin for the model; a CSM has neither
    put = client.put("/v1/accounts/acc", json={"owner_email": "a@example.com"}, headers=CSM)
    assert put.status_code == 403
    assert client.put("/v1/health/model", json=document(), headers=CSM).status_code == 403
    assert client.get("/v1/health/model", headers=viewer).status_code == 403  # no rules:read
    assert client.get("/v1/health/model").status_code == 401


def test_a_csm_sees_only_owned_accounts() -> None:
    db = MemoryActions()
    client = app(db)
    for account, owner in (("mine", "ana@example.com"), ("theirs", "bo@example.com")):
        r = client.put(f"/v1/accounts/{account}", json={"owner_email": owner, "value": 10}, headers=ADMIN)
        assert r.status_code == 200, r.text
    handler = HealthHandler(
        model=load_health_file(DEFAULT_HEALTH), topics=Topics(prefix="u."), default_owner="csm@example.com"
    )
    weak = {"logins_7d": 1.0, "features_used": 1.0}
    observations = [
        ev.UsageObserved(observation_id=a, account_id=a, observed_at=NOW, received_at=NOW, signals=weak)
        for a in ("mine", "theirs")
    ]

    async def run() -> None:
        async with db.begin() as stores:
            await handler.on_batch(stores, observations=observations, now=NOW)

    asyncio.run(run())
    everyone = client.get("/v1/accounts/at-risk", headers=MANAGER).json()["accounts"]
    assert sorted(a["subject_id"] for a in everyone) == ["mine", "theirs"]
    # the owner filter cannot widen a CSM's list
    for params, expected in (({}, ["mine"]), ({"owner": "bo@example.com"}, [])):
        got = client.get("/v1/accounts/at-risk", params=params, headers=CSM).json()["accounts"]
        assert [a["subject_id"] for a in got] == expected
    assert client.get("/v1/accounts/mine/health", headers=CSM).status_code == 200
    assert client.get("/v1/accounts/theirs/health", headers=CSM).status_code == 404
    assert client.get("/v1/accounts/theirs/health", headers=OTHER_CSM).status_code == 200


def test_account_fields_are_validated_at_the_field() -> None:
    client = app(MemoryActions())
    r = client.put("/v1/accounts/acc", json={"owner_email": "not-an-address", "value": -1}, headers=ADMIN)
    assert r.status_code == 422
    fields = (
        {".".join(str(p) for p in e["loc"][1:]) for e in r.json()["detail"]}
        if "detail" in r.json()
        else set()
    )
    fields |= {e.get("field") for e in r.json().get("errors", [])}
    assert {"owner_email", "value"} <= fields
    ok = client.put("/v1/accounts/acc", json={"owner_email": "ana@example.com", "value": 10}, headers=ADMIN)
    assert ok.status_code == 200 and ok.json()["owner_email"] == "ana@example.com"


def test_a_wrong_model_is_refused_naming_the_component_and_field() -> None:
    client = app(MemoryActions())
    bad = document()
    bad["components"][0]["aggregate"] = "median"
    r = client.put("/v1/health/model", json=bad, headers=ADMIN)
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["field"] == "components.csat.aggregate"
    assert client.get("/v1/health/model", headers=ADMIN).json()["version"] is None


def test_saved_versions_and_the_handler_follows_the_newest() -> None:
    db = MemoryActions()
    client = app(db)
    changed = document()
    changed["bands"] = {"healthy": 95, "at_risk": 90}
    assert client.put("/v1/health/model", json=document(), headers=ADMIN).json() == {"version": 1}
    assert client.put("/v1/health/model", json=changed, headers=ADMIN).json() == {"version": 2}
    assert client.get("/v1/health/model", headers=ADMIN).json()["document"]["bands"]["healthy"] == 95
    assert [v["version"] for v in client.get("/v1/health/models", headers=ADMIN).json()["versions"]] == [2, 1]

    handler = HealthHandler(
        model=load_health_file(DEFAULT_HEALTH), topics=Topics(prefix="u."), default_owner="csm@example.com"
    )
    obs = ev.UsageObserved(
        observation_id="o1",
        account_id="acc",
        observed_at=NOW,
        received_at=NOW,
        signals={"logins_7d": 10, "features_used": 8},
    )

    async def run() -> None:
        async with db.begin() as stores:
            await handler.on_batch(stores, observations=[obs], now=NOW)

    asyncio.run(run())
    health = client.get("/v1/accounts/acc/health", headers=MANAGER).json()
    # the handler read version 2 (saved after it was built with the file's model)
    assert health["score"] == 100.0 and health["band"] == "healthy"
    assert db.tables.health_current[next(iter(db.tables.health_current))]["model_version"] == 2
    assert health["history"][-1]["score"] == 100.0


def test_resolving_an_alert_recomputes_the_accounts_health_and_publishes_it() -> None:
    from fastapi import FastAPI

    from services.actions.engine import AlertDraft
    from services.actions.routes import alerts
    from shared.envelope import OutgoingRecord
    from tests.fakes.actions_store import AlertRow

    db = MemoryActions()
    handler = HealthHandler(
        model=load_health_file(DEFAULT_HEALTH), topics=Topics(prefix="u."), default_owner="csm@example.com"
    )
    db.tables.alerts["a1"] = AlertRow(
        draft=AlertDraft("a1", "low-score", None, "c1", "csm@example.com", None, "high", None, {}),
        created_at=NOW,
    )
    obs = ev.UsageObserved(
        observation_id="o1",
        customer_id="c1",
        account_id="acc",
        observed_at=NOW,
        received_at=NOW,
        signals={"logins_7d": 10, "features_used": 8},
    )

    async def run() -> None:
        async with db.begin() as stores:
            await handler.on_batch(stores, observations=[obs], now=NOW)

    asyncio.run(run())
    published: list[OutgoingRecord] = []

    async def publish(records: Any) -> None:
        published.extend(records)

    deps = make_deps(db, health=handler, publish=publish)
    api = FastAPI()
    api.include_router(alerts.router(deps))
    api.include_router(accounts.router(deps))
    client = TestClient(api)
    before = client.get("/v1/accounts/acc/health", headers=MANAGER).json()
    alerts_line = next(c for c in before["explanation"] if c["id"] == "open_alerts")
    assert alerts_line["value"] == 1.0
    assert client.post("/v1/alerts/a1/resolve", headers=MANAGER).status_code == 200
    after = client.get("/v1/accounts/acc/health", headers=MANAGER).json()
    assert next(c for c in after["explanation"] if c["id"] == "open_alerts")["value"] == 0.0
    assert after["score"] > before["score"] and len(published) == 1
