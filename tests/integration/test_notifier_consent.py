"""Opt-out honoured everywhere: one-click unsubscribe (RFC 8058), Twilio STOP (21610), Postmark 406."""

from __future__ import annotations

import re
from typing import Any

import pytest

from services.notifier.bootstrap import create_app
from services.notifier.transitions import DispatchConfig
from shared.events import Channel
from shared.topics import Topics
from tests.fakes.postmark import FakePostmark
from tests.fakes.twilio import FakeTwilio
from tests.helpers import produce, running, wait_for
from tests.infra import Infra
from tests.integration.notifier_support import FINAL, deliveries, notifier_settings, query, records, request

pytestmark = pytest.mark.integration

#: The dev and test stacks' address keys (no CSAT_ADDRESS_HASH_KEY set).
KEYS = DispatchConfig().address_keys

ADMIN = {"Authorization": "Bearer dev-admin-key"}


async def _settle(database_url: str, ids: set[str]) -> dict[str, dict[str, Any]]:
    async def probe() -> dict[str, dict[str, Any]]:
        return await deliveries(database_url)

    return await wait_for(
        probe, until=lambda r: ids <= set(r) and all(r[i]["status"] in FINAL for i in ids), timeout_s=30
    )


async def test_one_click_unsubscribe_stops_customer_messages_on_every_channel(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    cfg = notifier_settings(infra, database_url, topics, public_base_url="https://notify.example.com",
                            unsubscribe_mailto="unsubscribe@example.com")  # fmt: skip
    async with running(create_app(cfg)) as client:
        await produce(
            infra.bootstrap,
            records(topics, [request("m-1", channel=Channel.EMAIL, to="Ana@Example.com", template="thank_you",
                                     customer="cus-u", locale="fr")]),
        )  # fmt: skip
        await _settle(database_url, {"m-1"})
        message = (await client.get("/v1/outbox", headers=ADMIN)).json()["messages"][0]
        headers = message["headers"]
        assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        match = re.fullmatch(
            r"<https://notify\.example\.com/u/([A-Za-z0-9_.-]+)>, "
            r"<mailto:unsubscribe@example\.com\?subject=unsubscribe%20\1>",
            headers["List-Unsubscribe"],
        )
        assert match, headers["List-Unsubscribe"]
        token = match.group(1)
        assert f"https://notify.example.com/u/{token}" in message["body"]  # the visible link too
        assert "Ana@Example.com".lower() not in token.lower()  # the token carries a hash, not the address

        # A mail scanner fetching the link changes nothing.
        page = await client.get(f"/u/{token}")
        assert page.status_code == 200 and 'method="post"' in page.text and 'lang="fr"' in page.text
        assert page.headers["cache-control"] == "no-store"
        assert await query(database_url, "SELECT * FROM notifier.suppressions") == []

        tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
        assert (await client.post(f"/u/{tampered}")).status_code == 400

        # RFC 8058: the mail client POSTs List-Unsubscribe=One-Click, no cookies.
        done = await client.post(
            f"/u/{token}",
            content=b"List-Unsubscribe=One-Click",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert done.status_code == 200 and "désabonné" in done.text
        again = await client.post(f"/u/{token}", content=b"List-Unsubscribe=One-Click")
        assert again.status_code == 200  # idempotent
        rows = await query(
            database_url, "SELECT scope, key, reason FROM notifier.suppressions ORDER BY scope"
        )
        assert rows == [
            {"scope": "customer", "key": "cus-u", "reason": "unsubscribed"},
            {"scope": "email", "key": KEYS.key("email", "ana@example.com"), "reason": "unsubscribed"},
        ]

        await produce(
            infra.bootstrap,
            records(
                topics,
                [
                    # Same customer, another rule, by email and by SMS: both stopped.
                    request("m-2", channel=Channel.EMAIL, to="ana@example.com", template="review_invite",
                            customer="cus-u", rule="review"),
                    request("s-1", channel=Channel.SMS, to="+33612345678", template="thank_you",
                            customer="cus-u", rule="sms-thanks"),
                    # Same address under another customer id (a shared or merged record): stopped too.
                    request("m-3", channel=Channel.EMAIL, to="ANA@example.com", template="thank_you",
                            customer="cus-other", rule="other"),
                    # The CSM alert about this customer is internal: it still goes.
                    request("csm-1", channel=Channel.EMAIL, to="csm@example.com", template="csm_alert",
                            customer="cus-u", transactional=True, rule="low-score-csm-alert"),
                ],
            ),
        )  # fmt: skip
        rows_by_id = await _settle(database_url, {"m-2", "s-1", "m-3", "csm-1"})
        for nid in ("m-2", "s-1", "m-3"):
            assert rows_by_id[nid]["status"] == "suppressed" and rows_by_id[nid]["reason"] == "opted_out"
        assert rows_by_id["csm-1"]["status"] == "sent"
        sent = [
            m["notification_id"] for m in (await client.get("/v1/outbox", headers=ADMIN)).json()["messages"]
        ]
        assert sorted(sent) == ["csm-1", "m-1"]

        # An administrator can see and lift the suppression (the customer opted back in).
        listed = (await client.get("/v1/suppressions", params={"customer_id": "cus-u"}, headers=ADMIN)).json()
        assert [s["scope"] for s in listed["suppressions"]] == ["customer"]
        assert (await client.get("/v1/suppressions")).status_code == 401
        lifted = await client.delete(
            "/v1/suppressions", params={"customer_id": "cus-u", "email": "ana@example.com"}, headers=ADMIN
        )
        assert lifted.json() == {"removed": 2}
        listed = (await client.get("/v1/deliveries", params={"status": "suppressed"}, headers=ADMIN)).json()
        assert sorted(d["notification_id"] for d in listed["deliveries"]) == ["m-2", "m-3", "s-1"]
        assert listed["counts"] == {"sent": 2, "suppressed": 3}
        assert "request" not in listed["deliveries"][0]  # contact details stay in the table

        # An administrator records an opt-out received elsewhere (a phone call): that number gets nothing.
        added = await client.post("/v1/suppressions", json={"phone": "+33 6 00 00 00 01"}, headers=ADMIN)
        assert added.status_code == 201 and added.json() == {"added": 1}
        assert (await client.post("/v1/suppressions", json={}, headers=ADMIN)).status_code == 422
        await produce(
            infra.bootstrap,
            records(topics, [request("s-2", channel=Channel.SMS, to="+33600000001", template="thank_you",
                                     customer="cus-v")]),
        )  # fmt: skip
        assert (await _settle(database_url, {"s-2"}))["s-2"]["status"] == "suppressed"


async def test_provider_opt_outs_feed_the_suppression_list(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    with FakeTwilio() as twilio, FakePostmark() as postmark:
        twilio.stopped.add("+15550107777")  # this person replied STOP
        postmark.inactive.add("bounced@example.com")  # hard bounce at Postmark
        cfg = notifier_settings(
            infra, database_url, topics,
            sms_provider="twilio", twilio_account_sid=twilio.account_sid, twilio_auth_token=twilio.auth_token,
            twilio_messaging_service_sid="MG" + "1" * 32, twilio_base_url=twilio.url,
            email_provider="postmark", postmark_server_token=postmark.token, postmark_base_url=postmark.url,
        )  # fmt: skip
        async with running(create_app(cfg)):
            await produce(
                infra.bootstrap,
                records(topics, [
                    request("stop-1", channel=Channel.SMS, to="+1 555 010 7777", template="thank_you",
                            customer="cus-stop"),
                    request("bounce-1", channel=Channel.EMAIL, to="bounced@example.com", template="thank_you",
                            customer="cus-bounce"),
                ]),
            )  # fmt: skip
            first = await _settle(database_url, {"stop-1", "bounce-1"})
            assert (
                first["stop-1"]["status"] == "suppressed" and first["stop-1"]["reason"] == "provider_opt_out"
            )
            assert "21610" in first["stop-1"]["last_error"]
            assert first["bounce-1"]["status"] == "suppressed"
            assert "406" in first["bounce-1"]["last_error"]
            assert len(twilio.requests) == 1 and len(postmark.requests) == 1
            assert twilio.requests[0].status == 400 and postmark.requests[0].status == 422

            await produce(
                infra.bootstrap,
                records(topics, [
                    # STOP: that number, and that customer on other channels, get nothing more.
                    request("stop-2", channel=Channel.SMS, to="+15550107777", template="review_invite",
                            customer="cus-stop", rule="review"),
                    request("stop-3", channel=Channel.EMAIL, to="stop@example.com", template="thank_you",
                            customer="cus-stop", rule="other"),
                    # Postmark 406 is about the address (a bounce), not the person's consent.
                    request("bounce-2", channel=Channel.EMAIL, to="bounced@example.com",
                            template="review_invite", customer="cus-bounce", rule="review"),
                    request("bounce-sms", channel=Channel.SMS, to="+15550108888", template="thank_you",
                            customer="cus-bounce", rule="sms"),
                ]),
            )  # fmt: skip
            rows = await _settle(database_url, {"stop-2", "stop-3", "bounce-2", "bounce-sms"})
            assert rows["stop-2"]["status"] == "suppressed" and rows["stop-2"]["reason"] == "opted_out"
            assert rows["stop-3"]["status"] == "suppressed" and rows["stop-3"]["reason"] == "opted_out"
            assert rows["bounce-2"]["status"] == "suppressed" and rows["bounce-2"]["reason"] == "opted_out"
            assert rows["bounce-sms"]["status"] == "sent"
            # Our list answered: the providers were not asked again for those recipients.
            assert [c.key for c in twilio.requests] == ["+15550107777", "+15550108888"]
            assert [c.key for c in postmark.requests] == ["bounced@example.com"]
            assert twilio.accepted[0].payload["MessagingServiceSid"] == "MG" + "1" * 32
        entries = await query(
            database_url, "SELECT scope, source, reason FROM notifier.suppressions ORDER BY scope"
        )
        assert entries == [
            {"scope": "customer", "source": "twilio", "reason": "provider_opt_out"},
            {"scope": "email", "source": "postmark", "reason": "provider_opt_out"},
            {"scope": "sms", "source": "twilio", "reason": "provider_opt_out"},
        ]
