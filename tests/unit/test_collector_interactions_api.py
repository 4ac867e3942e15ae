"""``POST /v1/interactions``, its batch and the helpdesk webhooks, on a fake publisher and store.

Secret key or interactions:write only (a publishable key is refused), fields named in 422s, retries
published once, the same id with other content 409, 503 when the broker is away, the right topic.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shared.envelope import decode
from shared.events import InteractionRecorded
from tests.fakes.collector_store import MemoryStore
from tests.unit.test_collector_api import ADMIN, FakePublisher, make_client
from tests.unit.test_collector_api import close_clients as close_clients  # autouse: closes the clients

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "helpdesks"

GOOD: dict[str, Any] = {
    "interaction_id": "order-5512-delivered",
    "type": "Order.Delivered",
    "customer": {"id": "cus_1042", "email": "ana@example.com", "locale": "fr"},
    "occurred_at": "2026-11-23T09:30:00Z",
    "attributes": {"order_id": "5512", "carrier": "dhl", "items": 3},
    "segment": {"store": "paris-1", "channel": "web"},
}


def _keys(client: TestClient) -> tuple[str, str]:
    """A publishable and a secret key of one source."""
    r = client.post("/v1/sources", json={"source_id": "shop", "name": "Shop"}, headers=ADMIN)
    assert r.status_code == 201, r.text
    publishable: str = r.json()["key"]["key"]
    s = client.post("/v1/sources/shop/keys", json={"kind": "secret"}, headers=ADMIN)
    assert s.status_code == 201, s.text
    return publishable, s.json()["key"]


def _published(fake: FakePublisher) -> list[InteractionRecorded]:
    out = []
    for r in fake.records:
        data = decode(headers=r.headers, key=r.key, value=r.value).data
        assert isinstance(data, InteractionRecorded)
        out.append(data)
    return out


@pytest.fixture
def fake() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def client(fake: FakePublisher, store: MemoryStore) -> TestClient:
    return make_client(fake, store)


@pytest.fixture
def keyed(fake: FakePublisher, store: MemoryStore) -> tuple[TestClient, str, str]:
    client = make_client(fake, store, require_api_key=True)
    publishable, secret = _keys(client)
    return client, publishable, secret


def test_secret_key_posts_and_the_record_goes_to_the_interactions_topic(
    keyed: tuple[TestClient, str, str], fake: FakePublisher
) -> None:
    client, _pk, sk = keyed
    r = client.post("/v1/interactions", json=GOOD, headers={"Authorization": f"Bearer {sk}"})
    assert r.status_code == 202, r.text
    assert r.json() == {"interaction_id": "order-5512-delivered", "status": "accepted"}
    assert [rec.topic for rec in fake.records] == ["csat.interactions.v1"]
    assert fake.records[0].key == b"cus_1042"
    (event,) = _published(fake)
    assert event.type == "order.delivered" and event.segment == {"store": "paris-1", "channel": "web"}
    assert event.source == "shop"


def test_refusals_401_and_publishable_403(keyed: tuple[TestClient, str, str], fake: FakePublisher) -> None:
    client, pk, _sk = keyed
    assert client.post("/v1/interactions", json=GOOD).status_code == 401
    r = client.post("/v1/interactions", json=GOOD, headers={"Authorization": f"Bearer {pk}"})
    assert r.status_code == 403 and "secret key" in r.json()["detail"]
    assert fake.records == []


def test_retry_is_published_once_and_other_content_is_409(
    keyed: tuple[TestClient, str, str], fake: FakePublisher
) -> None:
    client, _pk, sk = keyed
    auth = {"Authorization": f"Bearer {sk}"}
    assert client.post("/v1/interactions", json=GOOD, headers=auth).status_code == 202
    again = client.post("/v1/interactions", json=GOOD, headers=auth)
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    changed = client.post("/v1/interactions", json={**GOOD, "type": "order.returned"}, headers=auth)
    assert changed.status_code == 409 and changed.json()["field"] == "interaction_id"
    assert len(fake.records) == 1


def test_fields_named_and_broker_down_503(client: TestClient, fake: FakePublisher) -> None:
    bad = client.post("/v1/interactions", json={**GOOD, "type": "Order Delivered"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "type"
    future = client.post("/v1/interactions", json={**GOOD, "occurred_at": "2099-01-01T00:00:00Z"})
    assert future.status_code == 422 and future.json()["field"] == "occurred_at"
    phone = client.post("/v1/interactions", json={**GOOD, "customer": {"id": "c", "phone": "12"}})
    assert phone.status_code == 422 and phone.json()["errors"][0]["field"].startswith("customer.phone")
    fake.down = True
    down = client.post("/v1/interactions", json=GOOD)
    assert down.status_code == 503 and "Retry-After" in down.headers
    assert fake.records == []


def test_batch_validates_each_item_and_derives_ids(client: TestClient, fake: FakePublisher) -> None:
    items = [
        {"type": "ticket.solved", "customer": {"id": "c1"}},
        {"type": "ticket solved", "customer": {"id": "c2"}},
        {"type": "chat.closed", "customer": {"id": "c3"}, "attributes": {"Bad": 1}},
    ]
    r = client.post(
        "/v1/interactions/batch", json={"interactions": items}, headers={"Idempotency-Key": "imp-7"}
    )
    assert r.status_code == 202
    body = r.json()
    assert (body["accepted"], body["rejected"]) == (1, 2)
    assert body["results"][0]["interaction_id"] == "imp-7-0"
    assert body["results"][1]["errors"][0]["field"] == "interactions[1].type"
    assert body["results"][2]["errors"][0]["field"] == "interactions[2].attributes"
    again = client.post(
        "/v1/interactions/batch", json={"interactions": items}, headers={"Idempotency-Key": "imp-7"}
    )
    assert again.json()["results"][0]["replayed"] is True
    assert len(fake.records) == 1


@pytest.mark.parametrize(
    ("provider", "fixture", "type_"),
    [
        ("zendesk", "zendesk_trigger_solved.json", "ticket.solved"),
        ("zendesk", "zendesk_ticket_status_changed.json", "ticket.solved"),
        ("freshdesk", "freshdesk_ticket_resolved.json", "ticket.solved"),
        ("intercom", "intercom_conversation_admin_closed.json", "chat.closed"),
    ],
)
def test_helpdesk_webhooks_publish_one_interaction_per_ticket(
    client: TestClient, fake: FakePublisher, provider: str, fixture: str, type_: str
) -> None:
    payload = json.loads((FIXTURES / fixture).read_text())
    first = client.post(f"/v1/webhooks/{provider}", json=payload)
    assert first.status_code == 202, first.text
    retry = client.post(f"/v1/webhooks/{provider}", json=payload)
    assert retry.status_code == 202 and retry.headers.get("Idempotent-Replayed") == "true"
    (event,) = _published(fake)
    assert event.type == type_ and event.source == provider


def test_webhook_unknown_provider_and_bad_payload(client: TestClient) -> None:
    assert client.post("/v1/webhooks/servicenow", json={}).status_code == 404
    bad = client.post("/v1/webhooks/freshdesk", json={"freshdesk_webhook": {"ticket_status": "Resolved"}})
    assert bad.status_code == 422 and bad.json()["field"]


# --- the hot path: FastAPI's dependency solving skipped, the event written without its model ----------
_PLAIN = {k: v for k, v in GOOD.items() if k != "interaction_id"}
_UNICODE = {
    **_PLAIN,
    "customer": {"id": "cüs-客户", "email": "ana@example.com", "timezone": "Europe/Paris"},
    "attributes": {"note": ' Très bien — ünïcødé "quoted" 😀 ', "total": 42.5, "ok": True, "none": None},
    "account": {"id": "acc_77", "tier": "Gold", "value": 12000},
    "consent": {"contact": True},
}
_FAST_CASES: list[tuple[str, dict[str, Any]]] = [
    ("/v1/interactions", {"json": _PLAIN, "headers": {"Idempotency-Key": "same-1"}}),
    ("/v1/interactions", {"json": _PLAIN, "headers": {"Idempotency-Key": "same-1"}}),  # the replay
    (
        "/v1/interactions",
        {"json": {**_PLAIN, "type": "order.returned"}, "headers": {"Idempotency-Key": "same-1"}},
    ),
    ("/v1/interactions", {"json": _PLAIN, "headers": {"Idempotency-Key": "bad key!"}}),
    ("/v1/interactions", {"json": {**GOOD, "type": "Order Delivered"}}),
    ("/v1/interactions", {"json": {**GOOD, "customer": {}}}),
    ("/v1/interactions", {"json": [GOOD]}),
    ("/v1/interactions", {"content": b'{"type": "order.', "headers": {"Content-Type": "application/json"}}),
    (
        "/v1/interactions",
        {"content": b"type=x", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
    ),
    ("/v1/interactions", {"json": GOOD, "headers": {"Idempotency-Key": "other"}}),
    ("/v1/interactions", {"json": GOOD, "headers": {"Authorization": "Bearer sk_live_unknown"}}),
    ("/v1/interactions", {"json": {**GOOD, "occurred_at": "2099-01-01T00:00:00Z"}}),
    ("/v1/interactions", {"json": {**GOOD, "occurred_at": "0001-01-01T00:00:00+01:00"}}),
    ("/v1/interactions", {"json": {**GOOD, "attributes": {"order_id": 2**64}}}),
    ("/v1/interactions", {"json": {**GOOD, "attributes": {"order_id": -(2**63) - 1}}}),
    ("/v1/interactions", {"json": _UNICODE, "headers": {"Idempotency-Key": "uni-1"}}),
    ("/v1/interactions", {"json": _UNICODE}),
    (
        "/v1/interactions/batch",
        {
            "json": {
                "interactions": [
                    _UNICODE,
                    {**_PLAIN, "type": "x y"},
                    {"type": "chat.closed"},
                    {**_PLAIN, "occurred_at": "2099-01-01T00:00:00Z"},
                ]
            }
        },
    ),
    (
        "/v1/interactions/batch",
        {"json": {"interactions": [_PLAIN, _UNICODE]}, "headers": {"Idempotency-Key": "bk"}},
    ),
    (
        "/v1/interactions/batch",
        {"json": {"interactions": [_PLAIN, _UNICODE]}, "headers": {"Idempotency-Key": "bk"}},
    ),
    ("/v1/interactions/batch", {"json": {"interactions": [GOOD, {**GOOD, "type": "order.returned"}]}}),
    (
        "/v1/interactions/batch",
        {"json": {"interactions": [_UNICODE, {**_PLAIN, "attributes": {"n": 2**70}}]}},
    ),
    ("/v1/interactions/batch", {"json": {"interactions": []}}),
    ("/v1/interactions/batch", {"json": {"items": [GOOD]}}),
]


_DRAWN = re.compile(r"[0-9a-f]{32}")


def _interaction_answers(**settings: Any) -> tuple[list[tuple[int, Any, str | None, str | None]], list[Any]]:
    """Every case's answer (server-chosen ids removed) and the events published (without receive times)."""
    fake = FakePublisher()
    client = make_client(fake, MemoryStore(), **settings)
    out = []
    for path, kw in _FAST_CASES:
        r = client.post(path, **kw)
        body = r.json()
        if r.status_code == 202:
            for item in [body, *body.get("results", [])]:
                if _DRAWN.fullmatch(item.get("interaction_id") or ""):
                    del item["interaction_id"]  # drawn by the server: differs from run to run
        out.append((r.status_code, body, r.headers.get("content-type"), r.headers.get("idempotent-replayed")))
    events = []
    for record in fake.records:
        event = decode(headers=record.headers, key=record.key, value=record.value)
        assert isinstance(event.data, InteractionRecorded) and record.topic == "csat.interactions.v1"
        dumped = event.data.model_dump(mode="json", exclude={"received_at"})
        if event.data.occurred_at == event.data.received_at:
            dumped.pop("occurred_at")  # the server's clock
        if _DRAWN.fullmatch(event.data.interaction_id):
            dumped.pop("interaction_id")
        events.append((record.key, event.type, event.subject == event.id, dumped))
    return out, events


