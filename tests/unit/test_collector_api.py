"""Collector HTTP contract with a fake publisher and an in-memory store (pure: no broker, no database).

202, 422 naming fields, 503, 413; keys, idempotency, rate limits and CORS per source.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.collector.bootstrap import create_app
from services.collector.ports import BrokerUnavailable
from services.collector.settings import DEV_SIGNING_SECRET, CollectorSettings
from shared.envelope import OutgoingRecord, decode
from shared.events import RatingSubmitted
from tests.credentials import prod_secrets
from tests.fakes.collector_store import MemoryStore

ADMIN = {"Authorization": "Bearer dev-admin-key"}


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

    def events(self) -> list[RatingSubmitted]:
        out = []
        for r in self.records:
            data = decode(headers=r.headers, key=r.key, value=r.value).data
            assert isinstance(data, RatingSubmitted)
            out.append(data)
        return out


@pytest.fixture
def fake() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


_OPEN: list[TestClient] = []


@pytest.fixture(autouse=True)
def close_clients() -> Iterator[None]:
    """Clients run the app's lifespan and keep one event loop, as uvicorn does (background tasks)."""
    yield
    while _OPEN:
        _OPEN.pop().__exit__(None, None, None)


def make_client(fake: FakePublisher, store: MemoryStore, **settings: Any) -> TestClient:
    cfg = CollectorSettings.model_validate(
        {"environment": "test", "max_body_bytes": 4096, "log_format": "console", **settings}
    )
    client = TestClient(create_app(cfg, publisher=fake, store=store))
    client.__enter__()
    _OPEN.append(client)
    return client


@pytest.fixture
def client(fake: FakePublisher, store: MemoryStore) -> TestClient:
    return make_client(fake, store)


GOOD = {"metric": "csat", "scale": "1-5", "score": 4, "customer": {"id": "cus-1"}, "segment": {"store": "s1"}}


def new_source(client: TestClient, source_id: str = "shop", **extra: Any) -> str:
    r = client.post("/v1/sources", json={"source_id": source_id, "name": "Shop", **extra}, headers=ADMIN)
    assert r.status_code == 201, r.text
    key: str = r.json()["key"]["key"]
    return key


def test_accepts_and_publishes(client: TestClient, fake: FakePublisher) -> None:
    r = client.post("/v1/ratings", json=GOOD)
    assert r.status_code == 202
    rid = r.json()["rating_id"]
    env = decode(headers=fake.records[0].headers, key=fake.records[0].key, value=fake.records[0].value)
    assert env.id == rid
    data = env.data.model_dump()
    assert data["positive"] is True
    assert data["normalized"] == 0.75 and data["sentiment"] == "positive"
    assert data["source"] == "dev"


