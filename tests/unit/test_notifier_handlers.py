"""The intake and the dispatcher on the in-memory store and in-process providers, driven tick by tick.

The same use cases as the integration tests on PostgreSQL, without the database: consent, quiet hours,
the daily cap, retries and their limits, dedupe, and the recovery of an attempt claimed but never
recorded. A clock the test moves stands in for time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from prometheus_client import REGISTRY
from structlog.testing import CapturingLogger

from services.notifier import dispatcher as dispatcher_module
from services.notifier.dispatcher import Dispatcher
from services.notifier.handlers import Intake
from services.notifier.policy import QuietHours
from services.notifier.ports import NewRequest, SuppressionEntry
from services.notifier.providers import Provider, SendResult, Verdict
from services.notifier.templating import Templates
from services.notifier.tokens import UnsubscribeTokens
from services.notifier.transitions import DispatchConfig
from shared import events as ev
from shared.consumer import Received
from shared.envelope import OutgoingRecord, decode, encode
from shared.events import Channel, DeadLetter, NotificationOutcome, NotificationRequested
from shared.topics import Topics
from tests.fakes.notifier_providers import Hold, ScriptedProvider, http_provider
from tests.fakes.notifier_store import MemoryNotifierStore, MemoryOutbox
from tests.unit.notifier_support import Clock, note

PARIS = ZoneInfo("Europe/Paris")
NOON = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
TOPICS = Topics()
TEMPLATES = Templates()
QUIET_NIGHT = QuietHours.parse("21:00-08:00")


@dataclass
class Rig:
    store: MemoryNotifierStore
    dispatcher: Dispatcher
    intake: Intake
    clock: Clock
    published: list[OutgoingRecord] = field(default_factory=list)

    async def request(self, *notes: NotificationRequested) -> None:
        """What the consumer does with a batch: the intake in one transaction."""
        batch = []
        for offset, n in enumerate(notes):
            rec = encode(topic=TOPICS.notifications, event_type=ev.NOTIFICATION_REQUESTED, source="/test",
                         event_id=f"req-{n.notification_id}", data=n, key=n.customer_id)  # fmt: skip
            env = decode(headers=rec.headers, key=rec.key, value=rec.value)
            batch.append(Received(envelope=env, topic=rec.topic, partition=0, offset=offset))
        async with self.store.begin() as tx:
            await self.intake.handle(tx, batch)

    async def tick(self) -> int:
        started = await self.dispatcher.tick()
        await self.dispatcher.drain(5)
        await self.dispatcher.relay()
        return started

    def note(self, nid: str, **kw: Any) -> NotificationRequested:
        return note(nid, requested_at=self.clock.now, **kw)

    def outcomes(self) -> list[NotificationOutcome]:
        return [e for e in self._events(TOPICS.outcomes) if isinstance(e, NotificationOutcome)]

    def letters(self) -> list[DeadLetter]:
        return [e for e in self._events(TOPICS.dlq_notifier) if isinstance(e, DeadLetter)]

    def _events(self, topic: str) -> list[Any]:
        return [
            decode(headers=r.headers, key=r.key, value=r.value).data
            for r in self.published
            if r.topic == topic
        ]


#: The address keys of the rig's dispatcher (the configuration's default).
KEYS = DispatchConfig().address_keys


def rig(
    *,
    now: datetime = NOON,
    store: MemoryNotifierStore | None = None,
    providers: dict[Channel, Provider] | None = None,
    **config: Any,
) -> Rig:
    store = store or MemoryNotifierStore()
    outbox = MemoryOutbox(store)
    chosen: dict[Channel, Provider] = dict.fromkeys(Channel, outbox) | (providers or {})
    clock = Clock(now)
    published: list[OutgoingRecord] = []

    async def publish(records: Sequence[OutgoingRecord]) -> None:
        published.extend(records)

    dispatcher = Dispatcher(
        store=store,
        providers=chosen,
        templates=TEMPLATES,
        tokens=UnsubscribeTokens(["unit-secret"]),
        topics=TOPICS,
        publish=publish,
        config=DispatchConfig(**{"retry_base_s": 10.0, "quiet": None, **config}),
        default_addresses={Channel.SLACK: "outbox:slack", Channel.WEBHOOK: "https://hooks.example/crm"},
        clock=clock,
    )
    intake = Intake(provider_names={ch: p.name for ch, p in chosen.items()}, clock=clock)
    return Rig(store, dispatcher, intake, clock, published)


async def _until(happened: Callable[[], object]) -> None:
    """Let the tasks already started run (no clock involved) until ``happened()``."""
    for _ in range(100):
        if happened():
            return
        await asyncio.sleep(0)
    raise AssertionError("it never happened")


def _metric(outcome: str, channel: str = "email", provider: str = "outbox") -> float:
    labels = {"channel": channel, "provider": provider, "outcome": outcome}
    return REGISTRY.get_sample_value("csat_notifications_total", labels) or 0.0


# ---- intake ---------------------------------------------------------------------------------------------
async def test_the_intake_records_each_request_once_and_counts_replays_as_duplicates() -> None:
    r = rig()
    later = NOON + timedelta(hours=2)
    a, b = r.note("a"), r.note("b", not_before=later)
    before = _metric("duplicate")
    await r.request(a, a, b)
    await r.request(a)  # replayed from the topic
    assert r.store.statuses() == {"a": "pending", "b": "pending"}
    assert r.store.record("a").next_attempt_at == NOON and r.store.record("b").next_attempt_at == later
    assert r.store.record("a").source_offset == 0 and r.store.record("a").event_id == "req-a"
    assert _metric("duplicate") - before == 2
    assert r.store.wakes == 1  # only the commit that inserted something wakes the dispatchers


async def test_a_request_due_later_is_not_sent_before_its_time() -> None:
    r = rig()
    await r.request(r.note("later", not_before=NOON + timedelta(minutes=5)))
    assert await r.tick() == 0
    r.clock.advance(minutes=5)
    assert await r.tick() == 1
    assert r.store.record("later").status == "sent"


# ---- consent, quiet hours, the daily cap ----------------------------------------------------------------
async def test_opted_out_recipients_get_no_customer_messages_but_internal_alerts_still_go() -> None:
    r = rig()
    async with r.store.begin() as tx:
        await tx.suppress(entries=[SuppressionEntry("customer", "cus-gone")], reason="unsubscribed",
                          source="unsubscribe", customer_id="cus-gone", notification_id=None)  # fmt: skip
        await tx.suppress(entries=[SuppressionEntry("email", KEYS.key("email", "old@example.com"))],
                          reason="admin", source="admin", customer_id=None, notification_id=None)  # fmt: skip
    await r.request(
        r.note("by-customer", customer="cus-gone"),
        r.note("by-address", to="OLD@example.com", customer="cus-other"),
        r.note("alert", customer="cus-gone", transactional=True, template="csm_alert"),
        r.note("ok", customer="cus-fine"),
    )
    assert await r.tick() == 2
    assert r.store.statuses() == {"by-customer": "suppressed", "by-address": "suppressed", "alert": "sent",
                                  "ok": "sent"}  # fmt: skip
    assert r.store.record("by-customer").last_error == "on the suppression list (customer:unsubscribed)"
    assert r.store.record("by-address").last_error == "on the suppression list (email:admin)"
    assert sorted(r.store.state.outbox) == ["alert", "ok"]
    assert r.store.state.outbox["ok"].headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert not r.store.state.outbox["alert"].headers  # internal alerts carry no unsubscribe link
    assert {(o.notification_id, o.status) for o in r.outcomes()} == {
        ("by-customer", "suppressed"), ("by-address", "suppressed"), ("alert", "sent"), ("ok", "sent")
    }  # fmt: skip


async def test_quiet_hours_defer_customer_sms_to_the_recipients_morning() -> None:
    sms = ScriptedProvider("twilio")
    r = rig(now=datetime(2026, 6, 1, 7, 59, 58, tzinfo=PARIS).astimezone(UTC), providers={Channel.SMS: sms},
            quiet=QUIET_NIGHT)  # fmt: skip
    await r.request(
        r.note("sms", channel=Channel.SMS, to="+33 6 12 34 56 78", timezone="Europe/Paris", locale="fr"),
        r.note(
            "staff", channel=Channel.SMS, to="+33698765432", transactional=True, template="support_callback"
        ),
    )
    assert await r.tick() == 1
    row = r.store.record("sms")
    assert (row.status, row.reason) == ("pending", "quiet_hours")
    assert row.next_attempt_at == datetime(2026, 6, 1, 8, 0, tzinfo=PARIS)
    assert [m.to for m in sms.sent] == ["+33698765432"]
    deferred = next(o for o in r.outcomes() if o.status == "deferred")
    assert (
        deferred.next_attempt_at == datetime(2026, 6, 1, 6, 0, tzinfo=UTC)
        and deferred.reason == "quiet_hours"
    )
    r.clock.advance(seconds=1)
    assert await r.tick() == 0  # still quiet
    r.clock.advance(seconds=1)
    assert await r.tick() == 1
    assert [m.to for m in sms.sent] == ["+33698765432", "+33612345678"]
    assert sms.sent[1].body.startswith("Merci")
    assert r.store.record("sms").status == "sent"


async def test_the_daily_cap_counts_customer_messages_per_local_day() -> None:
    r = rig(now=datetime(2026, 6, 1, 23, 50, tzinfo=PARIS).astimezone(UTC), daily_cap=2)
    await r.request(
        *[r.note(f"mail-{i}", customer="cus-cap", timezone="Europe/Paris") for i in range(3)],
        r.note("csm", customer="cus-cap", transactional=True, template="csm_alert"),
    )
    assert await r.tick() == 3
    statuses = r.store.statuses()
    assert sorted(statuses[f"mail-{i}"] for i in range(3)) == ["sent", "sent", "suppressed"]
    assert statuses["csm"] == "sent"  # internal alerts are not capped
    capped = next(row for row in r.store.state.deliveries.values() if row.status == "suppressed")
    assert capped.reason == "daily_cap" and capped.last_error == "daily cap of 2 messages reached"
    r.clock.advance(minutes=15)  # 00:05 in Paris: a new day, a new allowance
    await r.request(r.note("next-day", customer="cus-cap", timezone="Europe/Paris"))
    assert await r.tick() == 1
    assert r.store.state.daily == {("cus-cap", date(2026, 6, 1)): 2, ("cus-cap", date(2026, 6, 2)): 1}


async def test_the_daily_cap_per_address_holds_whatever_the_customer_ids() -> None:
    r = rig(daily_cap=3, address_cap=3)
    victim = [r.note(f"v-{i}", customer=f"cus-rotated-{i}", to="Victim@Example.com") for i in range(6)]
    await r.request(*victim, r.note("other", customer="cus-rotated-0", to="someone@example.com"))
    await r.tick()
    statuses = r.store.statuses()
    assert sorted(statuses[f"v-{i}"] for i in range(6)) == ["sent"] * 3 + ["suppressed"] * 3
    assert statuses["other"] == "sent"  # another address: its own allowance
    capped = [row for row in r.store.state.deliveries.values() if row.status == "suppressed"]
    assert {(row.reason, row.last_error) for row in capped} == {
        ("address_cap", "daily cap of 3 messages to this address reached")
    }
    # A refused reservation takes nothing: the suppressed customers' counters stay untouched.
    assert sum(r.store.state.daily.values()) == 4
    (address_count,) = [n for (scope, key, _day), n in r.store.state.caps.items() if n == 3]
    assert address_count == 3 and all("victim" not in key for (_scope, key, _day) in r.store.state.caps)


async def test_the_daily_cap_per_source_bounds_what_one_source_can_send() -> None:
    r = rig(source_cap=2)
    await r.request(
        *[r.note(f"s-{i}", customer=f"c-{i}", to=f"p{i}@example.com", source="leaky") for i in range(3)],
        r.note("elsewhere", customer="c-9", to="p9@example.com", source="shop"),
        r.note(
            "internal",
            customer="c-8",
            to="csm@example.com",
            source="leaky",
            transactional=True,
            template="csm_alert",
        ),
    )
    await r.tick()
    statuses = r.store.statuses()
    assert sorted(statuses[f"s-{i}"] for i in range(3)) == ["sent", "sent", "suppressed"]
    assert (statuses["elsewhere"], statuses["internal"]) == ("sent", "sent")
    assert {row.reason for row in r.store.state.deliveries.values() if row.status == "suppressed"} == {
        "source_cap"
    }


# ---- provider answers: retries and their limits ---------------------------------------------------------
def _answering(
    *statuses: int | type[httpx.RequestError], retry_after: str | None = None
) -> Callable[..., httpx.Response]:
    """A SendGrid endpoint answering each call with the next status (or raising), then 202."""
    script = list(statuses)

    def answer(request: httpx.Request) -> httpx.Response:
        step = script.pop(0) if script else 202
        if isinstance(step, type):
            raise step("scripted", request=request)
        headers = {"Retry-After": retry_after} if retry_after else {}
        if step == 202:
            headers["X-Message-Id"] = "sg-1"
        return httpx.Response(step, headers=headers, json={"errors": [{"message": "scripted"}]})

    return answer


@pytest.mark.parametrize(
    ("answer", "reason", "wait_s"),
    [
        pytest.param(_answering(429, retry_after="30"), "retry:rate_limited", (30, 30), id="429-retry-after"),
        pytest.param(_answering(503), "retry:server_error", (5, 10), id="503"),
        pytest.param(_answering(500), "retry:server_error", (5, 10), id="500"),
        pytest.param(_answering(httpx.ConnectError), "retry:network_error", (5, 10), id="no-connection"),
        pytest.param(_answering(httpx.ConnectTimeout), "retry:network_error", (5, 10), id="connect-timeout"),
    ],
)
async def test_unaccepted_sends_are_retried_later_and_then_go(
    answer: Callable[..., httpx.Response], reason: str, wait_s: tuple[float, float]
) -> None:
    r = rig(providers={Channel.EMAIL: http_provider("sendgrid", answer)})
    await r.request(r.note("m"))
    assert await r.tick() == 1
    row = r.store.record("m")
    assert (row.status, row.reason, row.attempts) == ("pending", reason, 1)
    assert row.next_attempt_at is not None
    wait = row.next_attempt_at - r.clock.now
    assert timedelta(seconds=wait_s[0]) <= wait <= timedelta(seconds=wait_s[1])
    assert await r.tick() == 0  # not due yet: nothing is slept on, nothing is sent
    r.clock.now = row.next_attempt_at
    assert await r.tick() == 1
    row = r.store.record("m")
    assert (row.status, row.attempts, row.provider_message_id) == ("sent", 2, "sg-1")
    assert r.store.state.daily == {("cus-1", NOON.date()): 1}  # counted once across attempts


@pytest.mark.parametrize("status", [400, 401, 403, 413])
async def test_refused_sends_are_failed_at_once_and_give_their_daily_slot_back(status: int) -> None:
    calls: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(status, json={"errors": [{"message": "bad request"}]})

    r = rig(providers={Channel.EMAIL: http_provider("sendgrid", answer)})
    await r.request(r.note("m", source="shop-web"))
    await r.tick()
    r.clock.advance(hours=1)
    await r.tick()
    row = r.store.record("m")
    assert (row.status, row.reason, row.attempts) == ("failed", "rejected", 1)
    assert row.last_error == f"{status} bad request"
    assert len(calls) == 1
    assert r.store.state.daily == {("cus-1", NOON.date()): 0}
    assert set(r.store.state.caps.values()) == {0}  # the address's and source's slots too
    assert [o.status for o in r.outcomes()] == ["failed"]


async def test_a_timeout_after_sending_is_never_resent_where_the_provider_takes_no_idempotency_key() -> None:
    calls: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ReadTimeout("no answer", request=request)

    r = rig(providers={Channel.EMAIL: http_provider("sendgrid", answer)})
    await r.request(r.note("m", source="shop-web"))
    await r.tick()
    r.clock.advance(hours=1)
    await r.tick()
    row = r.store.record("m")
    assert (row.status, row.reason) == ("unknown", "ambiguous")
    assert "not resent: sendgrid takes no idempotency key" in (row.last_error or "")
    assert len(calls) == 1
    assert r.store.state.daily == {("cus-1", NOON.date()): 1}  # it may have gone out: still counted


async def test_a_timeout_after_sending_is_resent_where_the_receiver_dedupes() -> None:
    ids: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        ids.append(request.headers["X-CSAT-Id"])
        if len(ids) == 1:
            raise httpx.ReadTimeout("no answer", request=request)
        return httpx.Response(200)

    r = rig(providers={Channel.WEBHOOK: http_provider("webhook", answer)})
    await r.request(
        r.note("hook", channel=Channel.WEBHOOK, to=None, transactional=True, template="csm_alert")
    )
    await r.tick()
    row = r.store.record("hook")
    assert (row.status, row.reason) == ("pending", "retry:timeout_after_send")
    r.clock.now = row.next_attempt_at or r.clock.now
    await r.tick()
    assert r.store.record("hook").status == "sent" and ids == ["hook", "hook"]


async def test_the_attempt_deadline_makes_an_unanswered_send_ambiguous() -> None:
    stuck = ScriptedProvider("sendgrid")
    stuck.on("ana@example.com", Hold())  # never released
    r = rig(providers={Channel.EMAIL: stuck}, attempt_timeout_s=0.001)
    await r.request(r.note("m"))
    await r.tick()
    row = r.store.record("m")
    assert (row.status, row.reason) == ("unknown", "ambiguous")
    assert (row.last_error or "").startswith("attempt deadline passed")


async def test_deliveries_that_keep_failing_are_dead_lettered_after_max_attempts() -> None:
    sms = ScriptedProvider("twilio")
    r503 = SendResult(Verdict.RETRY, "server_error", detail="503 unavailable")
    r429 = SendResult(Verdict.RETRY, "rate_limited", detail="429 slow down", retry_after_s=30)
    sms.on("+15550109001", r503, r503, r429)
    r = rig(providers={Channel.SMS: sms}, max_attempts=3, daily_cap=1)
    await r.request(r.note("doomed", channel=Channel.SMS, to="+15550109001"))
    for _ in range(3):
        assert await r.tick() == 1
        r.clock.now = r.store.record("doomed").next_attempt_at or r.clock.now
    row = r.store.record("doomed")
    assert (row.status, row.reason, row.attempts) == ("failed", "exhausted", 3)
    assert row.last_error == "gave up after 3 attempts: 429 slow down"
    assert len(sms.sent) == 3
    assert r.store.state.daily == {("cus-1", NOON.date()): 0}  # never went out: the slot is given back
    [letter] = r.letters()
    assert letter.consumer == "notifier" and letter.topic == TOPICS.notifications and letter.offset == 0
    assert letter.reason == "gave up after 3 attempts: 429 slow down"
    assert r.outcomes()[-1].status == "failed"


async def test_a_recipient_who_replied_stop_is_suppressed_on_every_later_message() -> None:
    sms = ScriptedProvider("twilio")
    stop = SendResult(Verdict.RECIPIENT_OPTED_OUT, "recipient_opted_out", detail="twilio 21610 replied STOP")
    sms.on("+33612345678", stop)
    r = rig(providers={Channel.SMS: sms})
    await r.request(r.note("first", channel=Channel.SMS, to="+33612345678"))
    await r.tick()
    assert (r.store.record("first").status, r.store.record("first").reason) == (
        "suppressed",
        "provider_opt_out",
    )
    assert set(r.store.state.suppressions) == {
        SuppressionEntry("sms", KEYS.key("sms", "+33612345678")), SuppressionEntry("customer", "cus-1")
    }  # fmt: skip
    await r.request(r.note("email-later", to="ana@example.com"))
    await r.tick()
    assert r.store.record("email-later").status == "suppressed"  # the customer as a whole opted out
    assert len(sms.sent) == 1


# ---- dedupe and crash recovery --------------------------------------------------------------------------
async def test_a_message_is_never_sent_twice_by_replays_or_by_two_replicas() -> None:
    sendgrid = ScriptedProvider("sendgrid")
    store = MemoryNotifierStore()
    one = rig(store=store, providers={Channel.EMAIL: sendgrid})
    two = rig(store=store, providers={Channel.EMAIL: sendgrid})
    notes = [one.note(f"m-{i}", to=f"c{i}@example.com", customer=f"cus-{i}") for i in range(5)]
    await one.request(*notes)
    await asyncio.gather(one.dispatcher.tick(), two.dispatcher.tick())
    await asyncio.gather(one.dispatcher.drain(5), two.dispatcher.drain(5))
    await one.request(*notes)  # replayed after the send
    assert await one.tick() + await two.tick() == 0
    assert sorted(m.notification_id for m in sendgrid.sent) == [f"m-{i}" for i in range(5)]
    assert set(store.statuses().values()) == {"sent"}


async def test_an_attempt_claimed_but_never_recorded_is_not_resent_and_a_late_answer_still_counts() -> None:
    sendgrid = ScriptedProvider("sendgrid")
    held = Hold()
    sendgrid.on("ana@example.com", held)
    store = MemoryNotifierStore()
    crashed = rig(store=store, providers={Channel.EMAIL: sendgrid})
    await crashed.request(crashed.note("m"))
    assert await crashed.dispatcher.tick() == 1  # claimed; the provider has it; no answer yet
    await _until(lambda: sendgrid.sent)
    assert store.record("m").status == "sending"
    restarted = rig(store=store, providers={Channel.EMAIL: sendgrid}, now=NOON + timedelta(minutes=2))
    assert await restarted.tick() == 0  # the lease ran out: recorded unknown, not resent
    row = store.record("m")
    assert (row.status, row.reason) == ("unknown", "crashed_mid_send")
    assert len(sendgrid.sent) == 1
    held.release()  # the first sender was only slow: its acceptance arrives and tells the truth
    await crashed.dispatcher.drain(5)
    assert store.record("m").status == "sent" and len(sendgrid.sent) == 1
    await crashed.dispatcher.relay()
    assert [o.status for o in restarted.outcomes() + crashed.outcomes()] == ["unknown", "sent"]


async def test_an_attempt_claimed_but_never_recorded_is_resent_where_the_receiver_dedupes() -> None:
    hooks = ScriptedProvider("webhook", dedupes=True)
    held = Hold()
    hooks.on("https://hooks.example/crm", held)  # the first sender does not hear back in time
    store = MemoryNotifierStore()
    crashed = rig(store=store, providers={Channel.WEBHOOK: hooks})
    await crashed.request(crashed.note("hook", channel=Channel.WEBHOOK, to=None, transactional=True,
                                       template="csm_alert"))  # fmt: skip
    assert await crashed.dispatcher.tick() == 1
    await _until(lambda: hooks.sent)
    restarted = rig(store=store, providers={Channel.WEBHOOK: hooks}, now=NOON + timedelta(minutes=2))
    await restarted.tick()  # recovered: due again at once
    await restarted.tick()  # sent again with the same id
    row = store.record("hook")
    assert (row.status, row.attempts) == ("sent", 2)
    assert [m.notification_id for m in hooks.sent] == ["hook", "hook"]
    held.release()  # the first sender's answer comes at last: its attempt no longer owns the row
    await crashed.dispatcher.drain(5)
    assert (store.record("hook").status, store.record("hook").attempts) == ("sent", 2)


async def test_a_row_that_breaks_its_batch_is_failed_alone_and_the_others_go(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    logged = CapturingLogger()
    monkeypatch.setattr(dispatcher_module, "log", logged)
    r = rig()
    await r.request(*[r.note(f"ok-{i}", channel=Channel.SLACK, to=None, transactional=True,
                             template="csm_alert") for i in range(3)])  # fmt: skip
    async with r.store.begin() as tx:  # a stored request this release cannot read
        await tx.insert_requests(requests=[NewRequest(
            notification_id="broken", channel="slack", provider="outbox", rule_id="r", customer_id=None,
            transactional=True, request_json=json.dumps({"notification_id": "broken"}), due_at=NOON,
            event_id="e", source_topic=TOPICS.notifications, source_partition=0, source_offset=9,
        )])  # fmt: skip
    assert await r.tick() == 3
    assert r.store.statuses() == {"ok-0": "sent", "ok-1": "sent", "ok-2": "sent", "broken": "failed"}
    assert r.store.record("broken").reason == "internal"
    assert sorted(r.store.state.outbox) == ["ok-0", "ok-1", "ok-2"]
    assert [(c.method_name, c.args) for c in logged.calls] == [
        ("warning", ("claim_batch_failed_isolating",)), ("exception", ("delivery_prepare_failed",))
    ]  # fmt: skip
    assert logged.calls[1].kwargs == {"notification_id": "broken"}


async def test_the_outbox_is_claimed_written_and_recorded_in_the_claiming_transaction() -> None:
    r = rig()
    await r.request(*[r.note(f"m-{i}", to=f"c{i}@example.com", customer=f"cus-{i}") for i in range(30)])
    commits = r.store.commits
    assert await r.dispatcher.tick() == 30
    # Crash recovery's look, the claim (with every message and its record), the relay: three transactions.
    assert r.store.commits - commits == 3
    assert {row.status for row in r.store.state.deliveries.values()} == {"sent"}
    assert all(row.lease_until is None and row.attempts == 1 for row in r.store.state.deliveries.values())
    assert len(r.store.state.outbox) == 30 and not r.store.state.events  # every outcome relayed
