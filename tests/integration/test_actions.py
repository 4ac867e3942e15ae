"""Actions on the real broker and PostgreSQL: rules admin API, alerts and SLA escalation, durable timers
across restarts and replicas, segment alerts, fatigue and verbatim routing."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from services.actions.bootstrap import create_app
from services.actions.engine import Policy
from services.actions.repository import PgTransactions
from services.actions.repository.erasure import scrub_customer
from services.actions.scheduler import Scheduler
from services.actions.settings import ActionsSettings
from services.collector.domain import RatingIn, normalize
from services.collector.intake import to_record
from shared import events as ev
from shared.db import make_engine
from shared.envelope import Envelope, OutgoingRecord, encode
from shared.identity.ports import AuditEntry, AuditQuery
from shared.identity.repository import PgIdentityStore
from shared.identity.scopes import Role
from shared.kafka import make_producer
from shared.scales import Metric
from shared.topics import Topics
from tests.credentials import ADMIN, JWKS, FreshBearer, bearer, person, prod_secrets
from tests.helpers import events_to_end, make_settings, produce, read_events, running, wait_for
from tests.infra import Infra

pytestmark = pytest.mark.integration

#: A CSM signed in to the console: owns the customers whose owner_email is theirs.
CSM = FreshBearer(person(Role.CSM, subject="u-ana", owner_email="owner@example.com"))
OTHER_CSM = FreshBearer(person(Role.CSM, subject="u-bo", owner_email="bo@example.com"))


def settings(infra: Infra, database_url: str, topics: Topics, **extra: Any) -> ActionsSettings:
    return make_settings(
        ActionsSettings,
        kafka_bootstrap=infra.bootstrap,
        database_url=database_url,
        topic_prefix=topics.prefix,
        timer_poll_s=0.2,
        identity_public_keys=JWKS,
        **extra,
    )


def rules_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / f"rules-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(body, encoding="utf-8")
    return path


def rating(
    rid: str,
    score: int,
    *,
    topic: str,
    customer: str | None = None,
    comment: str | None = None,
    contact: bool = True,
    survey_id: str | None = None,
    occurred_at: datetime | None = None,
    account: str | None = None,
) -> OutgoingRecord:
    body: dict[str, Any] = {
        "rating_id": rid,
        "metric": "csat",
        "scale": "1-5",
        "score": score,
        "customer": {"id": customer or f"cus-{rid}", "email": f"{rid}@example.com", "locale": "fr"},
        "segment": {"store": "paris-1"},
        "consent": {"contact": contact},
    }
    if comment:
        body["comment"] = comment
    if survey_id:
        body["survey_id"] = survey_id
    if occurred_at:
        body["occurred_at"] = occurred_at.isoformat()
    if account:
        body["account"] = {"id": account}
    return to_record(normalize(RatingIn.model_validate(body), received_at=datetime.now(UTC)), topic=topic)


def notes(events: list[Envelope]) -> list[ev.NotificationRequested]:
    return [e.data for e in events if isinstance(e.data, ev.NotificationRequested)]


async def sql(url: str, query: str, **params: Any) -> list[Any]:
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(text(query), params)
            return list(result.all()) if result.returns_rows else []
    finally:
        await engine.dispose()


async def applied(database_url: str, group: str, topic: str) -> int:
    """Records of ``topic`` the consumer group applied: the next offsets it stored with their effects."""
    rows = await sql(
        database_url,
        "SELECT next_offset FROM ops.consumer_offsets WHERE consumer_group = :g AND topic = :t",
        g=group,
        t=topic,
    )
    return sum(int(r.next_offset) for r in rows)


async def past(moment: str | datetime, *, ticks: float = 1.0) -> None:
    """Wait until ``ticks`` seconds after ``moment`` (a deadline the behaviour sets, not a result):
    at the tests' ``timer_poll_s`` of 0.2 s, five timer ticks, in which a timer that should not fire would.
    """
    at = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    await asyncio.sleep(max(0.0, (at - datetime.now(UTC)).total_seconds() + ticks))


# ---- rules admin API ------------------------------------------------------------------------------

NEW_RULES = """
version: 1
rules:
  - id: everything-to-support
    actions:
      - type: support_callback
        to: desk@example.com