def test_the_interaction_fast_path_answers_and_publishes_exactly_as_the_model_path() -> None:
    """Well-formed interactions skip FastAPI's dependency solving and are written without their model;
    every answer (202, replay, 409, 401, 422 naming the field, batch results) and every published event
    is the same as with FastAPI's own handler and the model path (``CSAT_FAST_PATH``,
    ``CSAT_LEAN_NORMALIZE`` off)."""
    fast, fast_events = _interaction_answers()
    standard, standard_events = _interaction_answers(fast_path=False, lean_normalize=False)
    assert [a[0] for a in fast] == [
        202, 202, 409, 422, 422, 422, 422, 422, 422, 422, 401, 422, 422, 422, 422, 202,
        202, 202, 202, 202, 202, 202, 422, 422,
    ]  # fmt: skip
    assert fast == standard
    assert fast_events == standard_events and len(fast_events) == 8
    assert fast[3][1]["errors"][0]["field"] == "Idempotency-Key"
    assert fast[11][1]["field"] == "occurred_at" and fast[12][1]["field"] == "occurred_at"
    assert fast[13][1]["errors"][0]["field"] == fast[14][1]["errors"][0]["field"] == "attributes"
    assert fast[1][3] == "true" and fast[19][1]["results"][1]["replayed"] is True
    batch = fast[17][1]
    assert (batch["accepted"], batch["rejected"]) == (1, 3)
    assert [e["field"] for r in batch["results"][1:] for e in r["errors"]][:2] == [
        "interactions[1].type",
        "interactions[2].customer",
    ]
    assert batch["results"][3]["errors"] == [
        {"field": "interactions[3].occurred_at", "message": "occurred_at is in the future"}
    ]
    conflict = fast[20][1]["results"]
    assert conflict[1]["status"] == "rejected" and conflict[1]["errors"][0]["field"] == (
        "interactions[1].interaction_id"
    )
    assert fast[21][1]["results"][1]["errors"][0]["field"] == "interactions[1].attributes"
    # Mixed settings give the same too: the lean writer behind FastAPI's handler, and the reverse.
    assert _interaction_answers(fast_path=False)[0] == fast
    assert _interaction_answers(lean_normalize=False)[0] == fast


@pytest.mark.parametrize("fast_path", [True, False])
def test_a_well_formed_interaction_skips_fastapis_dependency_solving(
    fast_path: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fastapi.routing

    solved: list[str] = []
    original = fastapi.routing.solve_dependencies  # type: ignore[attr-defined] # what the handler calls

    async def counting(*args: Any, **kwargs: Any) -> Any:
        solved.append(kwargs["request"].url.path)
        return await original(*args, **kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counting)
    client = make_client(FakePublisher(), MemoryStore(), fast_path=fast_path)
    assert client.post("/v1/interactions", json=GOOD).status_code == 202
    assert client.post("/v1/interactions/batch", json={"interactions": [_PLAIN]}).status_code == 202
    assert client.post("/v1/interactions", json={**GOOD, "customer": {}}).status_code == 422  # FastAPI's
    expected = ["/v1/interactions", "/v1/interactions/batch", "/v1/interactions"]
    assert solved == (expected[2:] if fast_path else expected)
