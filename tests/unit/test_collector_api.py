"""Collector HTTP contract with a fake publisher (pure: no broker): 202, 422 naming fields, 503, 413."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from fastapi.testclient import TestClient

from services.collector.app import create_app
from services.collector.publisher import BrokerUnavailable
from services.collector.settings import CollectorSettings
from shared.envelope import OutgoingRecord, decode


class FakePublisher:
    def __init__(self) -> None:
        self.records: list[OutgoingRecord] = []
        self.down = False

    async def publish(self, records: Sequence[OutgoingRecord]) -> None:
        if self.down:
            raise BrokerUnavailable("down")
        self.records.extend(records)

    async def check(self) -> None:
        if self.down:
            raise BrokerUnavailable("down")


@pytest.fixture
def fake() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def client(fake: FakePublisher) -> TestClient:
    app = create_app(CollectorSettings(max_body_bytes=4096, log_format="console"), publisher=fake)
    return TestClient(app)


GOOD = {"metric": "csat", "scale": "1-5", "score": 4, "customer": {"id": "cus-1"}, "segment": {"store": "s1"}}


def test_accepts_and_publishes(client: TestClient, fake: FakePublisher) -> None:
    r = client.post("/v1/ratings", json=GOOD)
    assert r.status_code == 202
    rid = r.json()["rating_id"]
    env = decode(headers=fake.records[0].headers, key=fake.records[0].key, value=fake.records[0].value)
    assert env.id == rid
    assert env.data.model_dump()["positive"] is True


def test_idempotency_key_becomes_rating_id(client: TestClient) -> None:
    r = client.post("/v1/ratings", json=GOOD, headers={"Idempotency-Key": "abc-123"})
    assert r.json()["rating_id"] == "abc-123"


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"score": 9}, "score"),
        ({"scale": "1-100"}, "scale"),
        ({"metric": "happiness"}, "metric"),
        ({"customer": {}}, "customer.id"),
        ({"customer": {"id": "c", "email": "not-an-email"}}, "customer.email"),
        ({"customer": {"id": "c", "phone": "0612"}}, "customer.phone"),
        ({"segment": {"Store Name": "x"}}, "segment"),
        ({"occurred_at": "2026-01-01T00:00:00"}, "occurred_at"),
        ({"occurred_at": "2999-01-01T00:00:00Z"}, "occurred_at"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_invalid_input_is_problem_json_naming_the_field(
    client: TestClient, patch: dict[str, object], field: str
) -> None:
    r = client.post("/v1/ratings", json={**GOOD, **patch})
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == 422
    assert body["field"] == field, body


def test_missing_score_is_named(client: TestClient) -> None:
    body = {k: v for k, v in GOOD.items() if k != "score"}
    r = client.post("/v1/ratings", json=body)
    assert r.status_code == 422 and r.json()["field"] == "score"


def test_broker_down_is_503_with_retry_after(client: TestClient, fake: FakePublisher) -> None:
    fake.down = True
    r = client.post("/v1/ratings", json=GOOD)
    assert r.status_code == 503
    assert r.headers["retry-after"] == "5"
    assert r.headers["content-type"].startswith("application/problem+json")
    assert client.get("/readyz").status_code == 503


def test_batch_has_one_result_per_item(client: TestClient, fake: FakePublisher) -> None:
    r = client.post(
        "/v1/ratings/batch", json={"ratings": [GOOD, {**GOOD, "score": 0}, {**GOOD, "metric": "x"}]}
    )
    assert r.status_code == 202
    body = r.json()
    assert body["accepted"] == 1 and body["rejected"] == 2
    assert [x["status"] for x in body["results"]] == ["accepted", "rejected", "rejected"]
    assert body["results"][1]["errors"][0]["field"] == "ratings[1].score"
    assert body["results"][2]["errors"][0]["field"] == "ratings[2].metric"
    assert len(fake.records) == 1


def test_empty_batch_is_refused(client: TestClient) -> None:
    r = client.post("/v1/ratings/batch", json={"ratings": []})
    assert r.status_code == 422 and r.json()["field"] == "ratings"


def test_body_too_large_is_413(client: TestClient) -> None:
    r = client.post("/v1/ratings", json={**GOOD, "comment": "x" * 5000})
    assert r.status_code == 413
    assert r.json()["status"] == 413


def test_health_and_metrics(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    client.post("/v1/ratings", json=GOOD)
    text = client.get("/metrics").text
    assert 'csat_ratings_accepted_total{metric="csat",source="api"}' in text
