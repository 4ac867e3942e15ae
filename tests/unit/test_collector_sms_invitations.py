"""SMS replies to survey invitations (issue 15): the survey SMS is registered with the invitation's signed
answer link, a reply from that number is the invitation's rating (the rating id its email link uses), and
a second reply is handled like a second click. The pure choice first, then through the webhook."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.collector.links import EmailLink, LinkSigner
from services.collector.ports import SmsSurvey
from services.collector.settings import DEV_SIGNING_SECRET
from services.collector.sms import invitation_sms_survey, pick_sms_survey, sms_rating_id
from tests.fakes.collector_store import MemoryStore
from tests.unit.test_collector_api import ADMIN, FakePublisher, close_clients, make_client
from tests.unit.test_collector_channels import TWILIO_TOKEN, sms

__all__ = ["close_clients"]

NOW = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
INVITATION = "3f1c2a9e-0000-5000-8000-000000000001"


def _survey(
    name: str, *, answered: bool = False, invitation: bool = False, expired: bool = False
) -> SmsSurvey:
    return SmsSurvey(
        request_id=name,
        customer_id="cus_1",
        metric="csat",
        scale="1-5",
        expires_at=NOW + (timedelta(seconds=-1) if expired else timedelta(days=1)),
        survey_id=f"inv-{name}" if invitation else None,
        answered_at=NOW - timedelta(minutes=1) if answered else None,
        invitation=invitation,
    )


@pytest.mark.parametrize(
    ("newest_first", "picked"),
    [
        ([], None),
        ([_survey("a")], "a"),
        ([_survey("b"), _survey("a")], "b"),  # the newest open survey
        ([_survey("b", answered=True, invitation=True), _survey("a")], "a"),  # an unanswered one first
        ([_survey("b", answered=True, invitation=True)], "b"),  # a second reply: a second click
        ([_survey("b", answered=True)], None),  # a plain survey takes one reply
        ([_survey("b", expired=True), _survey("a", answered=True, invitation=True)], "a"),
        ([_survey("b", expired=True, invitation=True)], None),  # after the window, nothing
    ],
)
def test_which_survey_a_reply_answers(newest_first: list[SmsSurvey], picked: str | None) -> None:
    chosen = pick_sms_survey(newest_first, now=NOW)
    assert (chosen.request_id if chosen else None) == picked


def _link(**kw: Any) -> EmailLink:
    base: dict[str, Any] = {
        "survey_id": INVITATION,
        "customer_id": "cus_7",
        "metric": "csat",
        "scale": "1-5",
        "expires_at": (datetime.now(UTC) + timedelta(days=7)).replace(microsecond=0),
        "locale": "fr",
        "segment": {"store": "lyon-2"},
    }
    return EmailLink(**(base | kw))


def test_an_invitation_reply_takes_the_invitations_rating_id() -> None:
    link = _link()
    survey = invitation_sms_survey(link)
    assert sms_rating_id(survey) == link.rating_id  # the id its email link records under
    assert invitation_sms_survey(link).request_id == survey.request_id  # registering again: same row
    assert invitation_sms_survey(_link(customer_id="cus_8")).request_id != survey.request_id
    assert (survey.survey_id, survey.segment, survey.expires_at) == (
        INVITATION,
        {"store": "lyon-2"},
        link.expires_at,
    )
    plain = replace(survey, invitation=False)
    assert sms_rating_id(plain) == f"sms-{survey.request_id}"


@pytest.fixture
def fake() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def client(fake: FakePublisher, store: MemoryStore) -> TestClient:
    return make_client(fake, store, twilio_auth_token=TWILIO_TOKEN, public_url="https://collect.example.com")


def register(client: TestClient, link: EmailLink, **extra: Any) -> Any:
    token = LinkSigner(secret=DEV_SIGNING_SECRET).sign(link)  # what actions puts in the invitation
    return client.post(
        "/v1/sms-surveys",
        json={
            "phone": "+33612345678",
            "customer": {"id": link.customer_id, "locale": "fr"},
            "answer_link": f"http://127.0.0.1:8000/v1/email/{token}",
            **extra,
        },
        headers=ADMIN,
    )


def test_a_reply_answers_the_invitation_and_a_second_is_a_second_click(
    client: TestClient, fake: FakePublisher, store: MemoryStore
) -> None:
    link = _link()
    first = register(client, link)
    assert first.status_code == 201, first.text
    again = register(client, link)  # the notifier retried: nothing added
    assert again.json()["request_id"] == first.json()["request_id"] and len(store.sms) == 1
    assert "Merci" in sms(client, "4 rapide").text
    (e,) = fake.events()
    assert (e.rating_id, e.survey_id, e.score, e.comment) == (link.rating_id, INVITATION, 4, "rapide")
    assert (e.segment, e.customer.id, e.source) == ({"store": "lyon-2"}, "cus_7", "sms")
    # The same answer again replays (one rating); another one within the re-click window replaces it.
    assert "Merci" in sms(client, "4 rapide").text
    assert len(fake.records) == 1
    assert "mise à jour" in sms(client, "2").text
    _first, replaced = fake.events()
    assert (replaced.rating_id, replaced.score, replaced.revision) == (link.rating_id, 2, 1)


def test_after_the_reclick_window_a_second_reply_is_refused(client: TestClient, fake: FakePublisher) -> None:
    link = _link(reclick_window_s=0)  # the survey's reclick_window, carried by its link
    assert register(client, link).status_code == 201
    assert "Merci" in sms(client, "5").text
    assert "déjà" in sms(client, "1").text
    (e,) = fake.events()
    assert (e.rating_id, e.score) == (link.rating_id, 5)


def test_the_email_click_and_the_sms_reply_are_one_answer(client: TestClient, fake: FakePublisher) -> None:
    link = _link()
    token = LinkSigner(secret=DEV_SIGNING_SECRET).sign(link)
    assert client.post(f"/v1/email/{token}", data={"score": "5"}).status_code == 200
    assert register(client, link).status_code == 201
    assert "déjà" in sms(client, "3").text  # the invitation is answered already, by email
    (e,) = fake.events()
    assert (e.rating_id, e.score) == (link.rating_id, 5)


def test_a_bad_answer_link_is_refused_at_the_field(client: TestClient) -> None:
    link = _link()
    forged = LinkSigner(secret="another-secret-of-enough-length").sign(link)
    r = client.post(
        "/v1/sms-surveys",
        json={"phone": "+33612345678", "customer": {"id": "cus_7"}, "answer_link": forged},
        headers=ADMIN,
    )
    assert r.status_code == 422 and r.json()["field"] == "answer_link"
    other = register(client, link, customer={"id": "cus_8"})
    assert other.status_code == 422 and other.json()["field"] == "customer.id"
    survey = register(client, link, survey_id="another-invitation")
    assert survey.status_code == 422 and survey.json()["field"] == "survey_id"
    expired = register(client, _link(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    assert expired.status_code == 422 and expired.json()["field"] == "answer_link"
