"""Actions and notifier on the real broker and PostgreSQL, and the SendGrid adapter against a fake server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text

from services.actions.bootstrap import create_app as create_actions
from services.actions.settings import ActionsSettings
from services.notifier.bootstrap import create_app as create_notifier
from services.notifier.settings import NotifierSettings
from shared import events as ev
from shared.db import make_engine
from shared.envelope import encode
from shared.events import NotificationRequested, Recipient
from shared.topics import Topics
from tests.fakes.sendgrid import FakeSendGrid
from tests.helpers import make_settings, produce, read_events, running, wait_for
from tests.infra import Infra
from tests.integration.test_scorer import event

pytestmark = pytest.mark.integration


async def test_low_score_becomes_a_csm_alert_in_the_outbox(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    common: dict[str, Any] = {
        "kafka_bootstrap": infra.bootstrap,
        "database_url": database_url,
        "topic_prefix": topics.prefix,
        "log_format": "console",
    }
    admin = {"Authorization": "Bearer dev-admin-key"}
    async with running(create_actions(make_settings(ActionsSettings, **common))) as actions:
        put = await actions.put(
            "/v1/customers/cus-low-1",
            json={"owner_email": "owner@example.com", "tier": "strategic"},
            headers=admin,
        )
        assert put.status_code == 200
        batch = [event("low-1", 1, topic=topics.ratings), event("mid-1", 3, topic=topics.ratings)]
        await produce(infra.bootstrap, batch)
        requests = await read_events(infra.bootstrap, topics.notifications, count=1)
        assert len(requests) == 1
        note = requests[0].data
        assert isinstance(note, NotificationRequested)
        assert note.rule_id == "strategic-account-alert"
        assert note.recipient.email == "owner@example.com"

        async def decisions() -> Any:
            return (await actions.get("/v1/decisions", headers=admin)).json()["decisions"]

        found = await wait_for(decisions, until=lambda d: len(d) >= 1)
        assert [d["rule_id"] for d in found] == ["strategic-account-alert"]
    async with running(create_notifier(make_settings(NotifierSettings, **common))) as notifier:

        async def outbox() -> Any:
            return (await notifier.get("/v1/outbox", headers=admin)).json()["messages"]

        messages = await wait_for(outbox, until=lambda m: len(m) == 1, timeout_s=30)
        assert messages[0]["recipient"] == note.recipient.email
        assert "rated 1" in str(messages[0]["subject"])
        outcomes = await read_events(infra.bootstrap, topics.outcomes, count=1)
        assert outcomes[0].data.model_dump()["status"] == "sent"


def _note(nid: str, topic: str) -> ev.NotificationRequested:
    return ev.NotificationRequested(
        notification_id=nid,
        rule_id="low-score-customer-email",
        action="customer_email",
        channel=ev.Channel.EMAIL,
        recipient=Recipient(email="ana@example.com"),
        template="low_score_followup",
        locale="fr",
        customer_id="cus-1",
        requested_at=datetime.now(UTC),
        context={"rating": {"touchpoint": "support_chat"}},
    )


@pytest.fixture
def sendgrid() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as fake:
        yield fake


async def test_sendgrid_adapter_retries_5xx_and_never_resends_a_delivered_message(
    infra: Infra, database_url: str, topics: Topics, sendgrid: FakeSendGrid
) -> None:
    sendgrid.script.extend([500, 429])
    cfg = make_settings(
        NotifierSettings,
        kafka_bootstrap=infra.bootstrap,
        database_url=database_url,
        topic_prefix=topics.prefix,
        log_format="console",
        email_provider="sendgrid",
        sendgrid_api_key=sendgrid.api_key,
        sendgrid_base_url=sendgrid.url,
        retry_base_s=0.05,
        dispatch_interval_s=0.05,
    )
    notes = [
        _note("n-1", topics.notifications),
        _note("n-1", topics.notifications),
        _note("n-2", topics.notifications),
    ]
    records = [
        encode(
            topic=topics.notifications,
            event_type=ev.NOTIFICATION_REQUESTED,
            source="/test",
            event_id=n.notification_id,
            data=n,
            key="cus-1",
        )
        for n in notes
    ]
    await produce(infra.bootstrap, records)
    async with running(create_notifier(cfg)):
        outcomes = await read_events(infra.bootstrap, topics.outcomes, count=2, timeout_s=30)
    assert sorted(o.data.model_dump()["status"] for o in outcomes) == ["sent", "sent"]
    assert len(sendgrid.received) == 2  # n-1 once despite being requested twice
    assert sendgrid.calls == 4  # 500 and 429 were retried
    sent = sendgrid.received[0]
    assert sent["personalizations"][0]["to"][0]["email"] == "ana@example.com"
    assert sent["subject"] == "Nous sommes désolés de votre expérience"
    engine = make_engine(database_url)
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT notification_id, status, attempts FROM notifier.deliveries "
                    "ORDER BY notification_id"
                )
            )
        ).all()
    await engine.dispose()
    assert [(r.notification_id, r.status) for r in rows] == [("n-1", "sent"), ("n-2", "sent")]
    assert sum(r.attempts for r in rows) == 4


async def test_sendgrid_rejection_is_not_retried(
    infra: Infra, database_url: str, topics: Topics, sendgrid: FakeSendGrid
) -> None:
    cfg = make_settings(
        NotifierSettings,
        kafka_bootstrap=infra.bootstrap,
        database_url=database_url,
        topic_prefix=topics.prefix,
        log_format="console",
        email_provider="sendgrid",
        sendgrid_api_key="SG.wrong",
        sendgrid_base_url=sendgrid.url,
        retry_base_s=0.05,
        dispatch_interval_s=0.05,
    )
    n = _note("n-9", topics.notifications)
    await produce(
        infra.bootstrap,
        [
            encode(
                topic=topics.notifications,
                event_type=ev.NOTIFICATION_REQUESTED,
                source="/test",
                event_id="n-9",
                data=n,
                key="cus-1",
            )
        ],
    )
    async with running(create_notifier(cfg)):
        outcomes = await read_events(infra.bootstrap, topics.outcomes, count=1, timeout_s=30)
    out = outcomes[0].data.model_dump()
    assert out["status"] == "failed" and out["attempts"] == 1
    assert out["detail"].startswith("401")
    assert sendgrid.calls == 1
