"""Email links, SMS replies and the widget through the collector API (fake publisher, in-memory store)."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from services.collector.links import EmailLink, LinkSigner
from services.collector.settings import DEV_SIGNING_SECRET
from services.collector.sms import compute_signature
from tests.fakes.collector_store import MemoryStore
from tests.unit.test_collector_api import ADMIN, FakePublisher, close_clients, make_client

TWILIO_TOKEN = "twilio-test-token"
__all__ = ["close_clients"]  # the autouse fixture that closes the clients, active here too


@pytest.fixture
def fake() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def client(fake: FakePublisher, store: MemoryStore) -> TestClient:
    return make_client(fake, store, twilio_auth_token=TWILIO_TOKEN, public_url="https://collect.example.com")


def mint(client: TestClient, **extra: Any) -> dict[str, Any]:
    body = {
        "survey_id": "order-5512",
        "customer": {"id": "cus_1042", "email": "ana@example.com", "locale": "fr"},
        "metric": "csat",
        "scale": "1-5",
        "question": "Votre livraison ?",
        "segment": {"store": "paris-1"},
        **extra,
    }
    r = client.post("/v1/email-links", json=body, headers=ADMIN)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def local(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def test_minted_links_carry_the_score_and_no_personal_data(client: TestClient) -> None:
    out = mint(client)
    assert [x["score"] for x in out["links"]] == [1, 2, 3, 4, 5]
    assert out["links"][3]["url"].startswith("https://collect.example.com/v1/email/")
    assert out["links"][3]["url"].endswith("?score=4")
    assert out["rating_id"].startswith("email-")
    token = urlsplit(out["confirm_url"]).path.rsplit("/", 1)[-1]
    claims = LinkSigner(secret=DEV_SIGNING_SECRET).verify(token, now=datetime.now(UTC))
    assert claims.customer_id == "cus_1042" and claims.survey_id == "order-5512"
    assert "ana@example.com" not in str(claims)


def test_get_shows_a_confirm_page_and_records_nothing(client: TestClient, fake: FakePublisher) -> None:
    out = mint(client)
    page = client.get(local(out["links"][1]["url"]))
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert 'value="2" checked' in page.text
    assert 'name="comment"' in page.text and 'method="post"' in page.text
    assert "Votre livraison ?" in page.text
    client.get(local(out["links"][1]["url"]))  # a mail scanner opening it again
    assert fake.records == []


def test_post_records_once_and_a_reclick_replaces_the_answer(client: TestClient, fake: FakePublisher) -> None:
    out = mint(client)
    path = local(out["confirm_url"])
    done = client.post(path, data={"score": "2", "comment": "  Livré en retard  "})
    assert done.status_code == 200 and "enregistrée" in done.text
    again = client.post(path, data={"score": "2", "comment": "Livré en retard"})
    assert again.status_code == 200  # a double submit is the same answer: nothing published again
    assert len(fake.records) == 1
    other = client.post(path, data={"score": "5"})  # within the window (default 15 min): replaces it
    assert other.status_code == 200 and "modifiée" in other.text
    assert client.post(path, data={"score": "5"}).status_code == 200  # the standing answer replays
    assert client.post(path, data={"score": "3"}).status_code == 200  # a third change
    events = fake.events()
    assert [(e.rating_id, e.score, e.revision) for e in events] == [
        (out["rating_id"], 2, 0),
        (out["rating_id"], 5, 1),
        (out["rating_id"], 3, 2),
    ]
    ce_ids = [dict(r.headers)["ce_id"].decode() for r in fake.records]
    assert ce_ids == [out["rating_id"], f"{out['rating_id']}/r1", f"{out['rating_id']}/r2"]
    e = events[0]
    assert (e.rating_id, e.score, e.sentiment.value, e.source) == (out["rating_id"], 2, "negative", "email")
    assert e.comment == "Livré en retard" and e.survey_id == "order-5512"
    assert e.segment == {"store": "paris-1"} and e.touchpoint == "email"
    assert e.customer.id == "cus_1042" and e.customer.email is None
    assert events[1].comment is None and events[1].sentiment.value == "positive"


def test_a_different_answer_after_the_window_is_refused_in_the_link_language(
    client: TestClient, fake: FakePublisher, store: MemoryStore
) -> None:
    out = mint(client)
    path = local(out["confirm_url"])
    assert client.post(path, data={"score": "4"}).status_code == 200
    assert client.post(path, data={"score": "2"}).status_code == 200  # revision 1, within the window
    row = store.idem[out["rating_id"]]
    assert row.first_accepted_at is not None and row.revision == 1
    # The window runs from the FIRST answer: 15 minutes after it, the standing answer (2) stays.
    row.first_accepted_at -= timedelta(minutes=15, seconds=1)
    page = client.post(path, data={"score": "5"})
    assert page.status_code == 409 and "Déjà répondu" in page.text
    api = client.post(path, data={"score": "5"}, headers={"Accept": "application/problem+json"})
    assert api.status_code == 409 and api.headers["content-type"].startswith("application/problem+json")
    assert api.headers["content-language"] == "fr"
    body = api.json()
    assert body["type"] == "https://csat.dev/problems/already-answered" and body["title"] == "Déjà répondu"
    assert body["errors"][0]["field"] == "score"
    assert client.post(path, data={"score": "2"}).status_code == 200  # the standing answer still replays
    assert [(e.score, e.revision) for e in fake.events()] == [(4, 0), (2, 1)]


def signed_path(window_s: int | None, *, locale: str = "en") -> str:
    link = EmailLink(
        survey_id="inv-1",
        customer_id="cus_9",
        metric="csat",
        scale="1-5",
        expires_at=datetime.now(UTC) + timedelta(days=1),
        locale=locale,
        reclick_window_s=window_s,
    )
    return "/v1/email/" + LinkSigner(secret=DEV_SIGNING_SECRET).sign(link)


def test_the_window_travels_with_the_link(
    client: TestClient, fake: FakePublisher, store: MemoryStore
) -> None:
    closed = signed_path(0)  # a survey with reclick_window: 0: the first answer stands
    assert client.post(closed, data={"score": "4"}).status_code == 200
    refused = client.post(closed, data={"score": "1"})
    assert refused.status_code == 409 and "Already answered" in refused.text
    assert len(fake.records) == 1
    store.idem.clear()
    # A link's own window wins over the collector's default (15 min here): 30 s, then closed.
    short = signed_path(30)
    assert client.post(short, data={"score": "4"}).status_code == 200
    assert client.post(short, data={"score": "1"}).status_code == 200
    (row,) = store.idem.values()
    assert row.first_accepted_at is not None
    row.first_accepted_at -= timedelta(seconds=31)
    assert client.post(short, data={"score": "3"}).status_code == 409
    assert [e.score for e in fake.events()] == [4, 4, 1]


def test_a_replacement_lost_to_a_broker_outage_is_published_by_the_retry(
    client: TestClient, fake: FakePublisher, store: MemoryStore
) -> None:
    out = mint(client)
    path = local(out["confirm_url"])
    assert client.post(path, data={"score": "4"}).status_code == 200
    fake.down = True
    assert client.post(path, data={"score": "1"}).status_code == 503
    fake.down = False
    row = store.idem[out["rating_id"]]
    # The revision stays claimed (giving it back would forget the first answer) until its lease ends.
    assert (row.state, row.revision) == ("pending", 1)
    row.claimed_at -= timedelta(minutes=5)
    assert client.post(path, data={"score": "1"}).status_code == 200
    assert [(e.score, e.revision) for e in fake.events()] == [(4, 0), (1, 1)]
    assert client.post(path, data={"score": "1"}).status_code == 200  # replays
    assert len(fake.records) == 2


def test_post_without_a_valid_score_shows_the_form_again(client: TestClient, fake: FakePublisher) -> None:
    path = local(mint(client)["confirm_url"])
    assert client.post(path, data={"comment": "hi"}).status_code == 422
    r = client.post(path, data={"score": "9", "comment": "hi"})
    assert r.status_code == 422 and 'name="score"' in r.text and ">hi</textarea>" in r.text
    assert fake.records == []


def tamper(token: str) -> str:
    body, _, sig = token.rpartition(".")
    flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
    return f"{body}.{flipped}"


def test_tampered_and_expired_tokens_are_refused(client: TestClient, fake: FakePublisher) -> None:
    token = urlsplit(mint(client)["confirm_url"]).path.rsplit("/", 1)[-1]
    bad = client.get(f"/v1/email/{tamper(token)}?score=5")
    assert bad.status_code == 403 and "not valid" in bad.text
    assert client.post(f"/v1/email/{tamper(token)}", data={"score": "5"}).status_code == 403
    # the claims of another customer with the old signature
    forged = LinkSigner(secret="another-secret-of-enough-length").sign(
        EmailLink("order-5512", "cus_other", "csat", "1-5", datetime.now(UTC) + timedelta(days=1))
    )
    assert client.post(f"/v1/email/{forged}", data={"score": "5"}).status_code == 403
    expired = LinkSigner(secret=DEV_SIGNING_SECRET).sign(
        EmailLink("s", "c", "csat", "1-5", datetime.now(UTC) - timedelta(seconds=1))
    )
    gone = client.post(f"/v1/email/{expired}", data={"score": "5"})
    assert gone.status_code == 410 and "expired" in gone.text
    as_json = client.get(f"/v1/email/{expired}", headers={"Accept": "application/json"})
    assert as_json.status_code == 410 and as_json.json()["field"] == "token"
    assert fake.records == []
    text = client.get("/metrics").text
    assert 'csat_ratings_rejected_total{reason="link_invalid",source="email"} 3.0' in text
    assert 'csat_ratings_rejected_total{reason="link_expired",source="email"} 2.0' in text


def test_broker_down_on_confirm_is_a_503_page_and_the_retry_works(
    client: TestClient, fake: FakePublisher
) -> None:
    path = local(mint(client)["confirm_url"])
    fake.down = True
    r = client.post(path, data={"score": "4"})
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    fake.down = False
    assert client.post(path, data={"score": "4"}).status_code == 200
    assert len(fake.records) == 1


# ---- SMS ----------------------------------------------------------------------------------------

WEBHOOK = "https://collect.example.com/v1/sms/twilio"


def sms(client: TestClient, body: str, phone: str = "+33612345678", *, sign: bool = True) -> Any:
    params = {
        "MessageSid": "SM" + "0" * 32,
        "AccountSid": "AC" + "1" * 32,
        "From": phone,
        "To": "+33700000000",
        "Body": body,
        "NumMedia": "0",
    }
    headers = {}
    if sign:
        headers["X-Twilio-Signature"] = compute_signature(TWILIO_TOKEN, WEBHOOK, list(params.items()))
    return client.post("/v1/sms/twilio", data=params, headers=headers)


def survey(client: TestClient, phone: str = "+33 6 12 34 56 78", **extra: Any) -> dict[str, Any]:
    r = client.post(
        "/v1/sms-surveys",
        json={
            "phone": phone,
            "customer": {"id": "cus_7", "locale": "en"},
            "survey_id": "visit-1",
            "segment": {"store": "lyon-2"},
            "account": {"tier": "gold"},
            **extra,
        },
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def test_an_sms_reply_becomes_a_rating(client: TestClient, fake: FakePublisher, store: MemoryStore) -> None:
    created = survey(client)
    assert "+33" not in str(store.sms)  # only the keyed hash of the number is kept
    r = sms(client, "4 great service")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/xml")
    assert "<Message>Thank you for your answer!</Message>" in r.text
    (e,) = fake.events()
    assert (e.score, e.comment, e.source, e.touchpoint) == (4, "great service", "sms", "sms")
    assert e.rating_id == f"sms-{created['request_id']}"
    assert e.customer.id == "cus_7" and e.customer.phone is None
    assert e.account is not None and e.account.tier == "gold"
    again = sms(client, "5")
    assert "no survey waiting" in again.text
    assert len(fake.records) == 1


@pytest.mark.parametrize(
    ("body", "score", "comment"),
    [
        ("4", 4, None),
        (" 2/5 slow ", 2, "slow"),
        ("5. Perfect!", 5, "Perfect!"),
        ("1\nnever again", 1, "never again"),
    ],
)
def test_reply_forms(
    client: TestClient, fake: FakePublisher, body: str, score: int, comment: str | None
) -> None:
    survey(client)
    assert "Thank you" in sms(client, body).text
    (e,) = fake.events()
    assert (e.score, e.comment) == (score, comment)


def test_unreadable_and_keyword_replies_record_nothing(client: TestClient, fake: FakePublisher) -> None:
    survey(client)
    assert "number from 1 to 5" in sms(client, "great").text
    assert "number from 1 to 5" in sms(client, "9").text
    assert sms(client, "STOP").text.endswith("<Response/>")
    assert fake.records == []
    assert "Thank you" in sms(client, "3").text  # the survey is still open


def test_sms_signature_is_required(client: TestClient, fake: FakePublisher) -> None:
    survey(client)
    assert sms(client, "4", sign=False).status_code == 403
    params = {"From": "+33612345678", "Body": "4"}
    forged = compute_signature(TWILIO_TOKEN, WEBHOOK, [("From", "+33612345678"), ("Body", "1")])
    r = client.post("/v1/sms/twilio", data=params, headers={"X-Twilio-Signature": forged})
    assert r.status_code == 403 and r.json()["field"] == "X-Twilio-Signature"
    assert fake.records == []


def test_sms_webhook_is_off_without_a_twilio_token(fake: FakePublisher, store: MemoryStore) -> None:
    client = make_client(fake, store)
    assert client.post("/v1/sms/twilio", data={"Body": "4"}).status_code == 404


def test_unknown_sender_and_expired_survey_get_a_polite_answer(
    client: TestClient, fake: FakePublisher
) -> None:
    survey(client, expires_at=(datetime.now(UTC) - timedelta(minutes=1)).isoformat())
    assert "no survey waiting" in sms(client, "4").text
    assert "no survey waiting" in sms(client, "4", phone="+14155550100").text
    assert fake.records == []


def test_sms_survey_validation(client: TestClient) -> None:
    r = client.post("/v1/sms-surveys", json={"phone": "0612", "customer": {"id": "c"}}, headers=ADMIN)
    assert r.status_code == 422 and r.json()["field"] == "phone"
    r = client.post(
        "/v1/sms-surveys",
        json={"phone": "+33612345678", "customer": {"id": "c"}, "scale": "1-99"},
        headers=ADMIN,
    )
    assert r.status_code == 422 and r.json()["field"] == "scale"


# ---- widget and logs --------------------------------------------------------------------------


def test_widget_script_and_demo_page(fake: FakePublisher, store: MemoryStore) -> None:
    client = make_client(fake, store)
    js = client.get("/widget.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("application/javascript")
    assert 'customElements.define("csat-rating"' in js.text
    assert client.get("/demo").status_code == 404  # off without a demo key
    demo = make_client(fake, store, demo_widget_key="csk_0123456789_demo").get("/demo")
    assert demo.status_code == 200 and 'key="csk_0123456789_demo"' in demo.text


def test_no_personal_data_or_token_in_any_log_line(
    client: TestClient, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    out = mint(client)
    token = urlsplit(out["confirm_url"]).path.rsplit("/", 1)[-1]
    client.get(local(out["links"][0]["url"]))
    client.post(f"/v1/email/{tamper(token)}", data={"score": "1"})
    client.post(local(out["confirm_url"]), data={"score": "1", "comment": "call me on +33 6 99 88 77 66"})
    survey(client, phone="+33611223344")
    sms(client, "2 bad", phone="+33611223344")
    sms(client, "2 bad", phone="+33611223344", sign=False)
    client.post(
        "/v1/ratings",
        json={"metric": "csat", "score": 2, "customer": {"id": "c", "email": "zoe@example.org"}},
    )
    client.post(
        "/v1/ratings",
        json={"metric": "csat", "score": 2},
        headers={"X-API-Key": "csk_0123456789_secretsecret"},
    )
    logged = capsys.readouterr().err + "\n".join(r.getMessage() for r in caplog.records)
    assert logged.strip(), "expected some log lines to check"
    for secret in (token, token[:20], "+33611223344", "611223344", "zoe@example.org", "secretsecret"):
        assert secret not in logged
    # A phone-like run of ten or more digits, but not inside a hex token: a trace id such as
    # 593352188416f79a... starts with twelve digits once in a while and is not personal data.
    assert not re.search(r"(?<![0-9a-fA-F])\+?\d[\d ]{9,}(?![0-9a-fA-F])", logged.replace("T0", ""))