"""


async def test_rules_admin_api_validates_versions_and_every_replica_follows(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    cfg = settings(infra, database_url, topics)
    replicas = [create_app(cfg), create_app(cfg)]
    async with running(replicas[0]) as a, running(replicas[1]) as b:
        assert (await a.get("/v1/rules")).status_code == 401
        assert (await a.get("/v1/rules", headers={"Authorization": "Bearer nope"})).status_code == 401
        refused = await a.get("/v1/rules", headers=CSM)  # a CSM's role has no rules:read
        assert refused.status_code == 403 and "rules:read" in refused.json()["detail"]
        no_scope = bearer(person(Role.MANAGER, scopes=[]))
        assert (await a.put("/v1/rules", content=NEW_RULES, headers=no_scope)).status_code == 403
        seeded = await a.get("/v1/rules", headers=ADMIN)
        assert seeded.status_code == 200 and seeded.json()["revision"] == 1
        assert seeded.json()["origin"] == "file" and seeded.headers["etag"] == '"1"'

        bad = "rules: [{id: broken, when: {sentimnt: negative}, actions: [{type: csm_alert}]}]"
        for path, method in (("/v1/rules/validate", "POST"), ("/v1/rules", "PUT")):
            r = await a.request(
                method, path, content=bad, headers={**ADMIN, "Content-Type": "application/yaml"}
            )
            assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
            problem = r.json()
            assert problem["rule"] == "broken" and problem["field"] == "when.sentimnt"
            assert "did you mean 'sentiment'" in problem["detail"]
        assert (await b.get("/v1/rules", headers=ADMIN)).json()["revision"] == 1  # nothing stored

        ok = await a.post("/v1/rules/validate", content=NEW_RULES, headers=ADMIN)
        assert ok.json() == {"valid": True, "rules": ["everything-to-support"], "sequences": []}
        stale = await a.put("/v1/rules", content=NEW_RULES, headers={**ADMIN, "If-Match": '"7"'})
        assert stale.status_code == 412 and stale.json()["revision"] == 1
        put = await a.put("/v1/rules", content=NEW_RULES, headers={**ADMIN, "If-Match": '"1"'})
        assert put.status_code == 200 and put.json()["revision"] == 2

        # The other replica serves the new revision at once, and its consumer applies it.
        got = (await b.get("/v1/rules", headers=ADMIN)).json()
        assert got["revision"] == 2 and [r["id"] for r in got["rules"]] == ["everything-to-support"]
        consumers = [app.state.runtime for app in replicas]

        async def assigned() -> list[int]:
            return [
                len(rt.consumer._consumer.assignment()) if rt.consumer and rt.consumer._consumer else 0
                for rt in consumers
            ]

        # ratings, scores, interactions, notification outcomes and usage: 5 topics x 3 partitions
        await wait_for(assigned, until=lambda n: sum(n) == 15 and min(n) > 0, timeout_s=60)
        await produce(infra.bootstrap, [rating(f"rep-{i}", 1, topic=topics.ratings) for i in range(12)])

        async def decisions() -> list[dict[str, Any]]:
            r = await a.get("/v1/decisions", params={"limit": 100}, headers=ADMIN)
            return list(r.json()["decisions"])

        found = await wait_for(decisions, until=lambda d: len(d) == 12)
        assert {d["rule_id"] for d in found} == {"everything-to-support"}
        assert all(rt.consumer is not None and rt.consumer.processed > 0 for rt in consumers)

        # One rule at a time, and the YAML view.
        one = {
            "description": "promoters",
            "when": {"normalized": {"gte": 0.9}},
            "actions": [{"type": "csm_alert"}],
        }
        created = await a.put("/v1/rules/promoter-watch", json=one, headers=ADMIN)
        assert created.status_code == 201 and created.json()["revision"] == 3
        updated = await b.put("/v1/rules/promoter-watch", json={**one, "enabled": False}, headers=ADMIN)
        assert updated.status_code == 200 and updated.json()["revision"] == 4
        wrong = await a.put("/v1/rules/promoter-watch", json={**one, "cooldown": "soon"}, headers=ADMIN)
        assert wrong.status_code == 422 and wrong.json()["field"] == "cooldown"
        assert (await a.get("/v1/rules/promoter-watch", headers=ADMIN)).json()["rule"]["enabled"] is False
        assert (await a.delete("/v1/rules/promoter-watch", headers=ADMIN)).json()["revision"] == 5
        assert (await a.delete("/v1/rules/promoter-watch", headers=ADMIN)).status_code == 404
        as_yaml = await a.get("/v1/rules", params={"format": "yaml"}, headers=ADMIN)
        assert as_yaml.headers["content-type"].startswith("application/yaml")
        assert as_yaml.text.startswith("# revision 5 (api)") and "everything-to-support" in as_yaml.text
        versions = (await a.get("/v1/rules/versions", headers=ADMIN)).json()["versions"]
        changes = [
            (e.actor, e.action.value, e.target)
            for e in await audit_of(database_url)
            if e.action.value.startswith("rules.")
        ]
        assert changes == [
            ("token:bootstrap", "rules.update", "rules"),
            ("token:bootstrap", "rules.update", "rule:promoter-watch"),
            ("token:bootstrap", "rules.update", "rule:promoter-watch"),
            ("token:bootstrap", "rules.delete", "rule:promoter-watch"),
        ]
        assert [(v["version"], v["origin"]) for v in versions][-1] == (1, "file")
        assert len(versions) == 5

    # A restart with the same file keeps the API's rules.
    async with running(create_app(cfg)) as c:
        assert (await c.get("/v1/rules", headers=ADMIN)).json()["revision"] == 5


async def test_webhook_and_slack_urls_are_refused_at_save_time_naming_the_field(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    def rule(kind: str, url: str) -> dict[str, Any]:
        return {"actions": [{"type": kind, "to": url, "template": "csm_alert"}]}

    async with running(create_app(settings(infra, database_url, topics, environment="test"))) as a:
        refused = await a.put(
            "/v1/rules/hook", json=rule("webhook", "https://169.254.169.254/x"), headers=ADMIN
        )
        assert refused.status_code == 422 and refused.json()["field"] == "actions.0.to"
        assert refused.json()["rule"] == "hook" and "cloud metadata" in refused.json()["detail"]
        internal = await a.post(
            "/v1/rules/validate",
            json={"rules": [{"id": "m", **rule("slack", "http://10.0.0.7/x")}]},
            headers=ADMIN,
        )
        assert internal.status_code == 422 and "private" in internal.json()["detail"]
    # CSAT_OUTBOUND_ALLOW opens an internal receiver.
    allowed = settings(infra, database_url, topics, environment="test", outbound_allow=["10.0.0.0/24"])
    async with running(create_app(allowed)) as a:
        assert (
            await a.put("/v1/rules/chat", json=rule("slack", "http://10.0.0.7/x"), headers=ADMIN)
        ).status_code == 201
    # Prod: https only.
    key = "a-real-admin-key-for-the-prod-test"
    address_key = prod_secrets()["address_hash_key"]  # prod refuses to start without one
    prod = settings(
        infra,
        database_url,
        topics,
        environment="prod",
        admin_api_key=key,
        address_hash_key=address_key,
        signing_secret=prod_secrets()["signing_secret"],
        survey_link_base_url="https://collect.example.com",
    )
    async with running(create_app(prod)) as a:
        # In prod the bootstrap key only creates people and tokens; a manager edits the rules.
        bootstrap = {"Authorization": f"Bearer {key}"}
        only_bootstrap = await a.put(
            "/v1/rules/chat", json=rule("slack", "https://hooks.example.com/x"), headers=bootstrap
        )
        assert only_bootstrap.status_code == 403
        headers = bearer(person(Role.MANAGER))
        plain = await a.put(
            "/v1/rules/chat", json=rule("slack", "http://hooks.example.com/x"), headers=headers
        )
        assert plain.status_code == 422 and "https://" in plain.json()["detail"]
        tls = await a.put(
            "/v1/rules/chat", json=rule("slack", "https://hooks.example.com/x"), headers=headers
        )
        assert tls.status_code == 200


# ---- alerts and SLA escalation --------------------------------------------------------------------

SLA_RULES = """
rules:
  - id: vip-alert
    actions:
      - {type: csm_alert, priority: high, sla: 3s, escalate: true}
