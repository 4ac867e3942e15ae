"""A survey invitation by SMS answered through the Twilio webhook, on the real broker and PostgreSQL.

The notifier's SMS provider registers the survey SMS with the collector (served on a loopback port) before
it sends it to a fake Twilio; the customer's reply, posted to the collector's webhook with a valid
X-Twilio-Signature, becomes the invitation's rating: its survey id is the invitation id (what actions
matches), its rating id the one the invitation's email link uses; the same reply again is one rating,
another answer within the re-click window replaces it like a second click (revision 1); a reply from
another number answers nothing. (After the window, a refusal: tests/unit/test_collector_sms_invitations.py.)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from services.collector.bootstrap import create_app
from services.collector.links import EmailLink, LinkSigner
from services.collector.settings import CollectorSettings
from services.collector.sms import compute_signature
from services.notifier.providers import Message, Verdict
from services.notifier.providers.survey_sms import RegisteringSmsProvider, SurveySmsRegistrar
from services.notifier.providers.twilio import TwilioProvider
from shared.events import Channel, RatingSubmitted
from shared.topics import Topics
from shared.vocabulary import SURVEY_TEMPLATE
from tests.fakes.twilio import FakeTwilio
from tests.helpers import events_to_end, make_settings, serving
from tests.infra import Infra

pytestmark = pytest.mark.integration

TWILIO_WEBHOOK_TOKEN = "integration-twilio-webhook-token"
PUBLIC = "https://collect.example.com"
INVITATION = "5b0c0a4e-1111-5222-8333-944455556666"
PHONE = "+33612340001"


def _message(link_url: str, *, to: str = PHONE, customer: str = "cus-sms-1") -> Message:
    """The survey SMS as the notifier composes it from actions' request."""
    return Message(
        notification_id=f"survey-invite-{INVITATION}",
        channel=Channel.SMS,
        to=to,
        subject=None,
        body="Etes-vous satisfait de votre livraison ? Repondez de 1 a 5 (5 = tres satisfait).",
        rule_id="survey:post-delivery-csat",
        customer_id=customer,
        data={
            "template": SURVEY_TEMPLATE,
            "locale": "fr",
            "customer_id": customer,
            "context": {"survey": {"invitation_id": INVITATION, "answer_url": link_url, "metric": "csat"}},
        },
    )


async def _reply(http: httpx.AsyncClient, body: str, *, sender: str = PHONE) -> str:
    params = {"MessageSid": "SM" + "7" * 32, "From": sender, "To": "+33700000000", "Body": body}
    signature = compute_signature(TWILIO_WEBHOOK_TOKEN, f"{PUBLIC}/v1/sms/twilio", list(params.items()))
    r = await http.post("/v1/sms/twilio", data=params, headers={"X-Twilio-Signature": signature})
    assert r.status_code == 200, r.text
    return r.text


async def test_an_sms_invitation_is_answered_through_the_twilio_webhook(
    infra: Infra, topics: Topics, database_url: str
) -> None:
    cfg: CollectorSettings = make_settings(
        CollectorSettings,
        kafka_bootstrap=infra.bootstrap,
        topic_prefix=topics.prefix,
        database_url=database_url,
        twilio_auth_token=TWILIO_WEBHOOK_TOKEN,
        public_url=PUBLIC,
    )
    link = EmailLink(
        survey_id=INVITATION,
        customer_id="cus-sms-1",
        metric="csat",
        scale="1-5",
        expires_at=(datetime.now(UTC) + timedelta(days=7)).replace(microsecond=0),
        locale="fr",
        segment={"store": "paris-1"},
        reclick_window_s=3600,
    )
    token = LinkSigner(secret=cfg.signing_secret.get_secret_value()).sign(link)  # as actions signs it
    async with serving(create_app(cfg)) as url:
        with FakeTwilio() as twilio:
            sms = RegisteringSmsProvider(
                TwilioProvider(
                    account_sid=twilio.account_sid,
                    auth_token=twilio.auth_token,
                    base_url=twilio.url,
                    from_number="+33700000000",
                ),
                SurveySmsRegistrar(base_url=url, token="dev-admin-key"),
            )
            try:
                first = await sms.send(_message(f"{url}/v1/email/{token}"))
                again = await sms.send(_message(f"{url}/v1/email/{token}"))  # a retry, or the reminder
                forged = await sms.send(_message(f"{url}/v1/email/{token}x", customer="cus-sms-1"))
            finally:
                await sms.aclose()
            sent = [m.payload for m in twilio.accepted]
        assert (first.verdict, again.verdict) == (Verdict.ACCEPTED, Verdict.ACCEPTED)
        assert forged.verdict is Verdict.REJECTED and "answer_link" in (forged.detail or "")
        assert [m["To"] for m in sent] == [PHONE, PHONE]  # the forged one never reached Twilio

        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            assert "no survey waiting" in await _reply(http, "5", sender="+33612340002")  # unknown: English
            assert "Merci" in await _reply(http, "4 livreur charmant")
            assert "Merci" in await _reply(http, "4 livreur charmant")  # the same answer again
            assert "mise à jour" in await _reply(http, "2")  # within the re-click window: replaces it

    # The collector answers once the broker acknowledged the record: the topic is complete now.
    events = await events_to_end(infra.bootstrap, topics.ratings)
    assert len(events) == 2, "one answer and one replacement, nothing else"
    rating: Any = events[0].data
    assert isinstance(rating, RatingSubmitted)
    assert (rating.rating_id, rating.survey_id, rating.score, rating.comment) == (
        link.rating_id,
        INVITATION,
        4,
        "livreur charmant",
    )
    replaced: Any = events[1].data
    assert (replaced.rating_id, replaced.score, replaced.revision) == (link.rating_id, 2, 1)
    assert (rating.customer.id, rating.segment, rating.source) == ("cus-sms-1", {"store": "paris-1"}, "sms")
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT invitation, survey_id, rating_id FROM collector.sms_surveys")
    finally:
        await conn.close()
    assert [(r["invitation"], r["survey_id"], r["rating_id"]) for r in rows] == [
        (True, INVITATION, link.rating_id)
    ]
