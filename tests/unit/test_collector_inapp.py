"""In-app survey invitations (issue 15): registered with the invitation's signed answer link, offered to
the web widget of a proven customer only (a publishable key is public: anyone can type a customer id
beside it), answered through the link, so the email link's one-answer and re-click rules apply. The pure
parts first, then through the collector's routes on the in-memory store."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.collector.inapp import invitation_inapp_survey, offerable, proof_refusal, widget_offer
from services.collector.links import EmailLink, LinkSigner
from services.collector.settings import DEV_SIGNING_SECRET
from shared.envelope import decode
from shared.events import KeyKind
from shared.identity.sourcekeys import sign_customer
from tests.fakes.collector_store import MemoryStore
from tests.unit.test_collector_api import ADMIN, FakePublisher, close_clients, make_client

__all__ = ["close_clients"]

NOW = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
INVITATION = "3f1c2a9e-0000-5000-8000-000000000002"
SECRET = "identity-secret-of-the-shop"
WIDGET = "/v1/widget/invitation"


def _link(**kw: Any) -> EmailLink:
    base: dict[str, Any] = {
        "survey_id": INVITATION,
        "customer_id": "cus_7",
        "metric": "csat",
        "scale": "1-5",
        "expires_at": (datetime.now(UTC) + timedelta(days=7)).replace(microsecond=0),
        "locale": "fr",
        "question": "Êtes-vous satisfait de votre livraison ?",
        "segment": {"store": "lyon-2"},
    }
    return EmailLink(**(base | kw))


def test_an_invitation_is_kept_once_with_its_link_and_window() -> None:
    link = _link()
    survey = invitation_inapp_survey(link, "tok")
    assert invitation_inapp_survey(link, "tok-again").request_id == survey.request_id  # a retry: same row
    assert invitation_inapp_survey(_link(customer_id="cus_8"), "t").request_id != survey.request_id
    assert invitation_inapp_survey(_link(survey_id="other"), "t").request_id != survey.request_id
    assert (survey.survey_id, survey.customer_id, survey.expires_at, survey.token, survey.locale) == (
        INVITATION,
        "cus_7",
        link.expires_at,
        "tok",
        "fr",
    )
    assert invitation_inapp_survey(_link(locale=None), "t", locale="en").locale == "en"


def test_only_the_customers_own_open_invitation_is_offerable() -> None:
    survey = replace(invitation_inapp_survey(_link(), "t"), expires_at=NOW + timedelta(seconds=1))
    assert offerable(survey, customer_id="cus_7", now=NOW)
    assert not offerable(survey, customer_id="cus_8", now=NOW)
    assert not offerable(survey, customer_id="cus_7", now=NOW + timedelta(seconds=1))


def test_the_offer_carries_what_the_widget_asks_and_where_it_answers() -> None:
    link = _link()
    offer = widget_offer(link, answer_url="https://c.example/v1/email/t", language="fr")
    assert offer == {
        "survey_id": INVITATION,
        "metric": "csat",
        "scale": "1-5",
        "question": "Êtes-vous satisfait de votre livraison ?",
        "locale": "fr",
        "expires_at": link.expires_at.isoformat(),
        "answer_url": "https://c.example/v1/email/t",
    }


def _proof(customer: str = "cus_7", *, secret: str = SECRET, expires_in: int = 3600) -> str:
    return sign_customer(
        identity_secret=secret, customer_id=customer, expires_at=int(NOW.timestamp()) + expires_in
    )


@pytest.mark.parametrize(
    ("kind", "proof", "refused"),
    [
        (KeyKind.PUBLISHABLE, _proof(), None),
        (KeyKind.PUBLISHABLE, None, "is required"),  # a public key alone reveals nobody's invitation
        (KeyKind.PUBLISHABLE, _proof("cus_8"), "does not match"),  # another customer's proof
        (KeyKind.PUBLISHABLE, _proof(secret="another-source"), "does not match"),
        (KeyKind.PUBLISHABLE, _proof(expires_in=-1), "expired"),
        (KeyKind.PUBLISHABLE, _proof(expires_in=30 * 86_400), "more than 7 days"),
        (KeyKind.PUBLISHABLE, "v1.garbage", "not a proof"),
        (KeyKind.NONE, None, "is required"),  # anonymous (dev) is no better than a public key
        (KeyKind.SECRET, None, None),  # a site's server states its customer as a fact
        (KeyKind.TOKEN, None, None),
    ],
)
def test_who_may_read_a_customers_invitation(kind: KeyKind, proof: str | None, refused: str | None) -> None:
    why = proof_refusal(key_kind=kind, identity_secrets=[SECRET], customer_id="cus_7", proof=proof, now=NOW)
    if refused is None:
        assert why is None
    else:
        assert why is not None and refused in why


# ---- through the routes ----------------------------------------------------------------------------


@pytest.fixture
def fake() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def client(fake: FakePublisher, store: MemoryStore) -> TestClient:
    return make_client(fake, store, require_api_key=True, public_url="https://collect.example.com")


def register(client: TestClient, link: EmailLink, **extra: Any) -> Any:
    token = LinkSigner(secret=DEV_SIGNING_SECRET).sign(link)  # what actions puts in the invitation
    return client.post(
        "/v1/inapp-surveys",
        json={
            "customer": {"id": link.customer_id, "locale": "fr"},
            "answer_link": f"https://collect.example.com/v1/email/{token}",
            **extra,
        },
        headers=ADMIN,
    )


def shop(client: TestClient) -> tuple[dict[str, str], str]:
    """A source with a publishable key and its identity secret (what the site's server signs with)."""
    r = client.post("/v1/sources", json={"source_id": "shop", "name": "Shop"}, headers=ADMIN)
    assert r.status_code == 201, r.text
    key = r.json()["key"]["key"]
    assert key.startswith("pk_")
    secret = client.post("/v1/sources/shop/identity-secret", json={}, headers=ADMIN).json()["identity_secret"]
    return {"Authorization": f"Bearer {key}"}, secret


def proven(customer: str, secret: str) -> dict[str, Any]:
    expires = int(datetime.now(UTC).timestamp()) + 3600
    return {
        "customer": {
            "id": customer,
            "proof": sign_customer(identity_secret=secret, customer_id=customer, expires_at=expires),
        }
    }


def test_the_proven_customers_widget_gets_the_invitation_and_answers_it_once(
    client: TestClient, fake: FakePublisher, store: MemoryStore
) -> None:
    key, secret = shop(client)
    link = _link()
    r = register(client, link, survey_id=INVITATION)
    assert r.status_code == 201, r.text
    assert register(client, link).json()["request_id"] == r.json()["request_id"]  # again: nothing new
    assert len(store.inapp) == 1

    offer = client.post(WIDGET, json=proven("cus_7", secret), headers=key)
    assert offer.status_code == 200, offer.text
    body = offer.json()
    assert (body["survey_id"], body["scale"], body["locale"]) == (INVITATION, "1-5", "fr")
    assert body["question"] == "Êtes-vous satisfait de votre livraison ?"
    assert body["answer_url"].startswith("https://collect.example.com/v1/email/")
    assert offer.headers["cache-control"] == "no-store"

    # The widget answers through the link: the invitation's rating id, as its email would.
    path = body["answer_url"].removeprefix("https://collect.example.com")
    answered = client.post(path, data={"score": "4"}, headers={"Accept": "application/json"})
    assert answered.status_code == 200, answered.text
    (record,) = fake.records
    rating = decode(headers=record.headers, key=record.key, value=record.value).data.model_dump()
    assert (rating["rating_id"], rating["survey_id"], rating["score"]) == (link.rating_id, INVITATION, 4)
    assert link.rating_id in store.idem

    # Answered: the next visit shows nothing.
    assert client.post(WIDGET, json=proven("cus_7", secret), headers=key).status_code == 204


def test_a_public_key_alone_never_reveals_an_invitation(client: TestClient) -> None:
    key, secret = shop(client)
    assert register(client, _link()).status_code == 201
    cases = [
        ({"customer": {"id": "cus_7"}}, key),  # no proof: anyone could type the id
        ({"customer": {"id": "cus_7", "proof": proven("cus_8", secret)["customer"]["proof"]}}, key),
        (proven("cus_7", "not-the-shops-secret"), key),
    ]
    for body, headers in cases:
        r = client.post(WIDGET, json=body, headers=headers)
        assert r.status_code == 403, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["errors"][0]["field"] == "customer.proof"
        assert "survey_id" not in r.text
    assert client.post(WIDGET, json=proven("cus_7", secret)).status_code == 401  # no key at all
    # Proven, but another customer: nothing waits for them.
    assert client.post(WIDGET, json=proven("cus_8", secret), headers=key).status_code == 204


def test_bad_registrations_name_the_field(client: TestClient) -> None:
    link = _link()
    token = LinkSigner(secret=DEV_SIGNING_SECRET).sign(link)
    forged = LinkSigner(secret="x" * 40).sign(link)
    cases = [
        ({"customer": {"id": "cus_7"}, "answer_link": forged}, "answer_link"),
        ({"customer": {"id": "cus_8"}, "answer_link": token}, "customer.id"),
        ({"customer": {"id": "cus_7"}, "answer_link": token, "survey_id": "other"}, "survey_id"),
        ({"customer": {"id": "cus_7"}}, "answer_link"),
    ]
    for body, field in cases:
        r = client.post("/v1/inapp-surveys", json=body, headers=ADMIN)
        assert r.status_code == 422, r.text
        assert field in [e["field"] for e in r.json()["errors"]], r.json()
    assert client.post("/v1/inapp-surveys", json=cases[0][0]).status_code == 401


def test_the_database_away_is_a_503_not_a_silent_nothing(client: TestClient, store: MemoryStore) -> None:
    key, secret = shop(client)
    assert client.post(WIDGET, json=proven("cus_7", secret), headers=key).status_code == 204  # key cached
    store.down = True
    r = client.post(WIDGET, json=proven("cus_7", secret), headers=key)
    assert r.status_code == 503 and "retry-after" in r.headers
