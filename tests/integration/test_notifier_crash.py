"""A notifier process SIGKILLed between the provider's acceptance and our record, then restarted.

The fake providers accept the message and hold their answer; the test kills the process at that
moment (no shutdown code runs), restarts it, and checks what reached the providers.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from devstack.ports import free_port
from devstack.stack import ServiceProcess
from shared.events import Channel
from shared.topics import Topics
from tests.fakes.base import FakeServer, Step
from tests.fakes.sendgrid import FakeSendGrid
from tests.fakes.webhook import FakeWebhookReceiver
from tests.helpers import TEST_KAFKA_PROCESS_ENV, produce, read_events, wait_for
from tests.infra import Infra
from tests.integration.notifier_support import FINAL, deliveries, records, request

pytestmark = pytest.mark.integration


def _process(
    infra: Infra,
    database_url: str,
    topics: Topics,
    log: Path,
    sendgrid: FakeSendGrid,
    hooks: FakeWebhookReceiver,
) -> ServiceProcess:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP": infra.bootstrap,
        "DATABASE_URL": database_url,
        "CSAT_TOPIC_PREFIX": topics.prefix,
        "CSAT_ENVIRONMENT": "test",
        "CSAT_LOG_FORMAT": "json",
        **TEST_KAFKA_PROCESS_ENV,
        "CSAT_EMAIL_PROVIDER": "sendgrid",
        "CSAT_SENDGRID_API_KEY": sendgrid.api_key,
        "CSAT_SENDGRID_BASE_URL": sendgrid.url,
        "CSAT_WEBHOOK_PROVIDER": "webhook",
        "CSAT_WEBHOOK_SECRET": hooks.secret,
        "CSAT_OUTBOUND_ALLOW": '["127.0.0.1/32"]',  # the fake receiver is on loopback
        # An attempt may last 3 x 2 s + 1 s; past that lease a 'sending' record means its sender died.
        "CSAT_PROVIDER_TIMEOUT_S": "2",
        "CSAT_LEASE_GRACE_S": "0",
        "CSAT_DISPATCH_INTERVAL_S": "0.05",
        "CSAT_QUIET_HOURS": "off",
        "PYTHONUNBUFFERED": "1",
    }
    return ServiceProcess(name="notifier", port=free_port(), env=env, log_path=log)


async def _accepted(fake: FakeServer) -> None:
    assert await asyncio.to_thread(fake.accepted_signal.wait, 60), f"{fake.name} never got the message"


async def test_crash_between_send_and_record_never_reaches_a_customer_twice(
    infra: Infra, database_url: str, topics: Topics, tmp_path: Path
) -> None:
    with FakeSendGrid() as sendgrid, FakeWebhookReceiver() as hooks:
        sendgrid.on("crash@example.com", Step(hold=True))  # accepted; the answer never comes in time
        hooks.on("crash", Step(hold=True))
        first = _process(infra, database_url, topics, tmp_path / "notifier-1.log", sendgrid, hooks)
        second = _process(infra, database_url, topics, tmp_path / "notifier-2.log", sendgrid, hooks)
        try:
            await asyncio.to_thread(first.start)
            await asyncio.to_thread(first.wait_ready, 90)
            await produce(
                infra.bootstrap,
                records(topics, [
                    request("crash-email", channel=Channel.EMAIL, to="crash@example.com",
                            template="low_score_followup", customer="cus-crash"),
                    request("crash-hook", channel=Channel.WEBHOOK, to=hooks.hook("crash"),
                            template="csm_alert", customer="cus-crash", transactional=True, rule="crm-sync"),
                ]),
            )  # fmt: skip
            await asyncio.gather(_accepted(sendgrid), _accepted(hooks))
            first.kill()  # SIGKILL right after both providers accepted, before any answer was recorded

            rows = await deliveries(database_url)
            assert rows["crash-email"]["status"] == "sending" and rows["crash-hook"]["status"] == "sending"
            assert len(sendgrid.accepted) == 1 and len(hooks.accepted) == 1

            # Requested while the notifier is down: must still go out after the restart.
            await produce(
                infra.bootstrap,
                records(topics, [request("after-crash", channel=Channel.EMAIL, to="after@example.com",
                                         template="thank_you", customer="cus-after")]),
            )  # fmt: skip
            await asyncio.to_thread(second.start)
            await asyncio.to_thread(second.wait_ready, 90)

            async def probe() -> dict[str, dict[str, Any]]:
                return await deliveries(database_url)

            ids = {"crash-email", "crash-hook", "after-crash"}
            rows = await wait_for(
                probe,
                until=lambda r: ids <= set(r) and all(r[i]["status"] in FINAL for i in ids),
                timeout_s=60,
            )
        finally:
            first.kill()
            second.stop()

        # SendGrid takes no idempotency key: the message it accepted is recorded 'unknown', never resent.
        assert rows["crash-email"]["status"] == "unknown"
        assert rows["crash-email"]["reason"] == "crashed_mid_send"
        assert len(sendgrid.requests_for("crash@example.com")) == 1
        assert len(sendgrid.accepted_for("crash@example.com")) == 1
        # The webhook receiver dedupes on X-CSAT-Id: resent with the same id, applied once.
        assert rows["crash-hook"]["status"] == "sent" and rows["crash-hook"]["attempts"] == 2
        assert [c.headers["x-csat-id"] for c in hooks.requests_for("crash")] == ["crash-hook", "crash-hook"]
        assert list(hooks.effects) == ["crash-hook"]
        # Nothing else was stuck behind the crash.
        assert rows["after-crash"]["status"] == "sent"
        assert len(sendgrid.accepted_for("after@example.com")) == 1

    events = await read_events(infra.bootstrap, topics.outcomes, count=3, timeout_s=20)
    outcomes = {e.data.model_dump()["notification_id"]: e.data.model_dump() for e in events}
    assert outcomes["crash-email"]["status"] == "unknown"
    assert outcomes["crash-email"]["reason"] == "crashed_mid_send"
    assert outcomes["crash-hook"]["status"] == "sent" and outcomes["after-crash"]["status"] == "sent"
