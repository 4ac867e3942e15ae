"""The surveys admin API on in-memory stores: who may read and change it (rules:read, surveys:admin),
errors at the field, versions with If-Match, per-survey edits (audited), and the stats of a survey's
invitations (response rate = answered / sent)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.actions.deps import ActionsDeps
from services.actions.ports import InvitationUpdate, NewInvitation
from services.actions.routes import surveys as survey_routes
from services.actions.settings import ActionsSettings
from services.actions.surveybook import SurveyBook
from services.actions.surveys.definitions import load_surveys_text
from services.actions.yamlio import load_yaml
from shared.identity.scopes import Role, Scope
from tests.credentials import ADMIN, authenticator, bearer, person
from tests.fakes.actions_store import MemoryActions
from tests.fakes.identity_store import MemoryIdentityStore
from tests.helpers import make_settings
from tests.unit.test_actions_surveys import NOW, SURVEYS


def app(db: MemoryActions, audit: MemoryIdentityStore | None = None) -> TestClient:
    book = SurveyBook(
        file_document=load_yaml(SURVEYS), file_surveys=load_surveys_text(SURVEYS), file_origin="t"
    )
    deps: Any = ActionsDeps(
        settings=make_settings(ActionsSettings),
        transactions=db,  # the in-memory transactions
        rulebook=None,  # type: ignore[arg-type] # not used by these routes
        clock=lambda: NOW + timedelta(days=1),
        dry_run=None,  # type: ignore[arg-type] # not used by these routes
        surveybook=book,
        auth=authenticator("actions"),
        audit=audit or MemoryIdentityStore(),
        customer_ref=lambda customer_id: f"customer#{customer_id}",
    )
    api = FastAPI()
    api.include_router(survey_routes.router(deps))
    return TestClient(api)


def test_reading_needs_rules_read_and_changing_needs_surveys_admin() -> None:
    audit = MemoryIdentityStore()
    client = app(MemoryActions(), audit)
    assert client.get("/v1/surveys").status_code == 401
    assert client.get("/v1/surveys", headers={"Authorization": "Bearer wrong"}).status_code == 401
    csm = bearer(person(Role.CSM))
    for path in ("/v1/surveys", "/v1/surveys/versions", "/v1/surveys/post-delivery/stats"):
        assert client.get(path, headers=csm).status_code == 403, path
    manager = bearer(person(Role.MANAGER, subject="u-manager"))
    doc = client.get("/v1/surveys", headers=manager).json()
    assert client.get("/v1/surveys/post-delivery/stats", headers=manager).status_code == 200
    reader = bearer(person(Role.MANAGER, scopes=[Scope.RULES_READ]))
    assert client.get("/v1/surveys/post-delivery", headers=reader).status_code == 200
    assert client.put("/v1/surveys", json=doc, headers=reader).status_code == 403
    assert client.delete("/v1/surveys/post-delivery", headers=reader).status_code == 403
    assert audit.audit == []
    saved = client.put("/v1/surveys", json=doc, headers={**manager, "If-Match": '"1"'})
    assert saved.status_code == 200 and saved.json()["revision"] == 2
    (entry,) = [r.entry for r in audit.audit]
    assert (entry.action, entry.target, entry.details["revision"]) == ("surveys.update", "surveys", 2)
    assert "u-manager" in entry.actor


def test_versions_if_match_and_errors_at_the_field() -> None:
    client = app(MemoryActions())
    first = client.get("/v1/surveys", headers=ADMIN)
    assert first.status_code == 200 and first.json()["revision"] == 1 and first.headers["ETag"] == '"1"'
    doc = first.json()
    broken = {**doc, "surveys": [{**doc["surveys"][0], "question": {"en": "Hi?"}}]}
    bad = client.put("/v1/surveys", json=broken, headers=ADMIN)
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "question.fr" and bad.json()["survey"] == "post-delivery"
    checked = client.post("/v1/surveys/validate", json=broken, headers=ADMIN)
    assert checked.status_code == 422 and checked.json()["errors"][0]["field"] == "question.fr"
    changed = {**doc, "surveys": [{**doc["surveys"][0], "sampling": 10}]}
    saved = client.put("/v1/surveys", json=changed, headers={**ADMIN, "If-Match": '"1"'})
    assert saved.status_code == 200 and saved.json()["revision"] == 2
    stale = client.put("/v1/surveys", json=changed, headers={**ADMIN, "If-Match": '"1"'})
    assert stale.status_code == 412 and stale.json()["revision"] == 2
    one = {**doc["surveys"][0], "id": "second", "enabled": False}
    created = client.put("/v1/surveys/second", json=one, headers=ADMIN)
    assert created.status_code == 201 and created.json()["revision"] == 3
    assert client.get("/v1/surveys/second", headers=ADMIN).json()["survey"]["enabled"] is False
    assert client.delete("/v1/surveys/second", headers=ADMIN).json() == {"revision": 4, "deleted": "second"}
    assert client.get("/v1/surveys/second", headers=ADMIN).status_code == 404
    versions = client.get("/v1/surveys/versions", headers=ADMIN).json()["versions"]
    assert [v["version"] for v in versions] == [4, 3, 2, 1]


async def test_stats_count_the_funnel_and_the_response_rate() -> None:
    db = MemoryActions()
    async with db.begin() as stores:
        await stores.surveys.insert(
            invitations=[
                NewInvitation(
                    invitation_id=f"i{n}",
                    survey_id="post-delivery",
                    interaction_id=f"o{n}",
                    customer_id=f"c{n}",
                    channel="email",
                    locale="en",
                    segment={"store": "s1" if n < 6 else "s2"},
                    recipient={"email": f"c{n}@example.com"},
                    source="shop",
                    due_at=NOW,
                    expires_at=NOW + timedelta(hours=1),
                    reminder_at=None,
                )
                for n in range(10)
            ]
        )
        await stores.surveys.update(
            updates=[InvitationUpdate(f"i{n}", "requested", None, requested_at=NOW) for n in range(10)],
            now=NOW,
        )
        await stores.surveys.mark_delivery(outcomes={f"i{n}": ("sent", NOW) for n in range(8)})
        at = NOW + timedelta(minutes=5)
        await stores.surveys.mark_answered(answers={"i0": (at, True), "i1": (at, False), "i7": (at, False)})
    body = app(db).get("/v1/surveys/post-delivery/stats?by=segment.store", headers=ADMIN).json()
    assert (body["invited"], body["sent"], body["answered"], body["answered_with_comment"]) == (10, 8, 3, 1)
    assert body["response_rate"]["value"] == 3 / 8 and body["answered_per_invited"] == 3 / 10
    assert body["expired"] == 5  # sent, unanswered, and the clock is a day past the one-hour window
    assert body["time_to_answer_s"] == {"p50": 300.0, "p90": 300.0}
    groups = {g["group"]["segment.store"]: g for g in body["groups"]}
    assert (groups["s1"]["sent"], groups["s1"]["answered"]) == (6, 2)
    assert (groups["s2"]["invited"], groups["s2"]["sent"], groups["s2"]["answered"]) == (4, 2, 1)
    bad = app(db).get("/v1/surveys/post-delivery/stats?by=colour", headers=ADMIN)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "by"