"""


async def test_sla_escalates_an_unacknowledged_alert_and_not_an_acknowledged_one(
    infra: Infra, database_url: str, topics: Topics, tmp_path: Path
) -> None:
    cfg = settings(
        infra,
        database_url,
        topics,
        rules_file=rules_file(tmp_path, SLA_RULES),
        csm_managers={"owner@example.com": "manager@example.com"},
    )
    async with running(create_app(cfg)) as client:
        for cid in ("cus-late", "cus-quick"):
            put = await client.put(
                f"/v1/customers/{cid}", json={"owner_email": "owner@example.com"}, headers=ADMIN
            )
            assert put.status_code == 200
        await produce(
            infra.bootstrap,
            [
                rating("late", 1, topic=topics.ratings, customer="cus-late"),
                rating("quick", 1, topic=topics.ratings, customer="cus-quick"),
            ],
        )
        assert (await client.get("/v1/alerts")).status_code == 401

        async def open_alerts() -> list[dict[str, Any]]:
            r = await client.get(
                "/v1/alerts", params={"status": "open", "owner": "owner@example.com"}, headers=CSM
            )
            return list(r.json()["alerts"])

        alerts = {a["customer_id"]: a for a in await wait_for(open_alerts, until=lambda a: len(a) == 2)}
        quick = alerts["cus-quick"]
        assert quick["priority"] == "high" and quick["owner_email"] == "owner@example.com"
        assert quick["context"]["rating"]["score"] == 1 and quick["due_at"] is not None
        # Another CSM sees none of them and cannot act on them.
        assert (await client.get("/v1/alerts", headers=OTHER_CSM)).json()["alerts"] == []
        foreign = f"/v1/alerts/{quick['alert_id']}"
        assert (await client.get(foreign, headers=OTHER_CSM)).status_code == 404
        assert (await client.post(f"{foreign}/ack", headers=OTHER_CSM)).status_code == 404
        # The transition is the caller's, whatever the body says.
        ack = await client.post(f"/v1/alerts/{quick['alert_id']}/ack", json={"by": "Mallory"}, headers=CSM)
        assert ack.status_code == 200 and ack.json()["status"] == "acknowledged"
        assert ack.json()["acknowledged_by"] == "person:u-ana"

        events = await read_events(infra.bootstrap, topics.notifications, count=3, timeout_s=30)
        escalations = [n for n in notes(events) if n.template == "sla_escalation"]
        assert len(escalations) == 1
        assert escalations[0].customer_id == "cus-late"
        assert escalations[0].recipient.email == "manager@example.com"
        assert escalations[0].context["alert"]["id"] == alerts["cus-late"]["alert_id"]

        # Past the acknowledged alert's due time (and five timer ticks): still one escalation only. The
        # scheduler publishes before it commits, so the topic holds whatever it fired.
        await past(quick["due_at"])
        events = await events_to_end(infra.bootstrap, topics.notifications)
        assert Counter(n.template for n in notes(events)) == {"csm_alert": 2, "sla_escalation": 1}
        timers = {
            r.ref: (r.status, r.outcome)
            for r in await sql(database_url, "SELECT ref, status, outcome FROM actions.timers")
        }
        assert timers == {
            alerts["cus-late"]["alert_id"]: ("fired", "escalated"),
            quick["alert_id"]: ("cancelled", "acknowledged"),
        }
        late = (await client.get(f"/v1/alerts/{alerts['cus-late']['alert_id']}", headers=ADMIN)).json()
        assert late["status"] == "open" and late["escalated_at"] is not None
        # Assigning: alerts:write and owned (another CSM: 404, a viewer: 403), the caller's, audited.
        handover = f"/v1/alerts/{late['alert_id']}/assign"
        to_bo = {"owner_email": "bo@example.com", "owner_name": "Bo", "by": "Mallory"}
        assert (await client.post(handover, json=to_bo)).status_code == 401
        viewer = bearer(person(Role.VIEWER, subject="u-vi"))
        assert (await client.post(handover, json=to_bo, headers=viewer)).status_code == 403
        assert (await client.post(handover, json=to_bo, headers=OTHER_CSM)).status_code == 404
        assert (await client.get(f"/v1/alerts/{late['alert_id']}", headers=ADMIN)).json()["owner_email"] == (
            "owner@example.com"
        )
        handed = await client.post(handover, json=to_bo, headers=CSM)
        assert handed.status_code == 200, handed.text
        assert handed.json()["owner_email"] == "bo@example.com"
        assert handed.json()["context"]["assigned"]["by"] == "person:u-ana"  # not the body's "Mallory"
        assert (await client.get(f"/v1/alerts/{late['alert_id']}", headers=CSM)).status_code == 404
        assert (await client.get(f"/v1/alerts/{late['alert_id']}", headers=OTHER_CSM)).status_code == 200

        resolved = await client.post(
            f"/v1/alerts/{quick['alert_id']}/resolve", json={"note": "called"}, headers=CSM
        )
        assert resolved.json()["status"] == "resolved" and resolved.json()["note"] == "called"
        again = await client.post(f"/v1/alerts/{quick['alert_id']}/ack", headers=CSM)
        assert again.status_code == 409
        assert (await client.post("/v1/alerts/nope/ack", headers=CSM)).status_code == 404
        left = await client.get("/v1/alerts", params={"status": "resolved"}, headers=CSM)
        assert [a["customer_id"] for a in left.json()["alerts"]] == ["cus-quick"]
        # Each transition is in the audit log: who, what, which alert; refusals changed nothing.
        audit = await audit_of(database_url)
        transitions = [
            (e.actor, e.action.value, e.target, e.details)
            for e in audit
            if e.action.value.startswith("alert.")
        ]
        assert transitions == [
            ("person:u-ana", "alert.ack", f"alert:{quick['alert_id']}", {"status": "acknowledged"}),
            ("person:u-ana", "alert.assign", f"alert:{late['alert_id']}", {"assigned": "owner"}),
            ("person:u-ana", "alert.resolve", f"alert:{quick['alert_id']}", {"status": "resolved"}),
        ]


# ---- re-survey timer across a restart -------------------------------------------------------------

RESURVEY_RULES = """
rules:
  - id: ask-why
    when: {sentiment: negative, has_comment: false, consent.contact: true}
    actions:
      - {type: resurvey, follow_up_after: 4s, follow_up_to: callbacks@example.com}
