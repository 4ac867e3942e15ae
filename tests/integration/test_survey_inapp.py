"""A survey invitation on the in-app channel, on the real broker and PostgreSQL (issue 15).

The notifier's in-app provider registers the invitation's signed answer link with the collector (served on
a loopback port); the site's widget, with the source's publishable key and the customer proof the site's
server signs, gets the question and answers through the link: the rating is the invitation's (its survey
id, the rating id its email link would use), a second different answer within the re-click window
replaces it (revision 1), and once answered the widget is offered nothing. Without the proof, or with
another customer's, the key alone reveals nothing; the registration survives a restart (PostgreSQL).
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
from services.notifier.providers import Message, Verdict
from services.notifier.providers.survey_inapp import InAppProvider
from services.notifier.providers.survey_sms import SurveySmsRegistrar
from shared.events import Channel, RatingSubmitted
from shared.identity.sourcekeys import sign_customer
from shared.topics import Topics
from shared.vocabulary import SURVEY_TEMPLATE
from tests.helpers import events_to_end, make_settings, serving
from tests.infra import Infra

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": "Bearer dev-admin-key"}
INVITATION = "7d0c0a4e-2222-5333-8444-955566667777"
CUSTOMER = "cus-inapp-1"
WIDGET = "/v1/widget/invitation"


def _message(link_url: str) -> Message:
    """The in-app invitation as the notifier composes it from actions' request."""
    return Message(
        notification_id=f"survey-invite-{INVITATION}",
        channel=Channel.IN_APP,
        to=CUSTOMER,
        subject=None,
        body="Êtes-vous satisfait de votre livraison ?",
        rule_id="survey:post-delivery-csat",
        customer_id=CUSTOMER,
        data={
            "template": SURVEY_TEMPLATE,
            "locale": "fr",
            "customer_id": CUSTOMER,
            "context": {"survey": {"invitation_id": INVITATION, "answer_url": link_url, "metric": "csat"}},
        },
    )


def _proven(customer: str, secret: str) -> dict[str, Any]:
    expires = int(datetime.now(UTC).timestamp()) + 3600
    proof = sign_customer(identity_secret=secret, customer_id=customer, expires_at=expires)
    return {"customer": {"id": customer, "proof": proof}}


async def test_an_in_app_invitation_is_shown_to_the_proven_customer_and_answered_through_its_link(
    infra: Infra, topics: Topics, database_url: str
) -> None:
    cfg: CollectorSettings = make_settings(
        CollectorSettings,
        kafka_bootstrap=infra.bootstrap,
        topic_prefix=topics.prefix,
        database_url=database_url,
        require_api_key=True,
    )
    link = EmailLink(
        survey_id=INVITATION,
        customer_id=CUSTOMER,
        metric="csat",
        scale="1-5",
        expires_at=(datetime.now(UTC) + timedelta(days=7)).replace(microsecond=0),
        locale="fr",
        question="Êtes-vous satisfait de votre livraison ?",
        segment={"store": "paris-1"},
        reclick_window_s=3600,
    )
    token = LinkSigner(secret=cfg.signing_secret.get_secret_value()).sign(link)  # as actions signs it
    async with serving(create_app(cfg)) as url:
        provider = InAppProvider(SurveySmsRegistrar(base_url=url, token="dev-admin-key"))
        try:
            first = await provider.send(_message(f"{url}/v1/email/{token}"))
            again = await provider.send(_message(f"{url}/v1/email/{token}"))  # a retry: nothing new
            forged = await provider.send(_message(f"{url}/v1/email/{token}x"))
        finally:
            await provider.aclose()
        assert (first.verdict, again.verdict) == (Verdict.ACCEPTED, Verdict.ACCEPTED)
        assert forged.verdict is Verdict.REJECTED and "answer_link" in (forged.detail or "")

    # A restart: the invitation is in PostgreSQL, not in the process.
    async with serving(create_app(cfg)) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        created = await http.post(
            "/v1/sources", json={"source_id": "shop-inapp", "name": "Shop"}, headers=ADMIN
        )
        assert created.status_code == 201, created.text
        key = {"Authorization": f"Bearer {created.json()['key']['key']}"}
        secret = (await http.post("/v1/sources/shop-inapp/identity-secret", json={}, headers=ADMIN)).json()[
            "identity_secret"
        ]

        # The publishable key alone, or with another customer's proof, reveals nothing.
        alone = await http.post(WIDGET, json={"customer": {"id": CUSTOMER}}, headers=key)
        other = _proven("cus-someone-else", secret)["customer"]["proof"]
        borrowed = await http.post(WIDGET, json={"customer": {"id": CUSTOMER, "proof": other}}, headers=key)
        assert (alone.status_code, borrowed.status_code) == (403, 403)
        assert INVITATION not in alone.text + borrowed.text
        assert (await http.post(WIDGET, json=_proven(CUSTOMER, secret))).status_code == 401
        assert (
            await http.post(WIDGET, json=_proven("cus-someone-else", secret), headers=key)
        ).status_code == 204

        offer = await http.post(WIDGET, json=_proven(CUSTOMER, secret), headers=key)
        assert offer.status_code == 200, offer.text
        body = offer.json()
        assert (body["survey_id"], body["metric"], body["scale"], body["locale"]) == (
            INVITATION,
            "csat",
            "1-5",
            "fr",
        )
        assert body["question"] == "Êtes-vous satisfait de votre livraison ?"
        answer = body["answer_url"].removeprefix(cfg.base_url)
        assert answer.startswith("/v1/email/")

        as_widget = {"Accept": "application/json"}
        assert (
            await http.post(answer, data={"score": "4", "comment": "rapide"}, headers=as_widget)
        ).status_code == 200
        assert (
            await http.post(answer, data={"score": "4", "comment": "rapide"}, headers=as_widget)
        ).status_code == 200
        assert (
            await http.post(answer, data={"score": "2"}, headers=as_widget)
        ).status_code == 200  # re-click
        # Answered: the next visit shows nothing.
        assert (await http.post(WIDGET, json=_proven(CUSTOMER, secret), headers=key)).status_code == 204

    # The collector answers once the broker acknowledged the record: the topic is complete now.
    events = await events_to_end(infra.bootstrap, topics.ratings)
    assert len(events) == 2, "one answer and one replacement, nothing else"
    rating: Any = events[0].data
    assert isinstance(rating, RatingSubmitted)
    assert (rating.rating_id, rating.survey_id, rating.score, rating.comment) == (
        link.rating_id,
        INVITATION,
        4,
        "rapide",
    )
    assert (rating.customer.id, rating.segment) == (CUSTOMER, {"store": "paris-1"})
    replaced: Any = events[1].data
    assert (replaced.rating_id, replaced.score, replaced.revision) == (link.rating_id, 2, 1)
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT survey_id, customer_id FROM collector.inapp_surveys")
    finally:
        await conn.close()
    assert [(r["survey_id"], r["customer_id"]) for r in rows] == [(INVITATION, CUSTOMER)]
