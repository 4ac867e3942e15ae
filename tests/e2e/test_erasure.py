"""GDPR erasure on the real stack: the five services as processes, the real broker and PostgreSQL.

A customer rates twice (a comment, an email, a phone number, a strategic account: a CSM alert quoting
the comment, an SLA timer, a customer email, a delayed re-survey) and has a message waiting for next
week. Their erasure (``csat.customers.erased.v1``) must leave no table, outbox file or topic-fed store
of ours holding their email, phone, comment or customer id, keep their ratings counted, cancel what was
pending, be a no-op the second time, and resume in a service that was down when it was published. A
second customer who is not erased proves the search finds what is there.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import text

from devstack.ports import free_port
from devstack.stack import SERVICES, Stack
from shared import events as ev
from shared.db import make_engine
from shared.envelope import OutgoingRecord, encode
from shared.identity.accounts import TokenRequest, create_api_token
from shared.identity.ports import AuditAction, AuditQuery
from shared.identity.repository import PgIdentityStore
from shared.identity.scopes import Role, Scope
from shared.settings import DEV_ADMIN_KEY
from shared.topics import Topics
from tests.helpers import TEST_KAFKA_PROCESS_ENV
from tests.infra import Infra, drop_database, new_database, new_topics

pytestmark = pytest.mark.e2e

SCHEMAS = ("collector", "scorer", "actions", "notifier", "ops", "console", "identity")
ERASING = ("collector", "scorer", "actions", "notifier")


@pytest.fixture(scope="module")
def erasure_stack(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Topics]]:
    name = new_database(infra)
    topics = new_topics(infra, partitions=3)
    s = Stack(
        var_dir=Path(tmp_path_factory.mktemp("erasure")),
        kafka_bootstrap=infra.bootstrap,
        database_url=infra.db_url(name),
        topic_prefix=topics.prefix,
        ports={svc: free_port() for svc in SERVICES},
        extra_env={
            **TEST_KAFKA_PROCESS_ENV,
            "CSAT_LOG_FORMAT": "json",
        },
    )
    s.start_infrastructure()
    try:
        s.start_services()
        yield s, topics
    finally:
        s.stop()
        drop_database(infra, name)


class Person:
    def __init__(self, tag: str) -> None:
        hexa = uuid.uuid4().hex[:10]
        self.customer_id = f"cus-{tag}-{hexa}"
        self.email = f"{tag}.{hexa}@erase.example"
        digits = str(int(hexa[:7], 16) % 10_000_000).rjust(7, "0")
        self.phone = f"+3361{digits}"
        self.comment = f"Parcel {hexa} arrived broken and nobody called back"
        self.account_id = f"acc-{uuid.uuid4().hex[:8]}"  # a company: not the person, not erased

    @property
    def needles(self) -> dict[str, str]:
        # The phone's last nine digits: found whatever form it was stored in.
        return {
            "email": self.email,
            "phone": self.phone[-9:],
            "comment": self.comment,
            "customer_id": self.customer_id,
        }


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _sql(url: str, statement: str, **params: Any) -> list[Any]:
    engine = make_engine(url, pool_size=1, application_name="test-erasure")
    try:
        async with engine.begin() as conn:
            result = await conn.execute(text(statement), params)
            return list(result) if result.returns_rows else []
    finally:
        await engine.dispose()


def sql(url: str, statement: str, **params: Any) -> list[Any]:
    return list(run(_sql(url, statement, **params)))


async def _holders(url: str, needles: dict[str, str]) -> list[str]:
    """Every (table.column, what) where a needle appears: each text, json, array and bytea column."""
    engine = make_engine(url, pool_size=1, application_name="test-erasure")
    found: list[str] = []
    try:
        async with engine.connect() as conn:
            columns = await conn.execute(
                text(
                    "SELECT c.table_schema, c.table_name, c.column_name, c.data_type "
                    "FROM information_schema.columns c JOIN information_schema.tables t "
                    "USING (table_schema, table_name) WHERE t.table_type = 'BASE TABLE' "
                    "AND c.table_schema = ANY(:schemas) AND c.data_type IN "
                    "('text', 'character varying', 'jsonb', 'json', 'ARRAY', 'bytea')"
                ),
                {"schemas": list(SCHEMAS)},
            )
            for schema, table, column, kind in list(columns):
                target = f'"{schema}"."{table}"'
                col = f'"{column}"'
                for what, needle in needles.items():
                    if kind == "bytea":
                        cond = f"position(convert_to(:n, 'UTF8') in {col}) > 0"
                    else:
                        cond = f"strpos({col}::text, :n) > 0"
                    hit = await conn.execute(
                        text(f"SELECT count(*) FROM {target} WHERE {cond}"),  # noqa: S608 - catalog names
                        {"n": needle},
                    )
                    if hit.scalar_one():
                        found.append(f"{schema}.{table}.{column}: {what}")
    finally:
        await engine.dispose()
    return found


def holders(url: str, needles: dict[str, str]) -> list[str]:
    return list(run(_holders(url, needles)))


def files_holding(directory: Path, needles: dict[str, str]) -> list[str]:
    if not directory.exists():
        return []
    out: list[str] = []
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            body = path.read_text(encoding="utf-8", errors="replace")
            out.extend(f"{path.name}: {what}" for what, needle in needles.items() if needle in body)
    return out


async def _produce(bootstrap: str, records: list[OutgoingRecord]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for r in records:
            await producer.send_and_wait(r.topic, r.value, key=r.key, headers=r.headers)
    finally:
        await producer.stop()


def produce(stack: Stack, records: list[OutgoingRecord]) -> None:
    assert stack.kafka_bootstrap is not None
    run(_produce(stack.kafka_bootstrap, records))


def erasure(topics: Topics, customer_id: str, erasure_id: str | None = None) -> tuple[str, OutgoingRecord]:
    eid = erasure_id or f"er-{uuid.uuid4().hex}"
    data = ev.CustomerErased(
        erasure_id=eid,
        customer_id=customer_id,
        pseudonym=f"erased-{uuid.uuid4().hex}",
        requested_at=datetime.now(UTC),
        requested_by="test",
    )
    record = encode(
        topic=topics.customers_erased,
        event_type=ev.CUSTOMER_ERASED,
        source="/console",
        event_id=f"{eid}-{uuid.uuid4().hex[:6]}",
        data=data,
        key=customer_id,
    )
    return eid, record


def later_message(topics: Topics, who: Person, *, days: int = 7, nid: str | None = None) -> OutgoingRecord:
    """A message to the customer due in ``days``: pending in the notifier when the erasure comes."""
    note = ev.NotificationRequested(
        notification_id=nid or f"n-later-{uuid.uuid4().hex}",
        rule_id="test-later",
        action="customer_email",
        channel=ev.Channel.EMAIL,
        recipient=ev.Recipient(email=who.email, phone=who.phone),
        template="low_score_followup",
        customer_id=who.customer_id,
        context={"comment": who.comment},
        requested_at=datetime.now(UTC),
        not_before=datetime.now(UTC) + timedelta(days=days),
    )
    return encode(
        topic=topics.notifications,
        event_type=ev.NOTIFICATION_REQUESTED,
        source="/test",
        event_id=note.notification_id,
        data=note,
        key=who.customer_id,
    )


def poll(fn: Any, until: Any, timeout_s: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout_s
    value = fn()
    while not until(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout_s}s; last: {value!r}")
        time.sleep(0.3)
        value = fn()
    return value


def rate(collector: str, who: Person, campaign: str, *, score: int, comment: str | None) -> None:
    body: dict[str, Any] = {
        "metric": "csat",
        "scale": "1-5",
        "score": score,
        "customer": {"id": who.customer_id, "email": who.email, "phone": who.phone, "locale": "fr"},
        "segment": {"campaign": campaign},
        "consent": {"contact": True},
        "account": {"id": who.account_id, "tier": "strategic", "value": 250000},
    }
    if comment is not None:
        body["comment"] = comment
    r = httpx.post(f"{collector}/v1/ratings", json=body, timeout=30)
    assert r.status_code == 202, r.text


def counted(url: str, campaign: str) -> int:
    rows = sql(
        url,
        "SELECT coalesce(sum(n), 0) AS n FROM scorer.score_counts WHERE segment_key = :k",
        k=f"campaign={campaign}",
    )
    return int(rows[0].n)


def scores(stack: Stack, campaign: str) -> dict[str, Any]:
    """The scorer's answer for the campaign (the dev stack's bootstrap key, a full admin outside prod)."""
    answer = httpx.get(
        f"{stack.services['scorer'].url}/v1/scores",
        params={"metric": "csat", "window": "30d", "segment": f"campaign:{campaign}"},
        headers={"Authorization": f"Bearer {DEV_ADMIN_KEY}"},
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def statuses(url: str, erasure_id: str) -> dict[str, dict[str, int]]:
    rows = sql(url, "SELECT service, removed FROM ops.erasures WHERE erasure_id = :e", e=erasure_id)
    return {r.service: dict(r.removed) for r in rows}


def pending(url: str, *ids: str) -> dict[str, int]:
    timers = sql(
        url,
        "SELECT count(*) AS n FROM actions.timers WHERE status = 'pending' AND customer_id = ANY(:ids)",
        ids=list(ids),
    )
    deliveries = sql(
        url,
        "SELECT count(*) AS n FROM notifier.deliveries WHERE status = 'pending' AND customer_id = ANY(:ids)",
        ids=list(ids),
    )
    return {"timers": int(timers[0].n), "messages": int(deliveries[0].n)}


def test_erasure_leaves_nothing_but_counts(erasure_stack: tuple[Stack, Topics]) -> None:
    stack, topics = erasure_stack
    url = stack.database_url
    assert url is not None
    collector = stack.services["collector"].url
    outbox = stack.var_dir / "outbox"
    campaign = f"erase-{uuid.uuid4().hex[:8]}"
    lea, other = Person("lea"), Person("other")

    for who in (lea, other):
        rate(collector, who, campaign, score=1, comment=who.comment)
        rate(collector, who, campaign, score=2, comment=None)
        # The CRM sync's contact record in the actions service (the admin key of the dev stack).
        r = httpx.put(
            f"{stack.services['actions'].url}/v1/customers/{who.customer_id}",
            json={"email": who.email, "phone": who.phone, "consent": {"contact": True}, "tier": "strategic"},
            headers={"X-API-Key": DEV_ADMIN_KEY},
        )
        assert r.status_code == 200, r.text
    produce(stack, [later_message(topics, lea)])
    sql(
        url,
        "INSERT INTO collector.sms_surveys (request_id, phone_hash, customer_id, metric, scale, expires_at) "
        "VALUES (:r, :h, :c, 'csat', '1-5', now() + interval '1 day')",
        r=f"sms-{lea.customer_id}",
        h=b"\x01" * 32,
        c=lea.customer_id,
    )

    # Everything the pipeline keeps about both customers is in place: counts, alert, timers, messages.
    poll(lambda: counted(url, campaign), until=lambda n: n == 4)
    poll(lambda: files_holding(outbox, {"comment": lea.comment}), until=bool)
    poll(lambda: pending(url, lea.customer_id), until=lambda p: p["timers"] >= 1 and p["messages"] >= 1)
    poll(lambda: holders(url, lea.needles), until=lambda h: any(x.endswith("comment") for x in h))
    before = holders(url, lea.needles)
    for where in (
        "scorer.ratings.comment: comment",
        "actions.customers.email: email",
        "actions.customers.phone: phone",
        "actions.alerts.context: comment",
        "actions.timers.payload: email",
        "notifier.deliveries.request: phone",
        "notifier.outbox.body: comment",
        "notifier.outbox.recipient: email",
        "collector.sms_surveys.customer_id: customer_id",
    ):
        assert where in before, (where, before)
    waiting = pending(url, lea.customer_id)
    other_before = holders(url, other.needles)
    scores_before = scores(stack, campaign)

    # The notifier is down (SIGKILL) when the erasure is published: the others erase, it resumes later.
    stack.services["notifier"].kill()
    first, record = erasure(topics, lea.customer_id)
    produce(stack, [record])
    poll(lambda: set(statuses(url, first)), until=lambda s: s == {"collector", "scorer", "actions"})
    assert "notifier.outbox.body: comment" in holders(url, {"comment": lea.comment})
    stack.start_service("notifier").wait_ready(90)
    done = poll(lambda: statuses(url, first), until=lambda s: set(s) == set(ERASING))

    # Nothing of Lea is left in any table, outbox file or store; the other customer is untouched.
    assert holders(url, lea.needles) == []
    assert files_holding(stack.var_dir, lea.needles) == []
    assert holders(url, other.needles) == other_before
    assert files_holding(outbox, {"comment": other.comment})
    # Her ratings still count, in the counters and in the scorer's answer.
    assert counted(url, campaign) == 4
    scores_after = scores(stack, campaign)
    assert scores_after["responses"] == scores_before["responses"] == 4
    assert scores_after["score"] == scores_before["score"] == 0.0  # four answers of 1 and 2 out of 5
    # What was waiting is cancelled, under the pseudonym too.
    pseudonym = sql(url, "SELECT DISTINCT pseudonym FROM ops.erasures WHERE erasure_id = :e", e=first)[0][0]
    assert pending(url, lea.customer_id, pseudonym) == {"timers": 0, "messages": 0}
    cancelled = sql(
        url,
        "SELECT (SELECT count(*) FROM actions.timers WHERE customer_id = :p AND status = 'cancelled') "
        "AS timers, "
        "(SELECT count(*) FROM notifier.deliveries WHERE customer_id = :p AND reason = 'erased') AS messages",
        p=pseudonym,
    )[0]
    assert (cancelled.timers, cancelled.messages) == (waiting["timers"], waiting["messages"])
    assert done["actions"]["actions.customers"] == 1
    assert done["scorer"]["scorer.ratings"] == 2
    assert done["collector"]["collector.sms_surveys"] == 1
    assert done["notifier"]["outbox files"] >= 1

    # The same request replayed, then a second request: no-ops (one status row each, nothing changed).
    _, replay = erasure(topics, lea.customer_id, erasure_id=first)
    second, again = erasure(topics, lea.customer_id)
    produce(stack, [replay, again])
    repeat = poll(lambda: statuses(url, second), until=lambda s: set(s) == set(ERASING))
    assert all(sum(rows.values()) == 0 for rows in repeat.values()), repeat
    assert statuses(url, first) == done
    assert holders(url, lea.needles) == []
    assert counted(url, campaign) == 4


def test_an_erased_customer_who_opted_out_is_still_never_contacted(
    erasure_stack: tuple[Stack, Topics],
) -> None:
    stack, topics = erasure_stack
    url = stack.database_url
    assert url is not None
    notifier = stack.services["notifier"].url
    max_ = Person("max")
    r = httpx.post(
        f"{notifier}/v1/suppressions",
        json={"customer_id": max_.customer_id, "reason": "unsubscribed"},
        headers={"X-API-Key": DEV_ADMIN_KEY},
    )
    assert r.status_code == 201, r.text
    eid, record = erasure(topics, max_.customer_id)
    produce(stack, [record])
    poll(lambda: set(statuses(url, eid)), until=lambda s: s == set(ERASING))
    assert holders(url, {"customer_id": max_.customer_id}) == []
    listed = httpx.get(
        f"{notifier}/v1/suppressions",
        params={"customer_id": max_.customer_id},
        headers={"X-API-Key": DEV_ADMIN_KEY},
    ).json()["suppressions"]
    assert [(s["scope"], s["reason"]) for s in listed] == [("customer", "unsubscribed")]

    # A message for the same customer id, due now: suppressed by the re-keyed opt-out, never sent.
    nid = f"n-after-{uuid.uuid4().hex}"
    produce(stack, [later_message(topics, max_, days=0, nid=nid)])
    row = poll(
        lambda: sql(url, "SELECT status, reason FROM notifier.deliveries WHERE notification_id = :n", n=nid),
        until=lambda rows: bool(rows) and rows[0].status not in ("pending", "sending"),
    )[0]
    assert (row.status, row.reason) == ("suppressed", "opted_out"), row
    assert sql(url, "SELECT 1 FROM notifier.outbox WHERE notification_id = :n", n=nid) == []


async def _token(stack: Stack, *scopes: Scope) -> str:
    assert stack.database_url is not None and stack.dev_admin is not None
    engine = make_engine(stack.database_url, pool_size=1, application_name="test-erasure")
    try:
        store = PgIdentityStore(engine=engine, timeout_s=10)
        admin = await store.user_by_email(email=stack.dev_admin.email)
        assert admin is not None
        created = await create_api_token(
            tokens=store,
            users=store,
            audit=store,
            by=admin.principal(),
            request=TokenRequest(
                name="gdpr-test", role=Role.ADMIN, scopes=frozenset(scopes), expires_at=None
            ),
            service="test",
            at=datetime.now(UTC),
        )
        return created.secret
    finally:
        await engine.dispose()


async def _audit(stack: Stack, action: AuditAction) -> list[Any]:
    assert stack.database_url is not None
    engine = make_engine(stack.database_url, pool_size=1, application_name="test-erasure")
    try:
        store = PgIdentityStore(engine=engine, timeout_s=10)
        return await store.read_audit(query=AuditQuery(action=action, limit=100))
    finally:
        await engine.dispose()


def test_the_console_exports_then_erases_a_customer(erasure_stack: tuple[Stack, Topics]) -> None:
    stack, topics = erasure_stack
    url = stack.database_url
    assert url is not None
    console = stack.console_url
    campaign = f"export-{uuid.uuid4().hex[:8]}"
    zoe = Person("zoe")
    rate(stack.services["collector"].url, zoe, campaign, score=1, comment=zoe.comment)
    r = httpx.put(
        f"{stack.services['actions'].url}/v1/customers/{zoe.customer_id}",
        json={"email": zoe.email, "phone": zoe.phone, "opted_out": True},  # opted out in the CRM
        headers={"X-API-Key": DEV_ADMIN_KEY},
    )
    assert r.status_code == 200, r.text
    poll(lambda: counted(url, campaign), until=lambda n: n == 1)
    poll(lambda: holders(url, {"comment": zoe.comment}), until=lambda h: len(h) >= 3)

    gdpr = {"Authorization": f"Bearer {run(_token(stack, Scope.GDPR_ADMIN))}"}
    reader = {"Authorization": f"Bearer {run(_token(stack, Scope.AUDIT_READ))}"}
    paths = [
        ("GET", f"/v1/gdpr/customers/{zoe.customer_id}/export"),
        ("POST", f"/v1/gdpr/customers/{zoe.customer_id}/erase"),
        ("GET", f"/v1/gdpr/erasures/er_{'0' * 32}"),
    ]
    for method, path in paths:  # no credential, a wrong one, one without gdpr:admin
        assert httpx.request(method, console + path).status_code == 401
        assert (
            httpx.request(method, console + path, headers={"Authorization": "Bearer nope"}).status_code == 401
        )
        assert httpx.request(method, console + path, headers=reader).status_code == 403
    for service in ("scorer", "actions", "notifier", "collector"):
        export_path = f"{stack.services[service].url}/v1/gdpr/customers/{zoe.customer_id}/export"
        assert httpx.get(export_path).status_code == 401

    exported = httpx.get(f"{console}/v1/gdpr/customers/{zoe.customer_id}/export", headers=gdpr, timeout=30)
    assert exported.status_code == 200, exported.text
    document = exported.json()
    assert document["customer_id"] == zoe.customer_id
    assert set(document["services"]) == {"collector", "scorer", "actions", "notifier"}
    assert document["services"]["actions"]["customer"]["email"] == zoe.email
    assert [x["comment"] for x in document["services"]["scorer"]["ratings"]] == [zoe.comment]
    messages = poll(
        lambda: httpx.get(
            f"{console}/v1/gdpr/customers/{zoe.customer_id}/export", headers=gdpr, timeout=30
        ).json()["services"]["notifier"]["deliveries"],
        until=bool,
    )
    assert all(m["rule_id"] for m in messages)

    erased = httpx.post(f"{console}/v1/gdpr/customers/{zoe.customer_id}/erase", headers=gdpr, timeout=30)
    assert erased.status_code == 202, erased.text
    status_url = console + erased.json()["status_url"]
    status = poll(lambda: httpx.get(status_url, headers=gdpr).json(), until=lambda s: s["complete"])
    assert {name: s["status"] for name, s in status["services"].items()} == dict.fromkeys(ERASING, "done")
    assert status["services"]["scorer"]["removed"] == {"scorer.ratings": 1}

    after = httpx.get(
        f"{console}/v1/gdpr/customers/{zoe.customer_id}/export", headers=gdpr, timeout=30
    ).json()
    assert after["services"]["actions"]["customer"] is None
    assert after["services"]["scorer"]["ratings"] == []
    assert after["services"]["notifier"]["deliveries"] == []
    assert holders(url, zoe.needles) == ["identity.audit_log.target: customer_id"]  # the exports' record
    assert counted(url, campaign) == 1
    # Her CRM opt-out went with the context, yet stays: a message to her id now is suppressed.
    nid = f"n-after-{uuid.uuid4().hex}"
    produce(stack, [later_message(topics, zoe, days=0, nid=nid)])
    row = poll(
        lambda: sql(url, "SELECT status, reason FROM notifier.deliveries WHERE notification_id = :n", n=nid),
        until=lambda rows: bool(rows) and rows[0].status not in ("pending", "sending"),
    )[0]
    assert (row.status, row.reason) == ("suppressed", "opted_out"), row
    erasure_id = erased.json()["erasure_id"]
    erasures = [e for e in run(_audit(stack, AuditAction.GDPR_ERASE)) if e.entry.target == erasure_id]
    exports = [e for e in run(_audit(stack, AuditAction.GDPR_EXPORT)) if e.entry.target == zoe.customer_id]
    assert len(erasures) == 1 and len(exports) >= 3  # each export, the erasure once
