"""The dispatcher's batched path and its wake-up, on the real PostgreSQL and broker.

Outbox messages are claimed, written and recorded in one transaction per batch; a row that breaks
the batch is redone alone; the intake's commit (and only its commit) wakes a listening dispatcher.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest

from services.notifier.ports import NewRequest
from services.notifier.repository import PgDeliveries
from services.notifier.wakeup import WakeListener, plain_url
from shared.consumer import Received
from shared.envelope import decode
from shared.events import Channel, NotificationOutcome
from shared.topics import Topics
from tests.infra import Infra
from tests.integration.notifier_support import deliveries, query, records, request
from tests.integration.test_notifier_dispatch import Clock, harness

pytestmark = pytest.mark.integration


async def test_an_outbox_batch_is_claimed_written_and_recorded_in_one_transaction(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    clock = Clock(datetime(2026, 6, 1, 12, 0, tzinfo=UTC))
    async with harness(infra, database_url, topics, clock) as h:
        notes = [
            request(f"mail-{i}", channel=Channel.EMAIL, to=f"c{i}@example.com", template="thank_you",
                    customer=f"cus-{i}")
            for i in range(20)
        ] + [
            request(f"csm-{i}", channel=Channel.EMAIL, to="csm@example.com", template="csm_alert",
                    customer=f"cus-{i}", transactional=True, rule="csm-alert")
            for i in range(10)
        ]  # fmt: skip
        await h.request(*notes)
        assert await h.tick() == 30
        rows = await deliveries(database_url)
        assert {r["status"] for r in rows.values()} == {"sent"}
        assert {r["attempts"] for r in rows.values()} == {1}
        # Never left 'sending' behind: no lease, and the daily cap counted each customer message once.
        assert all(r["lease_until"] is None and r["claim_token"] for r in rows.values())
        counted = await query(database_url, "SELECT sum(sent) AS n FROM notifier.daily_counts")
        assert counted == [{"n": 20}]
        # One transaction wrote every outbox row: they share its start time.
        outbox = await query(database_url, "SELECT notification_id, created_at FROM notifier.outbox")
        assert len(outbox) == 30 and len({o["created_at"] for o in outbox}) == 1
        assert not await query(database_url, "SELECT id FROM notifier.event_outbox")  # all relayed
        sent = [
            decode(headers=r.headers, key=r.key, value=r.value).data
            for r in h.published
            if r.topic == topics.outcomes
        ]
        assert sorted(o.notification_id for o in sent if isinstance(o, NotificationOutcome)) == sorted(
            n.notification_id for n in notes
        )
        # Replays after the send change nothing and send nothing.
        await h.request(*notes[:5])
        assert await h.tick() == 0
        assert len(await query(database_url, "SELECT id FROM notifier.outbox")) == 30


async def test_a_row_that_breaks_the_batch_is_failed_alone_and_the_others_go(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    clock = Clock(datetime(2026, 6, 1, 12, 0, tzinfo=UTC))
    async with harness(infra, database_url, topics, clock) as h:
        await h.request(
            *[
                request(f"ok-{i}", channel=Channel.SLACK, to="https://hooks.example/x", template="csm_alert",
                        transactional=True)
                for i in range(3)
            ]
        )  # fmt: skip
        # A stored request this release cannot read (e.g. written by a broken producer): validation raises
        # in the middle of the batch.
        async with h.engine.begin() as conn:
            await PgDeliveries(conn).insert_requests(
                requests=[
                    NewRequest(
                        notification_id="broken",
                        channel="slack",
                        provider="outbox",
                        rule_id="r",
                        customer_id=None,
                        transactional=True,
                        request_json=json.dumps({"notification_id": "broken"}),
                        due_at=clock.now,
                        event_id="e",
                        source_topic=topics.notifications,
                        source_partition=0,
                        source_offset=99,
                    )
                ],
            )
        assert await h.tick() == 3
        rows = await deliveries(database_url)
        assert rows["broken"]["status"] == "failed" and rows["broken"]["reason"] == "internal"
        assert {rows[f"ok-{i}"]["status"] for i in range(3)} == {"sent"}
        outbox = await query(
            database_url, "SELECT notification_id FROM notifier.outbox ORDER BY notification_id"
        )
        assert [o["notification_id"] for o in outbox] == ["ok-0", "ok-1", "ok-2"]


async def test_the_intake_wakes_a_listening_dispatcher_when_it_commits(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    clock = Clock(datetime.now(UTC))
    woken = asyncio.Event()
    listener = WakeListener(database_url=database_url, wake=woken.set)
    await listener.start()
    try:
        async with harness(infra, database_url, topics, clock) as h:
            async with asyncio.timeout(10):
                while not listener.listening:  # noqa: ASYNC110 - the listener exposes no event for this
                    await asyncio.sleep(0.05)
            woken.clear()  # the listener wakes once on (re)connecting, for what it may have missed
            note = request("wake-1", channel=Channel.EMAIL, to="csm@example.com", template="csm_alert",
                           transactional=True)  # fmt: skip
            rec = records(topics, [note])[0]
            batch = [Received(envelope=decode(headers=rec.headers, key=rec.key, value=rec.value),
                              topic=rec.topic, partition=0, offset=0)]  # fmt: skip
            async with h.engine.begin() as conn:
                await h.intake.handle(PgDeliveries(conn), batch)
                await asyncio.sleep(0.3)
                assert not woken.is_set()  # nothing to see before the commit
            async with asyncio.timeout(5):
                await woken.wait()
            woken.clear()
            await h.request(note)  # a replay inserts nothing and wakes nobody
            await asyncio.sleep(0.3)
            assert not woken.is_set()
    finally:
        await listener.stop()


def test_the_listener_takes_the_plain_postgres_url() -> None:
    assert plain_url("postgresql+asyncpg://u@h:5/db") == "postgresql://u@h:5/db"
    assert plain_url("postgres://u@h/db") == "postgres://u@h/db"
