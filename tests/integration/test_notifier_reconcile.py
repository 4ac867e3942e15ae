"""Reconciling ``unknown`` SendGrid deliveries on the real broker and PostgreSQL, against the fake
SendGrid's Email Activity API (served from the messages it really accepted).

Two emails are left ``unknown`` by a read timeout (the notifier's 0.5 s against the fake's 3 s): one the
fake accepted before its late answer, one it refused (a late 500: never received). The reconciler (settle
delay 1 s) finds the first -> ``sent`` with SendGrid's message id, no second request; it finds the second
absent twice, a settle delay apart -> sent again with the same notification id, received exactly once.
Without the Email Activity add-on (403) the row stays ``unknown`` and says why.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from services.notifier.bootstrap import create_app
from services.notifier.providers.sendgrid import SendGridProvider
from services.notifier.reconcile import ReconcileConfig
from services.notifier.reconciler import Reconciler
from services.notifier.repository import PgNotifierStore
from services.notifier.transitions import DispatchConfig
from shared.db import make_engine
from shared.events import Channel
from shared.topics import Topics
from tests.fakes.base import Step
from tests.fakes.sendgrid import FakeSendGrid
from tests.helpers import produce, read_events, running, wait_for
from tests.infra import Infra
from tests.integration.notifier_support import deliveries, notifier_settings, records, request

pytestmark = pytest.mark.integration

SETTLE_S = 1.0


def _settings(infra: Infra, database_url: str, topics: Topics, fake: FakeSendGrid, **more: Any) -> Any:
    return notifier_settings(
        infra,
        database_url,
        topics,
        email_provider="sendgrid",
        sendgrid_api_key=fake.api_key,
        sendgrid_base_url=fake.url,
        reconcile_settle_s=SETTLE_S,
        reconcile_interval_s=0.2,
        reconcile_lookups_per_minute=600,
        **more,
    )


async def test_unknown_deliveries_are_found_or_sent_again_exactly_once(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    with FakeSendGrid(indexing_delay_s=0.3) as fake:
        fake.on("kept@example.com", Step(status=0, delay_s=3.0))  # accepted; the answer comes too late
        fake.on("lost@example.com", Step(status=500, delay_s=3.0))  # never received; answer too late
        notes = [
            request(
                f"rc-{who}",
                channel=Channel.EMAIL,
                to=f"{who}@example.com",
                template="thank_you",
                customer=f"cus-{who}",
            )
            for who in ("kept", "lost")
        ]
        async with running(create_app(_settings(infra, database_url, topics, fake))) as client:
            await produce(infra.bootstrap, records(topics, notes))

            async def rows() -> dict[str, dict[str, Any]]:
                return await deliveries(database_url)

            # Both become unknown first (the read timeout: the outcome events below), then reconciled.
            done = await wait_for(
                rows,
                until=lambda r: all(r.get(n, {}).get("status") == "sent" for n in ("rc-kept", "rc-lost")),
                timeout_s=60,
            )
            metrics = (await client.get("/metrics")).text

        kept, lost = done["rc-kept"], done["rc-lost"]
        # Found: recorded sent from unknown, with SendGrid's message id; never asked to send again.
        assert kept["reconciled"] == "found" and kept["reason"] == "reconciled"
        assert kept["attempts"] == 1 and len(fake.requests_for("kept@example.com")) == 1
        assert len(fake.accepted_for("kept@example.com")) == 1
        accepted = fake.accepted_for("kept@example.com")[0]
        assert kept["provider_message_id"] == FakeSendGrid.msg_id(accepted.at, accepted.payload)
        # Absent twice: sent again (same notification id, second attempt), received exactly once.
        assert lost["reconciled"] == "absent" and lost["attempts"] == 2
        assert [c.status for c in fake.requests_for("lost@example.com")] == [500, 202]
        assert len(fake.accepted_for("lost@example.com")) == 1
        assert fake.received[-1]["custom_args"] == {"notification_id": "rc-lost"}
        # The absent one was looked at twice at least a settle delay apart before it was resent.
        lost_looks = [lk for lk in fake.lookups if '"rc-lost"' in lk.query]
        assert len(lost_looks) >= 2 and lost_looks[-1].at - lost_looks[0].at >= SETTLE_S
        assert all(lk.found == 0 for lk in lost_looks)
        assert 'csat_notifier_reconciled_total{provider="sendgrid",result="found"} 1.0' in metrics
        assert 'csat_notifier_reconciled_total{provider="sendgrid",result="absent_confirmed"} 1.0' in metrics

    # Each one's outcomes: unknown, then sent (the found one says it was reconciled).
    events = await read_events(infra.bootstrap, topics.outcomes, count=4, timeout_s=20)
    seen = [(e.data.notification_id, e.data.status.value, e.data.reason) for e in events]
    assert ("rc-kept", "unknown", "ambiguous") in seen and ("rc-kept", "sent", "reconciled") in seen
    assert ("rc-lost", "unknown", "ambiguous") in seen and ("rc-lost", "sent", None) in seen


async def test_without_the_activity_add_on_the_row_stays_unknown_and_says_why(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    with FakeSendGrid(activity=False) as fake:
        fake.on("kept@example.com", Step(status=0, delay_s=3.0))
        note = request("rc-noaddon", channel=Channel.EMAIL, to="kept@example.com", template="thank_you")
        async with running(create_app(_settings(infra, database_url, topics, fake))):
            await produce(infra.bootstrap, records(topics, [note]))

            async def row() -> dict[str, Any]:
                return (await deliveries(database_url)).get("rc-noaddon", {})

            stuck = await wait_for(row, until=lambda r: "add-on" in str(r.get("last_error")), timeout_s=60)
        assert stuck["status"] == "unknown" and stuck["reconciled"] is None
        assert fake.lookups and all(lk.status == 403 for lk in fake.lookups)
        assert fake.calls == 1 and len(fake.accepted) == 1  # never resent


async def test_two_replicas_share_the_looks_and_resend_once(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    """Two reconcilers (two replicas) on one unknown row: each pass only one of them looks (the claim,
    SKIP LOCKED), and "absent twice" puts the row back once: SendGrid receives it exactly once."""
    with FakeSendGrid() as fake:
        fake.on("twin@example.com", Step(status=500, delay_s=3.0))  # never received; answer too late
        note = request("rc-twin", channel=Channel.EMAIL, to="twin@example.com", template="thank_you")
        # The app's own reconciler is off: the two below are the replicas under test.
        cfg = _settings(infra, database_url, topics, fake, reconcile_unknown=False)
        engine = make_engine(database_url)
        provider = SendGridProvider(
            api_key=fake.api_key, base_url=fake.url, from_email="f@example.com", from_name="C", timeout_s=2
        )
        twins = [
            Reconciler(
                store=PgNotifierStore(engine),
                providers={Channel.EMAIL: provider},
                topics=topics,
                dispatch=DispatchConfig(),
                config=ReconcileConfig(settle_s=0.5, lookups_per_minute=600),
            )
            for _ in range(2)
        ]
        try:
            async with running(create_app(cfg)):
                await produce(infra.bootstrap, records(topics, [note]))

                async def status() -> Any:
                    return (await deliveries(database_url)).get("rc-twin", {}).get("status")

                await wait_for(status, until=lambda s: s == "unknown", timeout_s=30)
                passes: list[list[int]] = []

                async def both() -> Any:
                    looked = list(await asyncio.gather(*(t.reconcile() for t in twins)))
                    passes.append(looked)
                    return await status()

                await wait_for(both, until=lambda s: s != "unknown", timeout_s=30, every_s=0.05)
                done = await wait_for(status, until=lambda s: s == "sent", timeout_s=30)
            assert done == "sent"
            assert all(sum(p) <= 1 for p in passes), passes  # never both on the row at once
            looks = [lk for lk in fake.lookups if '"rc-twin"' in lk.query]
            assert len(looks) == sum(map(sum, passes)) >= 2
            assert len(fake.accepted_for("twin@example.com")) == 1
            assert [c.status for c in fake.requests_for("twin@example.com")] == [500, 202]
        finally:
            await provider.aclose()
            await engine.dispose()
