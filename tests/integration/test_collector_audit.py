"""The collector's admin changes are audited (``identity.audit_log``): sources, keys, identity secrets
(read and rotated) and survey sends, with who and from where, and no personal data: customers by their
keyed hash, never an id, email or phone; source settings by name, never their values."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from services.collector.bootstrap import create_app
from shared.db import make_engine
from shared.identity.scopes import Scope
from shared.topics import Topics
from tests.helpers import running
from tests.infra import Infra
from tests.integration.test_collector_trust import _token, settings

pytestmark = pytest.mark.integration

PHONE = "+33612340077"
CUSTOMER = "cus-audit-4471"


async def _entries(database_url: str, since: datetime) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT actor, action, service, outcome, target, host(source_ip) AS ip, details::text AS details "
            "FROM identity.audit_log WHERE service = 'collector' AND at >= $1 ORDER BY audit_id",
            since,
        )
    finally:
        await conn.close()
    return [dict(r) for r in rows]


async def test_source_key_secret_and_survey_changes_are_audited_without_personal_data(
    infra: Infra, topics: Topics, database_url: str
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    engine = make_engine(database_url)
    try:
        token = await _token(engine, frozenset({Scope.SOURCES_ADMIN, Scope.SURVEYS_ADMIN}))
    finally:
        await engine.dispose()
    auth = {"Authorization": f"Bearer {token}"}
    sid = f"audit-{uuid.uuid4().hex[:8]}"
    async with running(create_app(settings(infra, topics, database_url))) as client:
        created = await client.post("/v1/sources", json={"source_id": sid, "name": "Shop"}, headers=auth)
        assert created.status_code == 201
        patch = {"allowed_origins": ["https://private-shop.example.com"], "disabled": True}
        assert (await client.patch(f"/v1/sources/{sid}", json=patch, headers=auth)).status_code == 200
        key = await client.post(f"/v1/sources/{sid}/keys", json={"kind": "secret"}, headers=auth)
        assert key.status_code == 201
        key_id = key.json()["key_id"]
        assert (await client.delete(f"/v1/sources/{sid}/keys/{key_id}", headers=auth)).status_code == 204
        secret = f"/v1/sources/{sid}/identity-secret"
        assert (await client.post(secret, headers=auth)).status_code == 200
        assert (await client.post(secret, json={"rotate": True}, headers=auth)).status_code == 200
        customer = {"id": CUSTOMER, "email": "audit.person@example.com", "locale": "fr"}
        link = {"survey_id": "s-1", "metric": "csat", "customer": customer}
        assert (await client.post("/v1/email-links", json=link, headers=auth)).status_code == 201
        sms = {"phone": PHONE, "survey_id": "s-2", "customer": {"id": CUSTOMER, "locale": "fr"}}
        assert (await client.post("/v1/sms-surveys", json=sms, headers=auth)).status_code == 201
        assert (await client.delete(f"/v1/sources/{sid}", headers=auth)).status_code == 204
        # A refused call changes nothing and is not an entry.
        assert (await client.delete(f"/v1/sources/{sid}", headers=auth)).status_code == 404
    entries = await _entries(database_url, since)
    mine = [e for e in entries if e["target"] == f"source:{sid}" or e["target"].startswith("customer#")]
    assert [(e["action"], e["target"].split("#")[0]) for e in mine] == [
        ("source.create", f"source:{sid}"),
        ("source_key.create", f"source:{sid}"),  # the first key, made with the source
        ("source.update", f"source:{sid}"),
        ("source_key.create", f"source:{sid}"),
        ("source_key.revoke", f"source:{sid}"),
        ("source.update", f"source:{sid}"),  # identity secret read
        ("source.update", f"source:{sid}"),  # identity secret rotated
        ("survey.send", "customer"),
        ("survey.send", "customer"),
        ("source.delete", f"source:{sid}"),
    ]
    assert len({e["actor"] for e in mine}) == 1 and mine[0]["actor"]
    assert all(e["outcome"] == "ok" and e["ip"] for e in mine)
    assert '"key_id": "' + key_id in mine[3]["details"] and '"kind": "secret"' in mine[3]["details"]
    assert '"changed": "allowed_origins,disabled"' in mine[2]["details"]
    assert '"identity_secret": "read"' in mine[5]["details"]
    assert '"identity_secret": "rotated"' in mine[6]["details"] and '"version": 2' in mine[6]["details"]
    assert '"channel": "email"' in mine[7]["details"] and '"channel": "sms"' in mine[8]["details"]
    assert mine[7]["target"] == mine[8]["target"]  # one customer, one keyed hash
    text = repr(mine)
    for personal in (CUSTOMER, PHONE, "33612340077", "audit.person", "private-shop"):
        assert personal not in text