"""


async def test_resurvey_timer_survives_a_restart_and_an_answer_cancels_it(
    infra: Infra, database_url: str, topics: Topics, tmp_path: Path
) -> None:
    cfg = settings(infra, database_url, topics, rules_file=rules_file(tmp_path, RESURVEY_RULES))
    async with running(create_app(cfg)):
        await produce(
            infra.bootstrap,
            [
                rating("silent", 1, topic=topics.ratings, customer="cus-silent"),
                rating("talker", 2, topic=topics.ratings, customer="cus-talker"),
            ],
        )
        first = notes(await read_events(infra.bootstrap, topics.notifications, count=2))
        assert {n.template for n in first} == {"resurvey_open_question"}
        survey = {n.customer_id: n.context["survey"]["id"] for n in first}
        # The talker answers the open question; the silent customer does not.
        await produce(
            infra.bootstrap,
            [rating("answer", 2, topic=topics.ratings, customer="cus-talker", comment="Trop d'attente")],
        )

        async def pending() -> list[Any]:
            return await sql(database_url, "SELECT ref, status, outcome FROM actions.timers ORDER BY ref")

        rows = await wait_for(pending, until=lambda rs: any(r.status == "cancelled" for r in rs))
        assert {r.ref: (r.status, r.outcome) for r in rows} == {
            survey["cus-silent"]: ("pending", None),
            survey["cus-talker"]: ("cancelled", "answered"),
        }
    # The service is down when the timer comes due.
    (due,) = await sql(
        database_url, "SELECT due_at FROM actions.timers WHERE ref = :s", s=survey["cus-silent"]
    )
    await past(due.due_at, ticks=0.5)
    assert [
        r.status
        for r in await sql(
            database_url, "SELECT status FROM actions.timers WHERE ref = :s", s=survey["cus-silent"]
        )
    ] == ["pending"]
    async with running(create_app(cfg)):

        async def callbacks() -> list[ev.NotificationRequested]:
            events = await read_events(infra.bootstrap, topics.notifications, count=3, timeout_s=2)
            return [n for n in notes(events) if n.template == "support_callback"]

        found = await wait_for(callbacks, until=lambda c: len(c) >= 1, timeout_s=30)
        # Nothing fires twice: five more timer ticks, then the topic holds two re-surveys and one callback.
        await past(datetime.now(UTC))
        events = await events_to_end(infra.bootstrap, topics.notifications)
    assert len(found) == 1
    (callback,) = found
    assert callback.customer_id == "cus-silent" and callback.recipient.email == "callbacks@example.com"
    assert callback.transactional and callback.context["customer"]["email"] == "silent@example.com"
    assert Counter(n.template for n in notes(events)) == {"resurvey_open_question": 2, "support_callback": 1}


# ---- survey re-clicks ------------------------------------------------------------------------------

RECLICK_RULES = """
rules:
  - id: unhappy-to-desk
    when: {sentiment: negative}
    actions:
      - {type: support_callback, to: desk@example.com}
