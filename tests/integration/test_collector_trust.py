"""The collector's credentials on the real broker and PostgreSQL: what each kind of key may make of a rating.

Publishable keys post claims (contact, consent, account kept apart, never acted on), secret keys and
API tokens post facts, a customer id from a page counts as that customer's only with the site's
server's proof, and a batch costs one rate-limit token per rating.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from services.collector.bootstrap import create_app
from services.collector.settings import DEV_SIGNING_SECRET, CollectorSettings
from services.collector.sms import compute_signature
from shared.db import make_engine
from shared.events import Identity, KeyKind, RatingSubmitted
from shared.identity.apitokens import generate_api_token
from shared.identity.config import DEV_ADDRESS_HASH_KEY
from shared.identity.ports import NewTokenRecord
from shared.identity.repository import PgIdentityStore
from shared.identity.scopes import Role, Scope
from shared.identity.sourcekeys import sign_customer
from shared.security.hashing import AddressHasher
from shared.topics import Topics
from tests.helpers import make_settings, read_events, running
from tests.infra import Infra

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": "Bearer dev-admin-key"}
TWILIO = "integration-twilio-token"
CLAIMS: dict[str, Any] = {
    "consent": {"contact": True, "review": True},
    "account": {"id": "acc-x", "tier": "strategic", "value": 500000},
}


def settings(infra: Infra, topics: Topics, database_url: str, **kw: Any) -> CollectorSettings:
    return make_settings(
        CollectorSettings,
        kafka_bootstrap=infra.bootstrap,
        topic_prefix=topics.prefix,
        database_url=database_url,
        require_api_key=True,
        key_cache_s=0,
        twilio_auth_token=TWILIO,
        public_url="https://collect.example.com",
        **kw,
    )


def rating(rid: str, customer: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {
        "rating_id": rid,
        "metric": "csat",
        "scale": "1-5",
        "score": 1,
        "customer": customer,
        **CLAIMS,
        **kw,
    }


async def _source_with_keys(client: httpx.AsyncClient) -> tuple[str, str]:
    created = await client.post("/v1/sources", json={"source_id": "shop", "name": "Shop"}, headers=ADMIN)
    assert created.status_code == 201 and created.json()["key"]["kind"] == "publishable"
    secret = await client.post("/v1/sources/shop/keys", json={"kind": "secret"}, headers=ADMIN)
    assert secret.status_code == 201 and secret.json()["kind"] == "secret"
    pk, sk = created.json()["key"]["key"], secret.json()["key"]
    assert pk.startswith("pk_") and sk.startswith("sk_")
    return pk, sk


async def test_publishable_keys_post_claims_and_proven_customers_secret_keys_post_facts(
    infra: Infra, topics: Topics, database_url: str
) -> None:
    async with running(create_app(settings(infra, topics, database_url))) as client:
        pk, sk = await _source_with_keys(client)
        listed = (await client.get("/v1/sources/shop/keys", headers=ADMIN)).json()["keys"]
        assert sorted(k["kind"] for k in listed) == ["publishable", "secret"]
        issued = (await client.post("/v1/sources/shop/identity-secret", headers=ADMIN)).json()
        assert issued["version"] == 1 and issued["identity_secret"].startswith("sis_")
        expires = int(time.time()) + 3600
        proof = sign_customer(
            identity_secret=issued["identity_secret"], customer_id="cus-1", expires_at=expires
        )
        outsider = {"id": "cus-1", "email": "outsider@evil.example", "phone": "+33699999999"}
        for rid, key, customer in (
            ("anon-1", pk, outsider),
            ("proven-1", pk, {**outsider, "proof": proof}),
            ("server-1", sk, outsider),
        ):
            posted = await client.post("/v1/ratings", json=rating(rid, customer), headers={"X-API-Key": key})
            assert posted.status_code == 202, posted.text
        forged = await client.post(
            "/v1/ratings", json=rating("forged", {"id": "cus-2", "proof": proof}), headers={"X-API-Key": pk}
        )
        assert forged.status_code == 422 and forged.json()["field"] == "customer.proof"

        rotated = (
            await client.post("/v1/sources/shop/identity-secret", json={"rotate": True}, headers=ADMIN)
        ).json()
        assert rotated["version"] == 2 and rotated["identity_secret"] != issued["identity_secret"]
        assert rotated["previous_valid_until"] is not None
        # Pages still showing proofs signed with the previous secret keep working during the grace period.
        batch = await client.post(
            "/v1/ratings/batch",
            json={
                "ratings": [
                    rating("batch-old-proof", {"id": "cus-1", "proof": proof}),
                    rating("batch-bad", {"id": "cus-1", "proof": "v1.1.00"}),
                ]
            },
            headers={"X-API-Key": pk},
        )
        results = batch.json()["results"]
        assert (batch.status_code, results[0]["status"], results[1]["status"]) == (
            202,
            "accepted",
            "rejected",
        )
        assert results[1]["errors"][0]["field"] == "ratings[1].customer.proof"

    events = {e.id: e.data for e in await read_events(infra.bootstrap, topics.ratings, count=4)}
    assert all(isinstance(e, RatingSubmitted) for e in events.values())
    anon, proven, server, old = (events[k] for k in ("anon-1", "proven-1", "server-1", "batch-old-proof"))
    assert isinstance(anon, RatingSubmitted) and anon.provenance is not None
    assert (anon.provenance.key_kind, anon.provenance.identity) == (KeyKind.PUBLISHABLE, Identity.CLAIMED)
    assert anon.customer.email is None and anon.account is None and not anon.consent.contact
    assert anon.claims is not None and anon.claims.email == "outsider@evil.example"
    assert isinstance(proven, RatingSubmitted) and proven.provenance is not None
    assert proven.provenance.identity is Identity.VERIFIED and proven.customer.email is None
    assert isinstance(old, RatingSubmitted) and old.customer_verified
    assert isinstance(server, RatingSubmitted) and server.provenance is not None
    assert server.provenance.key_kind is KeyKind.SECRET and server.claims is None
    assert server.customer.email == "outsider@evil.example" and server.account is not None
    assert server.account.tier == "strategic" and server.consent.contact


async def _token(engine: AsyncEngine, scopes: frozenset[Scope]) -> str:
    new = generate_api_token()
    record = NewTokenRecord(
        token_id=new.token_id,
        name="crm-sync",
        role=Role.ADMIN,
        scopes=scopes,
        created_by="test",
        expires_at=datetime.now(UTC) + timedelta(days=1),
    )
    await PgIdentityStore(engine=engine).add_token(token=record, token_hash=new.token_hash)
    return new.secret


async def test_api_tokens_with_ratings_write_post_facts_and_others_are_refused(
    infra: Infra, topics: Topics, database_url: str
) -> None:
    engine = make_engine(database_url)
    try:
        writer = await _token(engine, frozenset({Scope.RATINGS_WRITE}))
        reader = await _token(engine, frozenset({Scope.SCORES_READ}))
    finally:
        await engine.dispose()
    async with running(create_app(settings(infra, topics, database_url))) as client:
        body = rating("tok-1", {"id": "cus-7", "email": "ana@example.com"})
        ok = await client.post("/v1/ratings", json=body, headers={"Authorization": f"Bearer {writer}"})
        assert ok.status_code == 202, ok.text
        under = await client.post("/v1/ratings", json=body, headers={"Authorization": f"Bearer {reader}"})
        assert under.status_code == 403 and "ratings:write" in under.json()["detail"]
        unknown = await client.post(
            "/v1/ratings", json=body, headers={"Authorization": f"Bearer {writer[:-4]}AAAA"}
        )
        assert unknown.status_code == 401
        browser = await client.post(
            "/v1/ratings",
            json=rating("tok-2", {"id": "cus-7"}),
            headers={"Authorization": f"Bearer {writer}", "Origin": "https://shop.example.com"},
        )
        assert browser.status_code == 403  # a token belongs on a server, never in a page
    (event,) = await read_events(infra.bootstrap, topics.ratings, count=1)
    assert isinstance(event.data, RatingSubmitted) and event.data.provenance is not None
    assert event.data.provenance.key_kind is KeyKind.TOKEN and event.data.customer.email == "ana@example.com"
    assert event.data.source is not None and event.data.source.startswith("token:")


async def test_a_batch_costs_one_rate_limit_token_per_rating(
    infra: Infra, topics: Topics, database_url: str
) -> None:
    cfg = settings(infra, topics, database_url, rate_key_per_s=1, rate_key_burst=10)
    async with running(create_app(cfg)) as client:
        pk, _ = await _source_with_keys(client)
        items = [rating(f"b-{i}", {"id": f"cus-{i}"}) for i in range(10)]
        first = await client.post("/v1/ratings/batch", json={"ratings": items}, headers={"X-API-Key": pk})
        assert first.status_code == 202 and first.json()["accepted"] == 10
        after = await client.post(
            "/v1/ratings", json=rating("one-more", {"id": "c"}), headers={"X-API-Key": pk}
        )
        assert after.status_code == 429 and int(after.headers["retry-after"]) >= 1


async def test_sms_surveys_are_keyed_with_the_address_hash_key_and_old_ones_still_match(
    infra: Infra, topics: Topics, database_url: str
) -> None:
    async with running(create_app(settings(infra, topics, database_url))) as client:
        made = await client.post(
            "/v1/sms-surveys", json={"phone": "+33611111111", "customer": {"id": "cus-new"}}, headers=ADMIN
        )
        assert made.status_code == 201
        conn = await asyncpg.connect(database_url)
        try:
            stored = await conn.fetchval("SELECT phone_hash FROM collector.sms_surveys")
            # A survey sent by an earlier release: its number keyed with the signing secret.
            await conn.execute(
                "INSERT INTO collector.sms_surveys (request_id, phone_hash, customer_id, metric, scale, "
                "expires_at) VALUES ('old-1', $1, 'cus-old', 'csat', '1-5', now() + interval '1 day')",
                _legacy_hash("+33622222222"),
            )
        finally:
            await conn.close()
        assert bytes(stored) == bytes.fromhex(AddressHasher([DEV_ADDRESS_HASH_KEY]).phone("+33611111111"))
        for phone in ("+33611111111", "+33622222222"):
            params = {"MessageSid": "SM1", "From": phone, "To": "+33700000000", "Body": "4"}
            signature = compute_signature(
                TWILIO, "https://collect.example.com/v1/sms/twilio", list(params.items())
            )
            answer = await client.post(
                "/v1/sms/twilio", data=params, headers={"X-Twilio-Signature": signature}
            )
            assert answer.status_code == 200 and "Thank" in answer.text
    events = await read_events(infra.bootstrap, topics.ratings, count=2)
    assert sorted(e.data.customer.id for e in events if isinstance(e.data, RatingSubmitted)) == [
        "cus-new",
        "cus-old",
    ]


def _legacy_hash(phone: str) -> bytes:
    """How releases before the address-hash key stored a number: keyed with the signing secret."""
    return hmac.new(DEV_SIGNING_SECRET.encode(), b"phone:" + phone.encode(), hashlib.sha256).digest()
