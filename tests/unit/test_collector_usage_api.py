"""``POST /v1/usage`` with a fake publisher and the in-memory store: keys, items at the field, idempotency."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.collector.usage_intake import CLAIM_PREFIX
from shared.envelope import decode
from shared.events import UsageObserved
from tests.fakes.collector_store import MemoryStore
from tests.unit.test_collector_api import _OPEN, ADMIN, FakePublisher, make_client


@pytest.fixture
def fake() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture(autouse=True)
def close_clients() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().__exit__(None, None, None)


OBS: dict[str, Any] = {
    "account_id": "acc_77",
    "observed_at": "2026-11-23T00:00:00Z",
    "signals": {"logins_7d": 42, "features_used": 7},
}


def _source(client: TestClient, kind: str) -> str:
    r = client.post(
        "/v1/sources", json={"source_id": f"crm-{kind}", "name": "CRM", "key_kind": kind}, headers=ADMIN
    )
    assert r.status_code == 201, r.text
    key: str = r.json()["key"]["key"]
    return key


def _events(fake: FakePublisher) -> list[UsageObserved]:
    out = []
    for r in fake.records:
        data = decode(headers=r.headers, key=r.key, value=r.value).data
        assert isinstance(data, UsageObserved)
        out.append(data)
    return out


def test_secret_key_posts_a_batch_published_keyed_by_account(fake: FakePublisher, store: MemoryStore) -> None:
    client = make_client(fake, store, require_api_key=True)
    key = _source(client, "secret")
    body = {"observations": [OBS, {**OBS, "customer_id": "cus_1", "signals": {"tickets_open": 2}}]}
    r = client.post("/v1/usage", json=body, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == 2 and r.json()["rejected"] == 0
    assert [rec.topic for rec in fake.records] == ["csat.usage.v1"] * 2
    assert [rec.key for rec in fake.records] == [b"acc_77", b"acc_77"]
    events = _events(fake)
    assert events[0].signals == {"logins_7d": 42.0, "features_used": 7.0}
    assert events[1].customer_id == "cus_1" and events[0].source == "crm-secret"


def test_credentials_publishable_key_and_missing_key_are_refused(
    fake: FakePublisher, store: MemoryStore
) -> None:
    client = make_client(fake, store, require_api_key=True)
    body = {"observations": [OBS]}
    assert client.post("/v1/usage", json=body).status_code == 401
    # the admin key is a person's credential: no usage:write (a machine scope)
    assert client.post("/v1/usage", json=body, headers=ADMIN).status_code == 403
    pk = _source(client, "publishable")
    r = client.post("/v1/usage", json=body, headers={"Authorization": f"Bearer {pk}"})
    assert r.status_code == 403 and r.headers["content-type"].startswith("application/problem+json")
    assert fake.records == []


def test_each_item_is_validated_at_its_field(fake: FakePublisher, store: MemoryStore) -> None:
    client = make_client(fake, store)
    bad = [
        {**OBS, "signals": {"logins_7d": True}},
        {**OBS, "signals": {"Logins": 1}},
        {"observed_at": "2026-11-23T00:00:00Z", "signals": {"x": 1}},
        {**OBS, "observed_at": "2999-01-01T00:00:00Z"},
    ]
    r = client.post("/v1/usage", json={"observations": [OBS, *bad]})
    assert r.status_code == 202
    out = r.json()
    assert out["accepted"] == 1 and out["rejected"] == 4
    fields = [res["errors"][0]["field"] for res in out["results"][1:]]
    assert fields[0] == "observations[1].signals.logins_7d"
    assert fields[1].startswith("observations[2].signals")
    assert fields[2] == "observations[3].customer_id"
    assert fields[3] == "observations[4].observed_at"
    assert len(fake.records) == 1


def test_a_retry_is_counted_once_and_a_changed_body_is_a_conflict(
    fake: FakePublisher, store: MemoryStore
) -> None:
    client = make_client(fake, store)
    first = client.post("/v1/usage", json={"observations": [OBS]}).json()
    again = client.post("/v1/usage", json={"observations": [OBS]}).json()
    oid = first["results"][0]["observation_id"]
    assert again["results"][0] == {"index": 0, "status": "accepted", "observation_id": oid, "replayed": True}
    assert len(fake.records) == 1
    keyed = {**OBS, "observation_id": "mp-1"}
    assert client.post("/v1/usage", json={"observations": [keyed]}).json()["accepted"] == 1
    changed = {**keyed, "signals": {"logins_7d": 1}}
    res = client.post("/v1/usage", json={"observations": [changed]}).json()["results"][0]
    assert res["status"] == "rejected" and res["errors"][0]["field"] == "observations[0].observation_id"
    assert len(fake.records) == 2
    assert CLAIM_PREFIX + "mp-1" in store.idem  # apart from rating ids


def test_broker_down_is_503_and_the_retry_publishes(fake: FakePublisher, store: MemoryStore) -> None:
    client = make_client(fake, store)
    fake.down = True
    r = client.post("/v1/usage", json={"observations": [OBS]})
    assert r.status_code == 503 and "retry-after" in r.headers
    fake.down = False
    assert client.post("/v1/usage", json={"observations": [OBS]}).json()["results"][0].get("replayed") is None
    assert len(fake.records) == 1


def test_idempotency_key_names_items_without_an_id(fake: FakePublisher, store: MemoryStore) -> None:
    client = make_client(fake, store)
    r = client.post(
        "/v1/usage",
        json={"observations": [OBS, {**OBS, "observation_id": "own"}]},
        headers={"Idempotency-Key": "sync-9"},
    )
    assert [x["observation_id"] for x in r.json()["results"]] == ["sync-9-0", "own"]


def test_empty_batch_is_refused_at_the_field(fake: FakePublisher, store: MemoryStore) -> None:
    client = make_client(fake, store)
    r = client.post("/v1/usage", json={"observations": []})
    assert r.status_code == 422 and "observations" in r.text