"""


def reclick(rid: str, score: int, revision: int, *, topic: str, comment: str | None = None) -> OutgoingRecord:
    body: dict[str, Any] = {
        "rating_id": rid,
        "metric": "csat",
        "scale": "1-5",
        "score": score,
        "customer": {"id": f"cus-{rid}", "email": f"{rid}@example.com", "locale": "fr"},
        "segment": {"store": "paris-1"},
        **({"comment": comment} if comment else {}),
    }
    answer = normalize(RatingIn.model_validate(body), received_at=datetime.now(UTC))
    return to_record(answer.model_copy(update={"revision": revision}), topic=topic)


async def test_a_reclick_updates_the_rating_and_alerts_once_whatever_the_replays(
    infra: Infra, database_url: str, topics: Topics, tmp_path: Path
) -> None:
    cfg = settings(infra, database_url, topics, rules_file=rules_file(tmp_path, RECLICK_RULES))
    t = topics.ratings
    async with running(create_app(cfg)):
        await produce(infra.bootstrap, [rating("rc", 5, topic=t)])
        # 5 corrected to 1 (with a comment), that revision replayed, the first answer late, then 1 -> 2.
        await produce(
            infra.bootstrap,
            [
                reclick("rc", 1, 1, topic=t, comment="Colis abîmé, livraison en retard"),
                reclick("rc", 1, 1, topic=t, comment="Colis abîmé, livraison en retard"),
                rating("rc", 5, topic=t),
                reclick("rc", 2, 2, topic=t),
            ],
        )

        async def stored() -> list[Any]:
            return await sql(
                database_url,
                "SELECT score, sentiment, revision, has_comment FROM actions.ratings WHERE rating_id = 'rc'",
            )

        rows = await wait_for(stored, until=lambda rs: bool(rs) and rs[0].revision == 2, timeout_s=30)
        assert [tuple(r) for r in rows] == [(2, "negative", 2, False)]
        # Every answer applied (their decisions published before each batch's offsets were stored).
        await wait_for(lambda: applied(database_url, cfg.consumer_group, t), until=lambda n: n == 5)
        events = await events_to_end(infra.bootstrap, topics.notifications)
    callbacks = [n for n in notes(events) if n.template == "support_callback"]
    # Revisions 1 and 2 may share a batch (then the newest is decided): either way, one callback.
    assert len(callbacks) == 1 and callbacks[0].context["rating"]["score"] in (1, 2)
    decided = await sql(database_url, "SELECT rule_id FROM actions.decisions WHERE rating_id = 'rc'")
    assert [r.rule_id for r in decided] == ["unhappy-to-desk"]


async def test_an_erasure_stops_pending_invitations_and_reminders_and_keeps_only_a_hash(
    infra: Infra, database_url: str
) -> None:
    now = datetime.now(UTC)
    rows = [
        # (invitation, customer, status, delivery, next_at): due later, reminder pending, done, someone else
        ("inv-due", "cus-e", "scheduled", "pending", now + timedelta(hours=1)),
        ("inv-remind", "cus-e", "requested", "sent", now + timedelta(days=3)),
        ("inv-done", "cus-e", "requested", "sent", None),
        ("inv-other", "cus-o", "scheduled", "pending", now + timedelta(hours=1)),
    ]
    for iid, cid, status, delivery, next_at in rows:
        await sql(
            database_url,
            "INSERT INTO actions.survey_invitations (invitation_id, survey_id, interaction_id, customer_id, "
            "channel, locale, recipient, due_at, expires_at, next_at, status, delivery) VALUES (:i, 's', :i, "
            ":c, 'email', 'fr', CAST(:r AS jsonb), :now, :exp, :next, :st, :d)",
            i=iid,
            c=cid,
            r=json.dumps({"email": f"{cid}@example.com"}),
            now=now,
            exp=now + timedelta(days=7),
            next=next_at,
            st=status,
            d=delivery,
        )
    erased = ev.CustomerErased(erasure_id="er-1", customer_id="cus-e", pseudonym="anon-1", requested_at=now)
    engine = make_engine(database_url)
    try:
        async with engine.begin() as conn:
            removed = await scrub_customer(conn, erased)
        async with engine.begin() as conn:
            await scrub_customer(conn, erased)  # a replayed erasure changes nothing more
        async with PgTransactions(engine).connect() as stores:
            assert await stores.customers.erased(customer_ids=["cus-e", "cus-o", "anon-1"]) == {"cus-e"}
    finally:
        await engine.dispose()
    assert removed["actions.survey_invitations"] == 3 and removed["actions.erased_customers"] == 1
    after = await sql(
        database_url,
        "SELECT invitation_id, customer_id, status, next_at, stop_reason, recipient "
        "FROM actions.survey_invitations ORDER BY invitation_id",
    )
    assert [(r.invitation_id, r.customer_id, r.status, r.next_at, r.stop_reason) for r in after] == [
        ("inv-done", "anon-1", "requested", None, None),
        ("inv-due", "anon-1", "stopped", None, "erased"),
        ("inv-other", "cus-o", "scheduled", now + timedelta(hours=1), None),
        ("inv-remind", "anon-1", "requested", None, "erased"),
    ]
    assert [r.recipient for r in after if r.customer_id == "anon-1"] == [{}, {}, {}]
    hashes = await sql(database_url, "SELECT encode(customer_hash, 'hex') AS h FROM actions.erased_customers")
    assert [r.h for r in hashes] == [hashlib.sha256(b"cus-e").hexdigest()]


# ---- two schedulers, one database -----------------------------------------------------------------


async def test_two_schedulers_fire_each_timer_exactly_once(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    due = datetime.now(UTC) - timedelta(seconds=1)
    payload = {
        "rule_id": "bulk",
        "action": "customer_email",
        "index": 0,
        "template": "thank_you",
        "channel": "email",
        "locale": "en",
        "context": {"customer": {"email": "x@example.com"}},
    }
    rows = [
        {"id": f"t-{i}", "c": f"cus-{i}", "due": due, "p": json.dumps({**payload, "customer_id": f"cus-{i}"})}
        for i in range(60)
    ]
    engine = make_engine(database_url)
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO actions.timers (timer_id, kind, ref, customer_id, due_at, payload) "
                "VALUES (:id, 'send', NULL, :c, :due, CAST(:p AS jsonb))"
            ),
            rows,
        )
    producer = make_producer(bootstrap=infra.bootstrap, client_id="t", idempotence=False)
    await producer.start()
    try:
        schedulers = [
            Scheduler(
                transactions=PgTransactions(engine),
                producer=lambda: producer,
                topics=topics,
                policy=Policy(),
                batch=7,
            )
            for _ in range(3)
        ]

        async def drain(s: Scheduler) -> int:
            total = 0
            while (n := await s.tick()) > 0:
                total += n
            return total

        claimed = await asyncio.gather(*(drain(s) for s in schedulers))
    finally:
        await producer.stop()
    assert sum(claimed) == 60
    async with engine.connect() as conn:
        states = (
            await conn.execute(text("SELECT status, count(*) FROM actions.timers GROUP BY status"))
        ).all()
    await engine.dispose()
    assert [tuple(s) for s in states] == [("fired", 60)]
    events = await events_to_end(infra.bootstrap, topics.notifications)  # published before each commit
    ids = [n.notification_id for n in notes(events)]
    assert len(ids) == 60 and len(set(ids)) == 60


# ---- segment alerts -------------------------------------------------------------------------------


def segment_event(alert_id: str, topic: str, attributes: dict[str, str]) -> OutgoingRecord:
    key = "|".join(f"{k}={v}" for k, v in sorted(attributes.items()))
    data = ev.SegmentAlert(
        alert_id=alert_id,
        metric=Metric.CSAT,
        window="7d",
        segment=key,
        segment_attributes=attributes,
        reason="dropped",
        score=58.0,
        previous=81.0,
        p_value=0.01,
        responses=140,
        computed_at=datetime.now(UTC),
    )
    return encode(
        topic=topic, event_type=ev.SEGMENT_ALERT, source="/test", event_id=alert_id, data=data, key=key
    )


async def test_segment_alert_notifies_the_segment_owner_once_and_score_changes_are_ignored(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    cfg = settings(
        infra, database_url, topics, segment_owners={"store=paris-1": "paris1-manager@example.com"}
    )
    changed = ev.ScoreChanged(
        metric=Metric.CSAT,
        window="7d",
        segment="store=paris-1",
        segment_attributes={"store": "paris-1"},
        score=58.0,
        responses=140,
        insufficient=False,
        computed_at=datetime.now(UTC),
    )
    await produce(
        infra.bootstrap,
        [
            encode(
                topic=topics.scores,
                event_type=ev.SCORE_CHANGED,
                source="/test",
                event_id="sc-1",
                data=changed,
                key="store=paris-1",
            ),
            segment_event("sa-1", topics.scores, {"store": "paris-1"}),
            segment_event("sa-1", topics.scores, {"store": "paris-1"}),  # the scorer published it twice
            segment_event("sa-2", topics.scores, {"store": "lyon-2"}),  # nobody owns lyon-2
        ],
    )
    async with running(create_app(cfg)) as client:

        async def decisions() -> list[dict[str, Any]]:
            return list((await client.get("/v1/decisions", headers=ADMIN)).json()["decisions"])

        found = await wait_for(decisions, until=lambda d: len(d) == 2)
        assert sorted(d["outcome"] for d in found) == ["notified", "skipped_no_recipient"]
        # All four records applied, the duplicate too (published before their offsets were stored).
        await wait_for(
            lambda: applied(database_url, cfg.consumer_group, topics.scores), until=lambda n: n == 4
        )
        events = await events_to_end(infra.bootstrap, topics.notifications)
        (note,) = notes(events)
        assert note.template == "segment_alert" and note.recipient.email == "paris1-manager@example.com"
        assert note.context["segment"]["previous"] == 81.0 and note.transactional
        assert events[0].key == "store=paris-1"
        assert await events_to_end(infra.bootstrap, topics.dlq_actions) == []


# ---- fatigue, opt-out, nurture and verbatims ------------------------------------------------------

FATIGUE_RULES = """
sequences:
  quick:
    steps:
      - {after: 1s, template: nurture_education}
      - {after: 2s, template: nurture_education}
