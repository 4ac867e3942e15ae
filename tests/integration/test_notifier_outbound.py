"""Webhook and Slack sends go through the outbound URL guard: loopback is refused unless allow-listed.

The receivers are real HTTP servers on 127.0.0.1, so what the guard refuses would otherwise have
been delivered: the refusal, not a connection error, is what keeps the request from leaving.
"""

from __future__ import annotations

from typing import Any

import pytest

from services.notifier.bootstrap import create_app
from services.notifier.providers import Message, Provider, Verdict
from services.notifier.providers.slack import SlackProvider
from services.notifier.providers.webhook import WebhookProvider
from shared.events import Channel
from shared.security.ssrf import OutboundPolicy
from shared.topics import Topics
from tests.fakes.slack import FakeSlack
from tests.fakes.webhook import FakeWebhookReceiver
from tests.helpers import produce, running, wait_for
from tests.infra import Infra
from tests.integration.notifier_support import FINAL, deliveries, notifier_settings, records, request

pytestmark = pytest.mark.integration


def message(to: str, channel: Channel) -> Message:
    return Message(
        notification_id=f"n-{channel.value}", channel=channel, to=to, subject="Alert", body="A low score"
    )


@pytest.mark.parametrize("kind", ["slack", "webhook"])
async def test_a_loopback_receiver_is_refused_in_prod_and_reached_only_when_allow_listed(kind: str) -> None:
    fake: Any = FakeSlack() if kind == "slack" else FakeWebhookReceiver()
    channel = Channel.SLACK if kind == "slack" else Channel.WEBHOOK

    def provider(policy: OutboundPolicy) -> Provider:
        if kind == "slack":
            return SlackProvider(policy=policy, timeout_s=2)
        return WebhookProvider(secret=fake.secret, policy=policy, timeout_s=2)

    with fake:
        url = fake.hook("ops")
        https_url = url.replace("http://", "https://")
        for policy, target in (
            (OutboundPolicy.for_environment("prod"), https_url),  # https, but loopback
            (OutboundPolicy.for_environment("prod", ["127.0.0.1/32"]), url),  # allow-listed, but http in prod
            (OutboundPolicy.for_environment("test"), url),  # dev/test take http, not loopback
        ):
            sender = provider(policy)
            try:
                result = await sender.send(message(target, channel))
            finally:
                await sender.aclose()
            assert result.verdict is Verdict.REJECTED and "outbound URL guard" in (result.detail or "")
        assert fake.calls == 0  # nothing left this process
        allowed = provider(OutboundPolicy.for_environment("test", ["127.0.0.1/32"]))
        try:
            result = await allowed.send(message(url, channel))
        finally:
            await allowed.aclose()
        assert result.verdict is Verdict.ACCEPTED and fake.calls == 1


async def test_the_notifier_records_a_guarded_url_as_failed_and_never_retries_it(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    with FakeSlack() as slack, FakeWebhookReceiver() as hooks:
        cfg = notifier_settings(
            infra,
            database_url,
            topics,
            chat_provider="slack",
            webhook_provider="webhook",
            webhook_secret=hooks.secret,
            outbound_allow=[],  # loopback not allowed: the guard must refuse both
        )
        notes = [
            request(
                "to-slack",
                channel=Channel.SLACK,
                to=slack.hook("ops"),
                template="csm_alert",
                transactional=True,
            ),
            request(
                "to-hook",
                channel=Channel.WEBHOOK,
                to=hooks.hook("ops"),
                template="csm_alert",
                transactional=True,
            ),
        ]
        async with running(create_app(cfg)):
            await produce(infra.bootstrap, records(topics, notes))

            async def final() -> dict[str, dict[str, Any]]:
                return await deliveries(database_url)

            rows = await wait_for(
                final,
                until=lambda r: len(r) == 2 and all(d["status"] in FINAL for d in r.values()),
                timeout_s=30,
            )
        for row in rows.values():
            assert (row["status"], row["reason"], row["attempts"]) == ("failed", "rejected", 1)
            assert "outbound URL guard" in row["last_error"] and "loopback" in row["last_error"]
        assert slack.calls == 0 and hooks.calls == 0