def test_idempotency_key_becomes_rating_id(client: TestClient) -> None:
    r = client.post("/v1/ratings", json=GOOD, headers={"Idempotency-Key": "abc-123"})
    assert r.json()["rating_id"] == "abc-123"


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"score": 9}, "score"),
        ({"score": "great"}, "score"),
        ({"score": 3.5}, "score"),
        ({"scale": "1-100"}, "scale"),
        ({"metric": "nps", "scale": "1-5"}, "scale"),
        ({"metric": "happiness"}, "metric"),
        ({"customer": {}}, "customer.id"),
        ({"customer": {"id": "c", "email": "not-an-email"}}, "customer.email"),
        ({"customer": {"id": "c", "phone": "0612"}}, "customer.phone"),
        ({"segment": {"Store Name": "x"}}, "segment"),
        ({"occurred_at": "2026-01-01T00:00:00"}, "occurred_at"),
        ({"occurred_at": "2999-01-01T00:00:00Z"}, "occurred_at"),
        ({"rating_id": "has spaces"}, "rating_id"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_invalid_input_is_problem_json_naming_the_field(
    client: TestClient, fake: FakePublisher, patch: dict[str, object], field: str
) -> None:
    r = client.post("/v1/ratings", json={**GOOD, **patch})
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == 422
    assert body["field"] == field, body
    assert fake.records == []


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


def test_database_down_publishes_keyed_ratings_unchecked(
    client: TestClient, fake: FakePublisher, store: MemoryStore
) -> None:
    store.down = True
    r = client.post("/v1/ratings", json={**GOOD, "rating_id": "k-1"})
    assert r.status_code == 202
    assert [dict(rec.headers)["ce_id"] for rec in fake.records] == [b"k-1"]
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "degraded"


def test_database_down_refuses_keyed_ratings_with_503_when_configured(
    fake: FakePublisher, store: MemoryStore
) -> None:
    client = make_client(fake, store, idempotency_when_db_down="refuse")
    store.down = True
    r = client.post("/v1/ratings", json={**GOOD, "rating_id": "k-1"})
    assert r.status_code == 503 and r.json()["type"].endswith("database-unavailable")
    assert fake.records == []
    assert client.get("/readyz").json()["checks"]["database"].startswith("failed")


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


def test_empty_and_oversized_batches_are_refused(fake: FakePublisher, store: MemoryStore) -> None:
    client = make_client(fake, store, max_batch_items=2)
    assert client.post("/v1/ratings/batch", json={"ratings": []}).json()["field"] == "ratings"
    r = client.post("/v1/ratings/batch", json={"ratings": [GOOD] * 3})
    assert r.status_code == 422 and r.json()["field"] == "ratings"


def test_body_too_large_is_413_and_counted(client: TestClient) -> None:
    r = client.post("/v1/ratings", json={**GOOD, "comment": "x" * 5000})
    assert r.status_code == 413
    assert r.json()["status"] == 413
    assert (
        'csat_ratings_rejected_total{reason="body_too_large",source="unknown"}' in client.get("/metrics").text
    )


def test_health_and_metrics(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    client.post("/v1/ratings", json=GOOD)
    client.post("/v1/ratings", json={**GOOD, "score": 7})
    text = client.get("/metrics").text
    assert 'csat_ratings_accepted_total{metric="csat",source="dev"}' in text
    assert 'csat_ratings_rejected_total{reason="invalid_score",source="dev"}' in text


# ---- idempotency ------------------------------------------------------------------------------


def test_a_retry_gets_the_first_answer_and_is_published_once(client: TestClient, fake: FakePublisher) -> None:
    first = client.post("/v1/ratings", json={**GOOD, "rating_id": "r-1"})
    again = client.post("/v1/ratings", json={**GOOD, "rating_id": "r-1"})
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json() == {"rating_id": "r-1", "status": "accepted"}
    assert again.headers["idempotent-replayed"] == "true"
    assert len(fake.records) == 1


def test_same_answer_spelt_differently_is_a_replay(client: TestClient, fake: FakePublisher) -> None:
    client.post("/v1/ratings", json={**GOOD, "score": 4}, headers={"Idempotency-Key": "k-9"})
    r = client.post("/v1/ratings", json={**GOOD, "score": "satisfied"}, headers={"Idempotency-Key": "k-9"})
    assert r.status_code == 202 and r.headers["idempotent-replayed"] == "true"
    assert len(fake.records) == 1


def test_same_key_with_a_different_body_is_409(client: TestClient, fake: FakePublisher) -> None:
    client.post("/v1/ratings", json=GOOD, headers={"Idempotency-Key": "k-1"})
    r = client.post("/v1/ratings", json={**GOOD, "score": 1}, headers={"Idempotency-Key": "k-1"})
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["field"] == "rating_id"
    assert [e.score for e in fake.events()] == [4]


def test_header_and_body_ids_must_agree(client: TestClient) -> None:
    r = client.post("/v1/ratings", json={**GOOD, "rating_id": "a"}, headers={"Idempotency-Key": "b"})
    assert r.status_code == 422 and r.json()["field"] == "rating_id"


def test_a_failed_publish_releases_the_id_for_the_retry(client: TestClient, fake: FakePublisher) -> None:
    fake.down = True
    assert client.post("/v1/ratings", json={**GOOD, "rating_id": "r-2"}).status_code == 503
    fake.down = False
    r = client.post("/v1/ratings", json={**GOOD, "rating_id": "r-2"})
    assert r.status_code == 202 and "idempotent-replayed" not in r.headers
    assert len(fake.records) == 1


def test_batch_replays_conflicts_and_derived_ids(client: TestClient, fake: FakePublisher) -> None:
    client.post("/v1/ratings", json={**GOOD, "rating_id": "b-0"})
    items = [
        {**GOOD, "rating_id": "b-0"},  # replay
        {**GOOD, "rating_id": "b-0", "score": 2},  # conflict inside the batch and with the store
        {**GOOD, "rating_id": "b-1"},  # new
        {**GOOD},  # id derived from the Idempotency-Key
    ]
    r = client.post("/v1/ratings/batch", json={"ratings": items}, headers={"Idempotency-Key": "imp"})
    body = r.json()
    assert [x["status"] for x in body["results"]] == ["accepted", "rejected", "accepted", "accepted"]
    assert body["results"][0]["replayed"] is True
    assert body["results"][1]["errors"][0]["field"] == "ratings[1].rating_id"
    assert body["results"][3]["rating_id"] == "imp-3"
    again = client.post(
        "/v1/ratings/batch", json={"ratings": items}, headers={"Idempotency-Key": "imp"}
    ).json()
    assert [x.get("replayed") for x in again["results"]] == [True, None, True, True]
    assert sorted(e.rating_id for e in fake.events()) == ["b-0", "b-1", "imp-3"]


# ---- keys and sources -------------------------------------------------------------------------


def test_production_mode_requires_a_source_key(fake: FakePublisher, store: MemoryStore) -> None:
    client = make_client(fake, store, require_api_key=True)
    r = client.post("/v1/ratings", json=GOOD)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.headers["content-type"].startswith("application/problem+json")
    assert client.post("/v1/ratings", json=GOOD, headers={"X-API-Key": "csk_nope"}).status_code == 401
    # the admin key manages sources; it is not a key for posting ratings (no ratings:write)
    assert client.post("/v1/ratings", json=GOOD, headers=ADMIN).status_code == 403
    key = new_source(client)
    ok = client.post("/v1/ratings", json=GOOD, headers={"Authorization": f"Bearer {key}"})
    assert ok.status_code == 202
    also = client.post("/v1/ratings/batch", json={"ratings": [GOOD]}, headers={"X-API-Key": key})
    assert also.status_code == 202
    assert [e.source for e in fake.events()] == ["shop", "shop"]
    assert 'csat_ratings_accepted_total{metric="csat",source="shop"} 2.0' in client.get("/metrics").text


def test_prod_settings_refuse_anonymous_posting_and_dev_secrets() -> None:
    prod = {**prod_secrets(), "environment": "prod"}
    with pytest.raises(ValueError, match="CSAT_REQUIRE_API_KEY"):
        CollectorSettings.model_validate({**prod, "require_api_key": False})
    with pytest.raises(ValueError, match=r"CSAT_SIGNING_SECRET \(the public development value\)"):
        CollectorSettings.model_validate({**prod, "signing_secret": DEV_SIGNING_SECRET})
    with pytest.raises(ValueError, match=r"CSAT_SOURCE_IDENTITY_KEY \(shorter than 32"):
        CollectorSettings.model_validate({**prod, "source_identity_key": "i" * 20})
    cfg = CollectorSettings.model_validate(prod)
    assert cfg.keys_required is True
    assert (cfg.key_rate, cfg.ip_rate) == (200, 50)
    dev = CollectorSettings(environment="dev")
    assert dev.keys_required is False
    assert (dev.key_rate, dev.ip_rate) == (0, 0)  # local stacks and benchmarks are not throttled


def test_a_source_key_can_post_ratings_and_nothing_else(client: TestClient) -> None:
    key = new_source(client)
    auth = {"Authorization": f"Bearer {key}"}
    assert client.get("/v1/sources", headers=auth).status_code == 403
    assert client.post("/v1/sources", json={"source_id": "x", "name": "x"}, headers=auth).status_code == 403
    assert client.post("/v1/email-links", json={}, headers=auth).status_code == 403
    assert client.get("/v1/sources").status_code == 401


def test_source_admin_lifecycle_and_key_rotation(fake: FakePublisher, store: MemoryStore) -> None:
    client = make_client(fake, store, require_api_key=True)
    old = new_source(client, allowed_origins=["https://shop.example.com"])
    listed = client.get("/v1/sources", headers=ADMIN).json()["sources"]
    assert [s["source_id"] for s in listed] == ["shop"]
    assert old not in client.get("/v1/sources/shop/keys", headers=ADMIN).text  # only ids, never keys
    assert (
        client.post("/v1/sources", json={"source_id": "shop", "name": "again"}, headers=ADMIN).status_code
        == 409
    )
    assert (
        client.post("/v1/sources", json={"source_id": "dev", "name": "x"}, headers=ADMIN).status_code == 422
    )
    bad = client.post(
        "/v1/sources", json={"source_id": "s2", "name": "x", "allowed_origins": ["*"]}, headers=ADMIN
    )
    assert bad.status_code == 422 and bad.json()["field"] == "allowed_origins"

    # A delay past what a datetime holds was a 500 (found by the auth fuzzing): now refused at the field.
    huge = client.post("/v1/sources/shop/keys", json={"expire_others_in_s": 10**18}, headers=ADMIN)
    assert huge.status_code == 422 and huge.json()["field"] == "expire_others_in_s"
    rotated = client.post("/v1/sources/shop/keys", json={"expire_others_in_s": 0}, headers=ADMIN)
    assert rotated.status_code == 201
    new = rotated.json()["key"]
    assert client.post("/v1/ratings", json=GOOD, headers={"X-API-Key": old}).status_code == 401
    assert client.post("/v1/ratings", json=GOOD, headers={"X-API-Key": new}).status_code == 202

    key_id = rotated.json()["key_id"]
    assert client.delete(f"/v1/sources/shop/keys/{key_id}", headers=ADMIN).status_code == 204
    assert client.post("/v1/ratings", json=GOOD, headers={"X-API-Key": new}).status_code == 401

    newest = client.post("/v1/sources/shop/keys", headers=ADMIN).json()["key"]
    patched = client.patch("/v1/sources/shop", json={"disabled": True}, headers=ADMIN)
    assert patched.status_code == 200 and patched.json()["disabled"] is True
    assert client.post("/v1/ratings", json=GOOD, headers={"X-API-Key": newest}).status_code == 403
    assert client.delete("/v1/sources/shop", headers=ADMIN).status_code == 204
    assert client.get("/v1/sources/shop", headers=ADMIN).status_code == 404


def test_known_keys_survive_a_database_outage_for_a_while(fake: FakePublisher, store: MemoryStore) -> None:
    client = make_client(fake, store, require_api_key=True, key_cache_s=0, key_cache_stale_s=300)
    key = new_source(client)
    assert client.post("/v1/ratings", json=GOOD, headers={"X-API-Key": key}).status_code == 202
    store.down = True
    assert client.post("/v1/ratings", json=GOOD, headers={"X-API-Key": key}).status_code == 202
    unknown = "csk_0123456789_" + "u" * 32
    assert client.post("/v1/ratings", json=GOOD, headers={"X-API-Key": unknown}).status_code == 503
    lookups = store.lookups
    assert client.post("/v1/ratings", json=GOOD, headers={"X-API-Key": "garbage"}).status_code == 401
    assert store.lookups == lookups  # malformed keys never reach the database


# ---- rate limits --------------------------------------------------------------------------------


def test_per_ip_limit_answers_429_with_retry_after(fake: FakePublisher, store: MemoryStore) -> None:
    client = make_client(fake, store, rate_ip_per_s=0.5, rate_ip_burst=2)
    codes = [client.post("/v1/ratings", json=GOOD).status_code for _ in range(3)]
    assert codes == [202, 202, 429]
    r = client.post("/v1/ratings", json=GOOD)
    assert r.headers["content-type"].startswith("application/problem+json")
    assert int(r.headers["retry-after"]) >= 1
    assert len(fake.records) == 2


def test_per_key_limit_with_a_source_override(fake: FakePublisher, store: MemoryStore) -> None:
    client = make_client(fake, store, rate_key_per_s=1000, rate_key_burst=1000)
    slow = new_source(client, "slow", rate_per_s=0.1, rate_burst=1)
    fast = new_source(client, "fast")
    assert client.post("/v1/ratings", json=GOOD, headers={"X-API-Key": slow}).status_code == 202
    limited = client.post("/v1/ratings", json=GOOD, headers={"X-API-Key": slow})
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 9
    assert client.post("/v1/ratings", json=GOOD, headers={"X-API-Key": fast}).status_code == 202


def test_forwarded_for_is_believed_only_from_trusted_proxies(fake: FakePublisher, store: MemoryStore) -> None:
    client = make_client(fake, store, rate_ip_per_s=0.01, rate_ip_burst=1, trusted_proxies=["127.0.0.0/8"])
    # TestClient's peer is "testclient", not a trusted proxy: the header is ignored
    assert client.post("/v1/ratings", json=GOOD, headers={"X-Forwarded-For": "1.1.1.1"}).status_code == 202
    assert client.post("/v1/ratings", json=GOOD, headers={"X-Forwarded-For": "2.2.2.2"}).status_code == 429


# ---- CORS ---------------------------------------------------------------------------------------


def preflight(client: TestClient, origin: str) -> Any:
    return client.options(
        "/v1/ratings",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )


def test_cors_only_for_each_sources_origins(client: TestClient, fake: FakePublisher) -> None:
    shop = new_source(client, "shop", allowed_origins=["https://shop.example.com"])
    blog = new_source(client, "blog", allowed_origins=["https://blog.example.com"])

    ok = preflight(client, "https://shop.example.com")
    assert ok.status_code == 204
    assert ok.headers["access-control-allow-origin"] == "https://shop.example.com"
    assert "authorization" in ok.headers["access-control-allow-headers"]
    assert "access-control-allow-credentials" not in ok.headers
    unknown = preflight(client, "https://evil.example.net")
    assert unknown.status_code == 403 and "access-control-allow-origin" not in unknown.headers

    posted = client.post(
        "/v1/ratings", json=GOOD, headers={"Origin": "https://shop.example.com", "X-API-Key": shop}
    )
    assert posted.status_code == 202
    assert posted.headers["access-control-allow-origin"] == "https://shop.example.com"
    assert "retry-after" in posted.headers["access-control-expose-headers"]

    # the blog's key used from the shop's origin: refused, nothing recorded, no CORS headers
    wrong = client.post(
        "/v1/ratings", json=GOOD, headers={"Origin": "https://shop.example.com", "X-API-Key": blog}
    )
    assert wrong.status_code == 403 and wrong.json()["field"] == "Origin"
    assert "access-control-allow-origin" not in wrong.headers
    # anonymous dev posts have no allowed origins either
    assert (
        client.post("/v1/ratings", json=GOOD, headers={"Origin": "https://blog.example.com"}).status_code
        == 403
    )
    assert len(fake.records) == 1
    assert "*" not in str(posted.headers.get("access-control-allow-origin"))


def test_a_widget_page_can_read_its_429_and_retry_after(fake: FakePublisher, store: MemoryStore) -> None:
    client = make_client(fake, store, rate_ip_per_s=0.1, rate_ip_burst=1)
    key = new_source(client, "shop", allowed_origins=["https://shop.example.com"])
    headers = {"Origin": "https://shop.example.com", "X-API-Key": key}
    assert client.post("/v1/ratings", json=GOOD, headers=headers).status_code == 202
    limited = client.post("/v1/ratings", json=GOOD, headers=headers)
    assert limited.status_code == 429
    assert limited.headers["access-control-allow-origin"] == "https://shop.example.com"
    assert "retry-after" in limited.headers["access-control-expose-headers"]
    other = client.post("/v1/ratings", json=GOOD, headers={**headers, "Origin": "https://evil.example"})
    assert other.status_code == 429 and "access-control-allow-origin" not in other.headers


def test_same_origin_pages_may_post(client: TestClient) -> None:
    r = client.post("/v1/ratings", json=GOOD, headers={"Origin": "http://testserver"})
    assert r.status_code == 202


def test_openapi_documents_every_endpoint_with_problems_and_examples(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    assert "Problem" in doc["components"]["schemas"]
    expected = {
        ("post", "/v1/ratings"),
        ("post", "/v1/ratings/batch"),
        ("post", "/v1/sources"),
        ("get", "/v1/sources"),
        ("patch", "/v1/sources/{source_id}"),
        ("delete", "/v1/sources/{source_id}"),
        ("post", "/v1/sources/{source_id}/keys"),
        ("delete", "/v1/sources/{source_id}/keys/{key_id}"),
        ("post", "/v1/email-links"),
        ("get", "/v1/email/{token}"),
        ("post", "/v1/email/{token}"),
        ("post", "/v1/sms-surveys"),
        ("post", "/v1/inapp-surveys"),
        ("post", "/v1/widget/invitation"),
        ("post", "/v1/sms/twilio"),
        ("get", "/widget.js"),
    }
    found = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert expected <= found
    schemas = doc["components"]["schemas"]
    for method, path in expected:
        op = doc["paths"][path][method]
        assert op.get("summary"), (method, path)
        if path.startswith("/v1/") and path != "/v1/sms/twilio":
            problems = [c for c, r in op["responses"].items() if c.startswith(("4", "5"))]
            assert problems, (method, path)
        body = op.get("requestBody", {}).get("content", {})
        for media in body.values():
            schema = media.get("schema", {})
            refs = [schema.get("$ref", "")] + [x.get("$ref", "") for x in schema.get("anyOf", [])]
            ref = next((r for r in refs if r), "")
            model = schemas.get(ref.rsplit("/", 1)[-1], {}) if ref else {}
            assert media.get("example") or media.get("examples") or model.get("examples"), (method, path)
    assert doc["paths"]["/v1/ratings"]["post"]["responses"]["409"]["content"]["application/problem+json"]


_CASES: list[tuple[str, dict[str, Any]]] = [
    ("/v1/ratings", {"json": GOOD, "headers": {"Idempotency-Key": "same-1"}}),
    ("/v1/ratings", {"json": GOOD, "headers": {"Idempotency-Key": "same-1"}}),  # the replay
    ("/v1/ratings", {"json": {**GOOD, "score": 1}, "headers": {"Idempotency-Key": "same-1"}}),  # conflict
    ("/v1/ratings", {"json": GOOD, "headers": {"Idempotency-Key": "bad key!"}}),
    ("/v1/ratings", {"json": {**GOOD, "score": 9}}),
    ("/v1/ratings", {"json": {**GOOD, "customer": {}}}),
    ("/v1/ratings", {"json": [GOOD]}),
    ("/v1/ratings", {"content": b'{"metric": "csat", ', "headers": {"Content-Type": "application/json"}}),
    (
        "/v1/ratings",
        {"content": b"score=4", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
    ),
    ("/v1/ratings", {"json": {**GOOD, "rating_id": "a"}, "headers": {"Idempotency-Key": "b"}}),
    ("/v1/ratings", {"json": GOOD, "headers": {"Authorization": "Bearer sk_live_unknown"}}),
    ("/v1/ratings/batch", {"json": {"ratings": [GOOD, {**GOOD, "score": 11}, {"metric": "nps"}]}}),
    ("/v1/ratings/batch", {"json": {"ratings": [GOOD, GOOD]}, "headers": {"Idempotency-Key": "bk"}}),
    ("/v1/ratings/batch", {"json": {"ratings": [GOOD, GOOD]}, "headers": {"Idempotency-Key": "bk"}}),
    ("/v1/ratings/batch", {"json": {"ratings": []}}),
    ("/v1/ratings/batch", {"json": {"items": [GOOD]}}),
]


def _answers(fast_path: bool) -> list[tuple[int, Any, str | None, str | None]]:
    client = make_client(FakePublisher(), MemoryStore(), fast_path=fast_path)
    out = []
    for path, kw in _CASES:
        r = client.post(path, **kw)
        body = r.json()
        if r.status_code == 202 and "Idempotency-Key" not in kw.get("headers", {}):
            # Ids chosen by the server differ from run to run; everything else must not.
            for item in [body, *body.get("results", [])]:
                item.pop("rating_id", None)
        out.append((r.status_code, body, r.headers.get("content-type"), r.headers.get("idempotent-replayed")))
    return out


def test_the_fast_path_answers_exactly_as_fastapis_handler() -> None:
    """Well-formed requests skip FastAPI's dependency solving; every answer (202, replay, 409, 401, 422
    naming the field, batch results) is the same as FastAPI's own handler gives."""
    fast, standard = _answers(True), _answers(False)
    assert [a[0] for a in fast] == [
        202,
        202,
        409,
        422,
        422,
        422,
        422,
        422,
        422,
        422,
        401,
        202,
        202,
        202,
        422,
        422,
    ]
    assert fast == standard
    assert fast[3][1]["errors"][0]["field"] == "Idempotency-Key"
    assert fast[1][3] == "true" and fast[13][1]["results"][0]["replayed"] is True


@pytest.mark.parametrize("fast_path", [True, False])
def test_a_well_formed_rating_skips_fastapis_dependency_solving(
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
    assert client.post("/v1/ratings", json=GOOD, headers={"Idempotency-Key": "k-1"}).status_code == 202
    assert client.post("/v1/ratings/batch", json={"ratings": [GOOD]}).status_code == 202
    assert client.post("/v1/ratings", json={**GOOD, "customer": {}}).status_code == 422  # FastAPI's handler
    assert solved == (["/v1/ratings"] if fast_path else ["/v1/ratings", "/v1/ratings/batch", "/v1/ratings"])
