"""A notifier crash after a non-idempotent provider accepted a message must not make it "unknown".

Found by the fault suite (SIGKILL rounds with SendGrid): outcomes were committed with the whole batch,
so a kill anywhere in a batch turned every message already sent in it into "unknown" on replay (200 of
2,426 in one run, all but one of them actually delivered). The outcome is now committed as soon as
the provider answers, and a replay publishes the stored outcome again instead of nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from services.notifier.delivery import Deliverer
from services.notifier.providers.sendgrid import SendGridProvider
from services.notifier.templating import Templates
from shared import events as ev
from shared.consumer import Received
from shared.db import make_engine
from shared.envelope import decode, encode
from shared.events import Channel, NotificationRequested, Recipient
from shared.topics import Topics
from tests.fakes.sendgrid import FakeSendGrid

pytestmark = pytest.mark.integration


@pytest.fixture
def sendgrid() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as fake:
        yield fake


def _received(nid: str, topics: Topics, offset: int) -> Received:
    note = NotificationRequested(
        notification_id=nid,
        rule_id="low-score-csm-alert",
        action="csm_alert",
        channel=Channel.EMAIL,
        recipient=Recipient(email="csm@example.com"),
        template="csm_alert",
        customer_id="cus-1",
        requested_at=datetime.now(UTC),
        context={"rating": {"score": 1, "scale": "1-5", "metric": "csat"}, "customer": {"id": "cus-1"}},
    )
    rec = encode(
        topic=topics.notifications,
        event_type=ev.NOTIFICATION_REQUESTED,
        source="/test",
        event_id=nid,
        data=note,
        key="cus-1",
    )
    env = decode(headers=rec.headers, key=rec.key, value=rec.value)
    return Received(envelope=env, topic=topics.notifications, partition=0, offset=offset)


async def test_sent_message_stays_sent_when_its_batch_is_replayed(
    database_url: str, sendgrid: FakeSendGrid
) -> None:
    topics = Topics(prefix="crash.")
    engine = make_engine(database_url)
    provider = SendGridProvider(
        api_key=sendgrid.api_key, base_url=sendgrid.url, from_email="f@example.com", from_name="F"
    )
    deliverer = Deliverer(
        engine=engine, providers={Channel.EMAIL: provider}, templates=Templates(), topics=topics
    )
    batch = [_received("crash-1", topics, 0), _received("crash-2", topics, 1)]
    try:
        # First attempt: the provider accepts both, then the process "dies" before the batch commits.
        conn = await engine.connect()
        tx = await conn.begin()
        first = await deliverer.handle(conn, batch)
        await tx.rollback()
        await conn.close()
        assert len(first) == 2
        # The replay after the restart: nothing is sent again, and both are still known as sent.
        async with engine.begin() as conn2:
            replay = await deliverer.handle(conn2, batch)
        async with engine.connect() as conn3:
            rows = (
                await conn3.execute(
                    text("SELECT notification_id, status FROM notifier.deliveries ORDER BY notification_id")
                )
            ).all()
    finally:
        await provider.aclose()
        await engine.dispose()
    assert len(sendgrid.received) == 2
    assert [(r.notification_id, r.status) for r in rows] == [("crash-1", "sent"), ("crash-2", "sent")]
    outcomes = [decode(headers=r.headers, key=r.key, value=r.value).data for r in replay]
    assert [o.model_dump()["status"] for o in outcomes] == ["sent", "sent"]
