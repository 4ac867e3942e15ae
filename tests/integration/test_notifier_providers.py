"""Every provider adapter against a fake server speaking that provider's wire format, on the real stack.

One notifier run per provider sends five messages side by side, each to a recipient the fake treats
differently: accepted, a 500 then accepted, a 429 with ``Retry-After: 30`` then accepted, accepted but
answered too late (timeout after accept), and a 4xx rejection. The 429 message is sent first and its
Retry-After wait must not hold the others back: they all end while it waits, scheduled 30 s after its
first attempt. The test then moves that schedule to now, as 30 s passing would, rather than waiting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import text

from services.notifier.bootstrap import create_app
from shared.db import make_engine
from shared.events import Channel
from shared.topics import Topics
from tests.fakes.base import FakeServer, Step
from tests.fakes.mailgun import FakeMailgun
from tests.fakes.postmark import FakePostmark
from tests.fakes.sendgrid import FakeSendGrid
from tests.fakes.slack import FakeSlack
from tests.fakes.twilio import FakeTwilio
from tests.fakes.webhook import FakeWebhookReceiver
from tests.helpers import produce, read_events, running, wait_for
from tests.infra import Infra
from tests.integration.notifier_support import FINAL, deliveries, notifier_settings, records, request

pytestmark = pytest.mark.integration

SCENARIOS = ("e429", "ok", "e500", "hang", "reject")
PHONES = {s: f"+1555010000{i}" for i, s in enumerate(SCENARIOS, start=1)}
SUCCESS = {"sendgrid": 202, "mailgun": 200, "postmark": 200, "twilio": 201, "slack": 200, "webhook": 200}


@dataclass(frozen=True)
class Case:
    name: str
    fake: Callable[[], FakeServer]
    channel: Channel
    settings: Callable[[Any], dict[str, Any]]
    address: Callable[[Any, str], str]
    key: Callable[[str], str]
    template: str
    transactional: bool
    reject_status: int
    dedupes: bool = False


def _email(_fake: Any, scenario: str) -> str:
    return f"{scenario}@example.com"


CASES = [
    Case(
        "sendgrid",
        FakeSendGrid,
        Channel.EMAIL,
        lambda f: {"email_provider": "sendgrid", "sendgrid_api_key": f.api_key, "sendgrid_base_url": f.url},
        _email,
        lambda s: f"{s}@example.com",
        "low_score_followup",
        False,
        400,
    ),
    Case(
        "mailgun",
        FakeMailgun,
        Channel.EMAIL,
        lambda f: {
            "email_provider": "mailgun",
            "mailgun_api_key": f.api_key,
            "mailgun_domain": f.domain,
            "mailgun_base_url": f.url,
        },
        _email,
        lambda s: f"{s}@example.com",
        "thank_you",
        False,
        400,
    ),
    Case(
        "postmark",
        FakePostmark,
        Channel.EMAIL,
        lambda f: {
            "email_provider": "postmark",
            "postmark_server_token": f.token,
            "postmark_base_url": f.url,
        },
        _email,
        lambda s: f"{s}@example.com",
        "review_invite",
        False,
        422,
    ),
    Case(
        "twilio",
        FakeTwilio,
        Channel.SMS,
        lambda f: {
            "sms_provider": "twilio",
            "twilio_account_sid": f.account_sid,
            "twilio_auth_token": f.auth_token,
            "twilio_from": "+15005550006",
            "twilio_base_url": f.url,
        },
        lambda _f, s: PHONES[s],
        lambda s: PHONES[s],
        "resurvey_open_question",
        False,
        400,
    ),
    Case(
        "slack",
        FakeSlack,
        Channel.SLACK,
        lambda f: {"chat_provider": "slack"},
        lambda f, s: f.hook(s),
        lambda s: s,
        "segment_alert",
        True,
        404,
    ),
    Case(
        "webhook",
        FakeWebhookReceiver,
        Channel.WEBHOOK,
        lambda f: {"webhook_provider": "webhook", "webhook_secret": f.secret},
        lambda f, s: f.hook(s),
        lambda s: s,
        "csm_alert",
        True,
        400,
        dedupes=True,
    ),
]


RETRY_AFTER_S = 30


async def _retry_now(database_url: str, notification_id: str) -> None:
    """What ``RETRY_AFTER_S`` passing would do: the rescheduled attempt falls due now."""
    engine = make_engine(database_url)
    try:
        async with engine.begin() as conn:
            moved = await conn.execute(
                text(
                    "UPDATE notifier.deliveries SET next_attempt_at = now() "
                    "WHERE notification_id = :id AND status = 'pending'"
                ),
                {"id": notification_id},
            )
            assert moved.rowcount == 1
    finally:
        await engine.dispose()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_provider_failure_matrix(infra: Infra, database_url: str, topics: Topics, case: Case) -> None:
    with case.fake() as fake:
        # A long Retry-After: the others end while the 429's retry waits however loaded the machine is
        # (a 2 s one once let the 500's retry be recorded after the 429's second attempt); the test
        # then brings that retry forward instead of waiting for it.
        fake.on(case.key("e429"), Step(status=429, retry_after=str(RETRY_AFTER_S)))
        fake.on(case.key("e500"), 500)
        fake.on(case.key("hang"), Step(status=0, delay_s=2.0))  # accepted, answered after our 0.5 s timeout
        fake.on(case.key("reject"), case.reject_status)
        cfg = notifier_settings(infra, database_url, topics, **case.settings(fake))
        notes = {
            s: request(
                f"{case.name}-{s}",
                channel=case.channel,
                to=case.address(fake, s),
                template=case.template,
                customer=f"cus-{s}",
                transactional=case.transactional,
                locale="fr" if s == "ok" else "en",
            )
            for s in SCENARIOS
        }
        e429 = f"{case.name}-e429"
        async with running(create_app(cfg)) as client:
            # The rate-limited message goes first; the others are requested while it waits.
            await produce(infra.bootstrap, records(topics, [notes["e429"]]))

            async def first_429() -> int:
                return len(fake.requests_for(case.key("e429")))

            await wait_for(first_429, until=lambda n: n >= 1, timeout_s=30)
            await produce(infra.bootstrap, records(topics, [notes[s] for s in SCENARIOS if s != "e429"]))

            async def finals() -> dict[str, dict[str, Any]]:
                return await deliveries(database_url)

            # 429: the others end while it waits for its Retry-After, which held nothing else back.
            waiting = await wait_for(
                finals,
                until=lambda r: (
                    len(r) == 5
                    and all(d["status"] in FINAL for i, d in r.items() if i != e429)
                    and r[e429]["status"] != "sending"
                ),
                timeout_s=30,
            )
            held = waiting[e429]
            assert held["status"] == "pending" and held["attempts"] == 1, held
            assert held["reason"] == "retry:rate_limited", held
            assert (held["next_attempt_at"] - held["updated_at"]).total_seconds() >= RETRY_AFTER_S - 0.5
            assert [c.status for c in fake.requests_for(case.key("e429"))] == [429]
            await _retry_now(database_url, e429)

            rows = await wait_for(
                finals,
                until=lambda r: len(r) == 5 and all(d["status"] in FINAL for d in r.values()),
                timeout_s=30,
            )
            events = await read_events(infra.bootstrap, topics.outcomes, count=5, timeout_s=20)
            metrics = (await client.get("/metrics")).text
        by = {s: rows[f"{case.name}-{s}"] for s in SCENARIOS}

        # Accepted on the first attempt, in the provider's format (the fake refuses anything else).
        assert by["ok"]["status"] == "sent" and by["ok"]["attempts"] == 1
        assert by["ok"]["provider"] == case.name
        assert len(fake.accepted_for(case.key("ok"))) == 1

        # 500: the provider said it failed; sent again, delivered once.
        assert by["e500"]["status"] == "sent" and by["e500"]["attempts"] == 2
        assert [c.status for c in fake.requests_for(case.key("e500"))] == [500, SUCCESS[case.name]]
        assert len(fake.accepted_for(case.key("e500"))) == 1

        # 429: sent again once its Retry-After was over (brought forward above), delivered once.
        calls = fake.requests_for(case.key("e429"))
        assert [c.status for c in calls] == [429, SUCCESS[case.name]]
        assert by["e429"]["status"] == "sent" and by["e429"]["attempts"] == 2

        # 4xx: not retried.
        assert by["reject"]["status"] == "failed" and by["reject"]["attempts"] == 1
        assert by["reject"]["reason"] == "rejected"
        assert len(fake.requests_for(case.key("reject"))) == 1

        # Timeout after accept: the provider has it; we must not send it again unless it dedupes.
        hang = fake.requests_for(case.key("hang"))
        if case.dedupes:
            assert by["hang"]["status"] == "sent" and by["hang"]["attempts"] == 2
            assert len(hang) == 2
            assert len({c.headers["x-csat-id"] for c in hang}) == 1  # same id: the receiver dedupes
            assert isinstance(fake, FakeWebhookReceiver)
            assert len(fake.effects) == 4  # ok, e500, e429, hang: each applied once
        else:
            assert by["hang"]["status"] == "unknown" and by["hang"]["reason"] == "ambiguous"
            assert by["hang"]["attempts"] == 1
            assert len(hang) == 1 and len(fake.accepted_for(case.key("hang"))) == 1

        published = {e.data.model_dump()["notification_id"]: e.data.model_dump() for e in events}
        assert {nid: o["status"] for nid, o in published.items()} == {
            nid: row["status"] for nid, row in rows.items()
        }
        assert published[f"{case.name}-reject"]["reason"] == "rejected"
        assert f'csat_provider_attempts_total{{provider="{case.name}",result="rate_limited"}}' in metrics
        channel, name = case.channel.value, case.name
        assert f'csat_notifications_total{{channel="{channel}",outcome="sent",provider="{name}"}}' in metrics
        _check_wire_format(case, fake)


def _check_wire_format(case: Case, fake: FakeServer) -> None:
    """What the accepted message looked like on the wire, in the provider's own terms."""
    ok = fake.accepted_for(case.key("ok"))[0]
    p = ok.payload
    if case.name == "sendgrid":
        assert p["subject"] == "Nous sommes désolés de votre expérience"
        assert p["custom_args"]["notification_id"] == "sendgrid-ok"
        assert p["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    elif case.name == "mailgun":
        assert p["subject"] == "Merci pour votre avis !"
        assert p["from"] == "Customer Care <feedback@example.com>"
        assert p["v:notification_id"] == "mailgun-ok" and p["o:tag"] == "test-rule"
        assert p["h:List-Unsubscribe"].startswith("<http://127.0.0.1:8003/u/")
        assert p["h:List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    elif case.name == "postmark":
        assert p["MessageStream"] == "outbound" and p["Metadata"] == {"notification_id": "postmark-ok"}
        names = {h["Name"]: h["Value"] for h in p["Headers"]}
        assert names["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert "Un avis public sincère" in p["TextBody"] and p["Subject"].startswith("Accepteriez-vous")
    elif case.name == "twilio":
        assert p["From"] == "+15005550006" and p["To"] == PHONES["ok"]
        assert "STOP" in p["Body"] and len(p["Body"]) <= 320  # the SMS variant, French
        assert p["Body"].startswith("Merci pour votre note")
    elif case.name == "slack":
        assert p["blocks"][0]["type"] == "header" and p["blocks"][1]["type"] == "section"
        assert "store=paris-1" in p["blocks"][0]["text"]["text"]
    elif case.name == "webhook":
        event = p["json"]
        assert event["id"] == "webhook-ok" and event["type"] == "com.csat.notification.v1"
        assert event["data"]["template"] == "csm_alert" and event["data"]["locale"] == "fr"
        assert ok.headers["idempotency-key"] == "webhook-ok"