rules:
  - id: sorry
    when: {sentiment: negative}
    actions: [{type: customer_email, template: low_score_followup}]
  - id: teach
    when: {sentiment: negative}
    actions: [{type: nurture, sequence: quick}]
  - id: critical
    when: {sentiment: negative, comment.sentiment: negative, themes: {present: true}}
    actions: [{type: theme_alert}]
"""


async def test_daily_cap_opt_out_nurture_steps_and_theme_routing(
    infra: Infra, database_url: str, topics: Topics, tmp_path: Path
) -> None:
    cfg = settings(infra, database_url, topics, rules_file=rules_file(tmp_path, FATIGUE_RULES), daily_cap=2)
    async with running(create_app(cfg)) as client:
        opt = await client.put("/v1/customers/cus-out", json={"opted_out": True}, headers=ADMIN)
        assert opt.status_code == 200
        await produce(
            infra.bootstrap,
            [
                rating(
                    "capped",
                    1,
                    topic=topics.ratings,
                    customer="cus-cap",
                    comment="Livraison en retard, très déçu",
                ),
                rating("out", 1, topic=topics.ratings, customer="cus-out"),
            ],
        )

        async def decisions(cid: str) -> list[dict[str, Any]]:
            r = await client.get("/v1/decisions", params={"customer_id": cid}, headers=ADMIN)
            return list(r.json()["decisions"])

        # cus-cap: apology now (1), enrolled; step 1 after 1 s (2); step 2 after 2 s hits the cap of 2.
        capped = await wait_for(lambda: decisions("cus-cap"), until=lambda d: len(d) == 5, timeout_s=30)
        outcomes = Counter((d["rule_id"], d["outcome"]) for d in capped)
        assert outcomes == {
            ("sorry", "notified"): 1,
            ("teach", "scheduled"): 1,
            ("critical", "notified"): 1,
            ("teach", "notified"): 1,
            ("teach", "skipped_daily_cap"): 1,
        }
        out = await decisions("cus-out")
        assert sorted(d["outcome"] for d in out) == ["skipped_opted_out", "skipped_opted_out"]

        await past(datetime.now(UTC))  # five more timer ticks: the capped step stays unsent
        events = await events_to_end(infra.bootstrap, topics.notifications)
        assert len(events) == 3
        by_template = {n.template: n for n in notes(events)}
        assert set(by_template) == {"low_score_followup", "nurture_education", "theme_alert"}
        assert by_template["theme_alert"].recipient.email == "logistics@example.com"
        assert by_template["nurture_education"].context["sequence"] == {
            "name": "quick",
            "step": 1,
            "steps": 2,
        }
        assert all(n.customer_id == "cus-cap" for n in by_template.values())
        stored = await sql(
            database_url, "SELECT themes, comment_sentiment FROM actions.ratings WHERE rating_id = 'capped'"
        )
        assert [(list(r.themes), r.comment_sentiment) for r in stored] == [(["delivery_time"], "negative")]
        enrolment = await sql(
            database_url, "SELECT status FROM actions.enrolments WHERE customer_id = 'cus-cap'"
        )
        assert [r.status for r in enrolment] == ["completed"]

        # A second low score an hour later: the cap still holds the apology back.
        await produce(
            infra.bootstrap,
            [
                rating(
                    "capped-2",
                    2,
                    topic=topics.ratings,
                    customer="cus-cap",
                    occurred_at=datetime.now(UTC) + timedelta(seconds=1),
                )
            ],
        )
        later = await wait_for(lambda: decisions("cus-cap"), until=lambda d: len(d) >= 7, timeout_s=30)
        second = {d["rule_id"]: d["outcome"] for d in later if d["rating_id"] == "capped-2"}
        assert second == {"sorry": "skipped_daily_cap", "teach": "scheduled"}


async def test_customer_api_is_guarded_and_validated(infra: Infra, database_url: str, topics: Topics) -> None:
    async with running(create_app(settings(infra, database_url, topics))) as client:
        assert (await client.put("/v1/customers/c1", json={})).status_code == 401
        bad = await client.put("/v1/customers/c1", json={"phone": "0612"}, headers=ADMIN)
        assert bad.status_code == 422 and bad.json()["field"] == "phone"
        good = await client.put(
            "/v1/customers/c1",
            json={
                "email": "c1@example.com",
                "tier": "gold",
                "value": 12000,
                "owner_email": "csm1@example.com",
                "consent": {"contact": True},
                "locale": "fr",
                "attributes": {"seats": 12, "last_login_days": 40},
            },
            headers=ADMIN,
        )
        assert good.status_code == 200 and good.json()["attributes"]["seats"] == 12
        assert (await client.get("/v1/customers/c1", headers=ADMIN)).json()["value"] == 12000.0
        assert (await client.get("/v1/customers/zz", headers=ADMIN)).status_code == 404
        # A CSM reads the customers they own (by owner address or account), writes none of them.
        csm1 = bearer(person(Role.CSM, owner_email="CSM1@example.com"))
        assert (await client.get("/v1/customers/c1", headers=csm1)).json()["tier"] == "gold"
        assert (await client.put("/v1/customers/c1", json={}, headers=csm1)).status_code == 403
        other = await client.get("/v1/customers/c1", headers=OTHER_CSM)
        assert other.status_code == 404 and "c1@example.com" not in other.text
        await client.put("/v1/customers/c2", json={"attributes": {"account_id": "acc-9"}}, headers=ADMIN)
        by_account = bearer(person(Role.CSM, accounts=["acc-9"]))
        assert (await client.get("/v1/customers/c2", headers=by_account)).status_code == 200
        viewer = await client.get("/v1/customers/c1", headers=bearer(person(Role.VIEWER)))
        assert viewer.status_code == 403 and viewer.headers["content-type"] == "application/problem+json"
        # the two saves are audited, the customer named by a keyed hash only
        updates = [e for e in await audit_of(database_url) if e.action.value == "customer.update"]
        assert [(e.actor, e.details) for e in updates] == [("token:bootstrap", {"opted_out": False})] * 2
        assert all(e.target and e.target.startswith("customer#") for e in updates)
        assert "c1" not in {e.target for e in updates} and updates[0].target != updates[1].target
        ready = await client.get("/readyz")
        assert ready.status_code in (200, 503)
        assert isinstance(ready.json()["checks"], dict)


async def audit_of(database_url: str) -> list[AuditEntry]:
    """The audit log, oldest first."""
    engine = make_engine(database_url)
    try:
        records = await PgIdentityStore(engine=engine).read_audit(query=AuditQuery(limit=1000))
    finally:
        await engine.dispose()
    return [r.entry for r in reversed(records)]
