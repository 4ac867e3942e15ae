"""The dispatcher on the real PostgreSQL and broker, driven tick by tick with a clock the test moves.

Quiet hours, the daily cap and dead-lettering all depend on time; a movable clock lets the test put
"now" at 07:59:58 in Paris or past midnight without waiting, while every read and write is real.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from services.notifier.bootstrap import build_providers, dispatch_config
from services.notifier.dispatcher import Dispatcher
from services.notifier.handlers import Intake
from services.notifier.providers import Provider
from services.notifier.repository import PgDeliveries, PgNotifierStore
from services.notifier.templating import Templates
from services.notifier.tokens import UnsubscribeTokens
from shared.consumer import Received
from shared.db import make_engine
from shared.envelope import OutgoingRecord, decode
from shared.events import Channel, NotificationRequested
from shared.kafka import send_all
from shared.topics import Topics
from tests.fakes.base import Step
from tests.fakes.twilio import FakeTwilio
from tests.helpers import read_events
from tests.infra import Infra
from tests.integration.notifier_support import deliveries, notifier_settings, query, records, request

pytestmark = pytest.mark.integration

PARIS = ZoneInfo("Europe/Paris")


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Harness:
    engine: AsyncEngine
    dispatcher: Dispatcher
    intake: Intake
    clock: Clock
    topics: Topics
    providers: dict[Channel, Provider]
    published: list[OutgoingRecord] = field(default_factory=list)

    async def request(self, *notes: NotificationRequested) -> None:
        """What the consumer does with a batch: intake in one transaction."""
        batch = []
        for offset, record in enumerate(records(self.topics, notes)):
            env = decode(headers=record.headers, key=record.key, value=record.value)
            batch.append(Received(envelope=env, topic=record.topic, partition=0, offset=offset))
        async with self.engine.begin() as conn:
            await self.intake.handle(PgDeliveries(conn), batch)

    async def tick(self) -> int:
        started = await self.dispatcher.tick()
        await self.dispatcher.drain(10)
        await self.dispatcher.relay()
        return started


@asynccontextmanager
async def harness(
    infra: Infra, database_url: str, topics: Topics, clock: Clock, **values: Any
) -> AsyncIterator[Harness]:
    cfg = notifier_settings(infra, database_url, topics, **values)
    engine = make_engine(cfg.database_url)
    providers = build_providers(cfg, engine=engine)
    producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap, acks="all")
    await producer.start()
    published: list[OutgoingRecord] = []

    async def publish(batch: Sequence[OutgoingRecord]) -> None:
        await send_all(producer, batch, timeout_s=10)
        published.extend(batch)

    dispatcher = Dispatcher(
        store=PgNotifierStore(engine),
        providers=providers,
        templates=Templates(),
        tokens=UnsubscribeTokens(cfg.unsubscribe_secrets),
        topics=topics,
        publish=publish,
        clock=clock,
        config=dispatch_config(cfg),
    )
    h = Harness(
        engine=engine,
        dispatcher=dispatcher,
        intake=Intake(provider_names={c: p.name for c, p in providers.items()}, clock=clock),
        clock=clock,
        topics=topics,
        providers=providers,
        published=published,
    )
    try:
        yield h
    finally:
        await dispatcher.drain(5)
        for p in {id(p): p for p in providers.values()}.values():
            await p.aclose()
        await producer.stop()
        await engine.dispose()


def _twilio(fake: FakeTwilio) -> dict[str, Any]:
    return {
        "sms_provider": "twilio",
        "twilio_account_sid": fake.account_sid,
        "twilio_auth_token": fake.auth_token,
        "twilio_from": "+15005550006",
        "twilio_base_url": fake.url,
    }


async def test_quiet_hours_defer_sms_to_the_recipients_morning_and_then_send_it(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    clock = Clock(datetime(2026, 6, 1, 7, 59, 58, tzinfo=PARIS).astimezone(UTC))  # 07:59:58 in Paris
    with FakeTwilio() as fake:
        settings = {**_twilio(fake), "quiet_hours": "21:00-08:00", "default_timezone": "UTC"}
        async with harness(infra, database_url, topics, clock, **settings) as h:
            await h.request(
                request("sms-paris", channel=Channel.SMS, to="+33612345678", template="thank_you",
                        customer="cus-paris", timezone="Europe/Paris", locale="fr"),
                # Same instant, New York: 01:59:58 there, deferred to 08:00 New York time.
                request("sms-ny", channel=Channel.SMS, to="+12125550100", template="thank_you",
                        customer="cus-ny", timezone="America/New_York"),
                # No zone known: the default (UTC) applies; 05:59:58 UTC is quiet too.
                request("sms-nozone", channel=Channel.SMS, to="+447700900123", template="thank_you",
                        customer="cus-uk"),
                # Internal alerts ignore quiet hours.
                request("sms-staff", channel=Channel.SMS, to="+33698765432", template="support_callback",
                        customer="cus-paris", transactional=True, rule="support-call"),
            )  # fmt: skip
            assert await h.tick() == 1
            rows = await deliveries(database_url)
            assert rows["sms-staff"]["status"] == "sent"
            for nid in ("sms-paris", "sms-ny", "sms-nozone"):
                assert rows[nid]["status"] == "pending" and rows[nid]["reason"] == "quiet_hours"
            assert rows["sms-paris"]["next_attempt_at"] == datetime(2026, 6, 1, 8, 0, tzinfo=PARIS)
            ny = ZoneInfo("America/New_York")
            assert rows["sms-ny"]["next_attempt_at"] == datetime(2026, 6, 1, 8, 0, tzinfo=ny)
            assert rows["sms-nozone"]["next_attempt_at"] == datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
            assert [a.key for a in fake.accepted] == ["+33698765432"]

            clock.advance(seconds=1)  # 07:59:59 in Paris: still quiet, nothing leaves
            assert await h.tick() == 0
            clock.advance(seconds=1)  # 08:00:00 in Paris
            assert await h.tick() == 1
            assert [a.key for a in fake.accepted] == ["+33698765432", "+33612345678"]
            assert fake.accepted[1].payload["Body"].startswith("Merci pour votre excellente note")

            clock.now = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
            assert await h.tick() == 1  # the UTC default
            clock.now = datetime(2026, 6, 1, 8, 0, tzinfo=ny)
            assert await h.tick() == 1
            rows = await deliveries(database_url)
            assert {r["status"] for r in rows.values()} == {"sent"}  # deferred, never dropped
        events = await read_events(infra.bootstrap, topics.outcomes, count=7, timeout_s=20)
    outcomes = [(e.data.model_dump()["notification_id"], e.data.model_dump()["status"]) for e in events]
    assert sorted(outcomes) == sorted(
        [("sms-staff", "sent")]
        + [(n, s) for n in ("sms-paris", "sms-ny", "sms-nozone") for s in ("deferred", "sent")]
    )
    deferred = next(e.data.model_dump() for e in events if e.id.startswith("sms-paris/deferred"))
    assert deferred["reason"] == "quiet_hours"
    assert deferred["next_attempt_at"] == datetime(2026, 6, 1, 6, 0, tzinfo=UTC)


async def test_daily_cap_counts_customer_messages_per_local_day(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    clock = Clock(datetime(2026, 6, 1, 23, 50, tzinfo=PARIS).astimezone(UTC))
    async with harness(infra, database_url, topics, clock, daily_cap=2) as h:
        customer = [
            request(f"mail-{i}", channel=Channel.EMAIL, to="ana@example.com", template="thank_you",
                    customer="cus-cap", timezone="Europe/Paris", rule=f"rule-{i}")
            for i in range(3)
        ]  # fmt: skip
        internal = request("csm-1", channel=Channel.EMAIL, to="csm@example.com", template="csm_alert",
                           customer="cus-cap", transactional=True, rule="low-score-csm-alert")  # fmt: skip
        await h.request(*customer, internal)
        await h.tick()
        rows = await deliveries(database_url)
        statuses = sorted(rows[f"mail-{i}"]["status"] for i in range(3))
        assert statuses == ["sent", "sent", "suppressed"]
        capped = next(r for r in rows.values() if r["status"] == "suppressed")
        assert capped["reason"] == "daily_cap" and "daily cap of 2" in capped["last_error"]
        assert rows["csm-1"]["status"] == "sent"  # internal alerts are not capped

        clock.advance(minutes=15)  # 00:05 the next day in Paris: a new day, a new allowance
        await h.request(
            request("mail-next-day", channel=Channel.EMAIL, to="ana@example.com", template="thank_you",
                    customer="cus-cap", timezone="Europe/Paris", rule="rule-9")
        )  # fmt: skip
        await h.tick()
        assert (await deliveries(database_url))["mail-next-day"]["status"] == "sent"
        counts = await query(database_url, "SELECT day, sent FROM notifier.daily_counts ORDER BY day")
        assert [(str(c["day"]), c["sent"]) for c in counts] == [("2026-06-01", 2), ("2026-06-02", 1)]


async def test_the_address_cap_holds_across_customer_ids_and_keeps_only_keyed_hashes(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    clock = Clock(datetime(2026, 6, 1, 12, 0, tzinfo=UTC))
    async with harness(infra, database_url, topics, clock, daily_cap_per_address=2) as h:
        rotated = [
            request(f"v-{i}", channel=Channel.EMAIL, to="victim@example.com", template="thank_you",
                    customer=f"cus-{i}", rule=f"rule-{i}")
            for i in range(5)
        ]  # fmt: skip
        await h.request(*rotated)
        await h.tick()
        rows = await deliveries(database_url)
        assert sorted(rows[f"v-{i}"]["status"] for i in range(5)) == ["sent"] * 2 + ["suppressed"] * 3
        assert {r["reason"] for r in rows.values() if r["status"] == "suppressed"} == {"address_cap"}
        caps = await query(database_url, "SELECT scope, key, sent FROM notifier.daily_caps")
        assert [(c["scope"], c["sent"]) for c in caps] == [("address", 2)]
        assert "victim" not in caps[0]["key"] and caps[0]["key"].startswith("email:")
        # All or nothing: the refused reservations took no customer slot.
        counts = await query(database_url, "SELECT customer_id, sent FROM notifier.daily_counts")
        assert sorted(c["sent"] for c in counts) == [1, 1]


async def test_retries_are_scheduled_and_exhausted_deliveries_are_dead_lettered(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    clock = Clock(datetime(2026, 6, 1, 12, 0, tzinfo=UTC))
    with FakeTwilio() as fake:
        fake.on("+15550109001", 503, 503, Step(status=429, retry_after="30"))
        settings = {**_twilio(fake), "max_attempts": 3, "retry_base_s": 10.0, "daily_cap": 1}
        async with harness(infra, database_url, topics, clock, **settings) as h:
            await h.request(
                request("sms-doomed", channel=Channel.SMS, to="+15550109001", template="thank_you",
                        customer="cus-doomed")
            )  # fmt: skip
            assert await h.tick() == 1
            row = (await deliveries(database_url))["sms-doomed"]
            assert (
                row["status"] == "pending" and row["attempts"] == 1 and row["reason"] == "retry:server_error"
            )
            first_wait = row["next_attempt_at"] - clock.now
            assert timedelta(seconds=5) <= first_wait <= timedelta(seconds=10)  # base 10 s, jittered
            assert await h.tick() == 0  # not due yet: nothing is slept on, nothing is sent
            clock.now = row["next_attempt_at"]
            assert await h.tick() == 1
            row = (await deliveries(database_url))["sms-doomed"]
            assert row["attempts"] == 2
            assert timedelta(seconds=10) <= row["next_attempt_at"] - clock.now <= timedelta(seconds=20)
            clock.now = row["next_attempt_at"]
            assert await h.tick() == 1  # third attempt: 429, but no attempts left
            row = (await deliveries(database_url))["sms-doomed"]
            assert row["status"] == "failed" and row["reason"] == "exhausted" and row["attempts"] == 3
            assert "gave up after 3 attempts" in row["last_error"] and "429" in row["last_error"]
            assert len(fake.requests_for("+15550109001")) == 3 and not fake.accepted
            counts = await query(database_url, "SELECT sent FROM notifier.daily_counts")
            assert counts == [{"sent": 0}]  # a message that never went out gives its daily slot back
    letters = await read_events(infra.bootstrap, topics.dlq_notifier, count=1, timeout_s=20)
    letter = letters[0].data.model_dump()
    assert letter["consumer"] == "notifier" and "gave up after 3 attempts" in letter["reason"]
    assert letter["topic"] == topics.notifications
    original = json.loads(base64.b64decode(letter["value_b64"]))
    assert original["notification_id"] == "sms-doomed" and original["template"] == "thank_you"
    assert letters[0].extensions["dlqreason"] == "delivery_exhausted"
    failed = await read_events(infra.bootstrap, topics.outcomes, count=1, timeout_s=20)
    assert failed[0].data.model_dump()["status"] == "failed"


async def test_a_replayed_request_is_recorded_once(infra: Infra, database_url: str, topics: Topics) -> None:
    clock = Clock(datetime(2026, 6, 1, 12, 0, tzinfo=UTC))
    async with harness(infra, database_url, topics, clock) as h:
        note = request("dup-1", channel=Channel.EMAIL, to="ana@example.com", template="thank_you")
        await h.request(note, note)
        await h.tick()
        await h.request(note)  # after it was sent: a replay from the topic
        assert await h.tick() == 0
        rows = await deliveries(database_url)
        assert rows["dup-1"]["status"] == "sent" and rows["dup-1"]["attempts"] == 1
        outbox = await query(database_url, "SELECT notification_id FROM notifier.outbox")
        assert outbox == [{"notification_id": "dup-1"}]


async def test_an_answer_arriving_after_the_lease_still_records_the_truth(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    """A sender that looked dead (lease over, recorded 'unknown') but then hears 'accepted' upgrades it."""
    clock = Clock(datetime(2026, 6, 1, 12, 0, tzinfo=UTC))
    with FakeTwilio() as fake:
        fake.on("+15550104242", Step(hold=True))
        async with harness(infra, database_url, topics, clock, **_twilio(fake), provider_timeout_s=5) as h:
            await h.request(
                request("sms-slow", channel=Channel.SMS, to="+15550104242", template="thank_you",
                        customer="cus-slow")
            )  # fmt: skip
            assert await h.dispatcher.tick() == 1
            assert await asyncio.to_thread(fake.accepted_signal.wait, 10)
            clock.advance(seconds=120)  # the lease (3 x 5 s + 1 s + 30 s) is long gone
            assert await h.dispatcher.tick() == 0
            row = (await deliveries(database_url))["sms-slow"]
            assert row["status"] == "unknown" and row["reason"] == "crashed_mid_send"
            fake.release.set()
            await h.dispatcher.drain(10)
            await h.dispatcher.relay()
            row = (await deliveries(database_url))["sms-slow"]
            assert row["status"] == "sent" and row["provider_message_id"].startswith("SM")
            assert len(fake.requests) == 1
        events = await read_events(infra.bootstrap, topics.outcomes, count=2, timeout_s=20)
    assert [e.data.model_dump()["status"] for e in events] == ["unknown", "sent"]
