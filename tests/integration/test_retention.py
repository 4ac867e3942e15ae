"""Retention on PostgreSQL: each service's nightly purge removes comments and contact data past their
ages, leaves younger rows and every count alone, and changes nothing when run again."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.actions.repository.erasure import purge_expired as actions_purge
from services.collector.repository import purge_expired as collector_purge
from services.notifier.erasure_store import EXPIRED, NotifierErasure
from services.notifier.policy import AddressKeys
from services.scorer.repository.erasure import purge_expired as scorer_purge
from shared.db import make_engine
from shared.retention import Cutoffs, Purge, RetentionJob, purge_once
from shared.security.hashing import AddressHasher
from shared.settings import CommonSettings
from tests.helpers import make_settings

NOW = datetime(2026, 12, 5, 3, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=800)  # past both default ages (365 days for comments, 730 for contacts)
MID = NOW - timedelta(days=400)  # past the comment age only
NEW = NOW - timedelta(days=10)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    e = make_engine(database_url, pool_size=2)
    yield e
    await e.dispose()


async def run_sql(engine: AsyncEngine, statement: str, rows: list[dict[str, Any]]) -> None:
    async with engine.begin() as conn:
        for row in rows:
            await conn.execute(text(statement), row)


async def one(engine: AsyncEngine, statement: str, **params: Any) -> list[Any]:
    async with engine.connect() as conn:
        return list(await conn.execute(text(statement), params))


async def test_cutoffs_follow_the_settings() -> None:
    cfg = make_settings(CommonSettings, retention_comment_days=30, retention_contact_days=90)
    cut = Cutoffs.at(NOW, cfg)
    assert (NOW - cut.comments, NOW - cut.contacts) == (timedelta(days=30), timedelta(days=90))


async def test_scorer_drops_old_comments_and_keeps_every_rating(engine: AsyncEngine) -> None:
    await run_sql(
        engine,
        "INSERT INTO scorer.ratings (rating_id, metric, scale, score, sentiment, customer_id, comment, "
        "occurred_at, received_at) VALUES (:id, 'csat', '1-5', 2, 'negative', 'c1', :comment, :at, :at)",
        [
            {"id": "old", "comment": "old words", "at": MID},
            {"id": "new", "comment": "new words", "at": NEW},
        ],
    )
    cut = Cutoffs.at(NOW, make_settings(CommonSettings))
    assert await purge_once(engine, scorer_purge, cut, service="scorer") == {"scorer.ratings": 1}
    rows = await one(engine, "SELECT rating_id, comment FROM scorer.ratings ORDER BY rating_id")
    assert [tuple(r) for r in rows] == [("new", "new words"), ("old", None)]
    assert await purge_once(engine, scorer_purge, cut, service="scorer") == {"scorer.ratings": 0}


async def test_actions_drops_old_alert_text_addresses_and_timer_payloads(engine: AsyncEngine) -> None:
    alert = (
        "INSERT INTO actions.alerts (alert_id, rule_id, customer_id, owner_email, priority, note, "
        "context, created_at) VALUES (:id, 'r', 'c', 'csm@example.com', 'high', 'called her', "
        "CAST(:ctx AS jsonb), :at)"
    )
    context = json.dumps({"comment": "broken", "email": "a@example.com"})
    await run_sql(
        engine,
        alert,
        [{"id": "a-old", "ctx": context, "at": MID}, {"id": "a-new", "ctx": context, "at": NEW}],
    )
    customer = (
        "INSERT INTO actions.customers (customer_id, email, phone, updated_at) "
        "VALUES (:id, :email, '+33600', :at)"
    )
    await run_sql(
        engine,
        customer,
        [
            {"id": "gone", "email": "gone@example.com", "at": OLD},  # silent for 800 days
            {"id": "rated", "email": "rated@example.com", "at": OLD},  # old record, rated last week
            {"id": "fresh", "email": "fresh@example.com", "at": NEW},
        ],
    )
    await run_sql(
        engine,
        "INSERT INTO actions.ratings (rating_id, customer_id, metric, scale, score, normalized, sentiment, "
        "occurred_at) VALUES ('r1', 'rated', 'csat', '1-5', 4, 0.75, 'positive', :at)",
        [{"at": NEW}],
    )
    timer = (
        "INSERT INTO actions.timers (timer_id, kind, customer_id, due_at, payload, status) "
        "VALUES (:id, 'sla', 'c', :at, CAST(:p AS jsonb), :status)"
    )
    payload = json.dumps({"email": "a@example.com"})
    await run_sql(
        engine,
        timer,
        [
            {"id": "t-fired", "at": OLD, "p": payload, "status": "fired"},
            {"id": "t-pending", "at": OLD, "p": payload, "status": "pending"},  # still due: kept whole
            {"id": "t-recent", "at": NEW, "p": payload, "status": "fired"},
        ],
    )
    cut = Cutoffs.at(NOW, make_settings(CommonSettings))
    removed = await purge_once(engine, actions_purge, cut, service="actions")
    assert removed == {"actions.alerts": 1, "actions.customers": 1, "actions.timers": 1}
    alerts = await one(engine, "SELECT alert_id, note, context FROM actions.alerts ORDER BY alert_id")
    assert [(a.alert_id, a.note, a.context) for a in alerts] == [
        ("a-new", "called her", json.loads(context)),
        ("a-old", None, {}),
    ]
    customers = await one(engine, "SELECT customer_id, email, phone FROM actions.customers ORDER BY 1")
    assert [tuple(c) for c in customers] == [
        ("fresh", "fresh@example.com", "+33600"),
        ("gone", None, None),
        ("rated", "rated@example.com", "+33600"),
    ]
    timers = await one(engine, "SELECT timer_id, payload FROM actions.timers ORDER BY 1")
    assert [tuple(t) for t in timers] == [
        ("t-fired", {}),
        ("t-pending", json.loads(payload)),
        ("t-recent", json.loads(payload)),
    ]
    assert sum((await purge_once(engine, actions_purge, cut, service="actions")).values()) == 0


async def test_notifier_drops_old_requests_and_outbox_copies(engine: AsyncEngine, tmp_path: Path) -> None:
    delivery = (
        "INSERT INTO notifier.deliveries (notification_id, channel, provider, status, request, last_error, "
        "updated_at) VALUES (:id, 'email', 'outbox', :status, CAST(:req AS jsonb), 'bounced', :at)"
    )
    request = json.dumps({"recipient": {"email": "a@example.com"}})
    await run_sql(
        engine,
        delivery,
        [
            {"id": "n-old", "status": "sent", "req": request, "at": OLD},
            {"id": "n-waiting", "status": "pending", "req": request, "at": OLD},  # still to send
            {"id": "n-new", "status": "sent", "req": request, "at": NEW},
        ],
    )
    outbox = (
        "INSERT INTO notifier.outbox (notification_id, channel, recipient, subject, body, created_at) "
        "VALUES (:id, 'email', 'a@example.com', 'Sorry', 'You wrote: broken', :at)"
    )
    await run_sql(engine, outbox, [{"id": "n-old", "at": MID}, {"id": "n-new", "at": NEW}])
    for nid in ("n-old", "n-new"):
        (tmp_path / f"{nid}.txt").write_text("To: a@example.com\n\nYou wrote: broken\n")
    privacy = NotifierErasure(keys=AddressKeys(AddressHasher([SecretStr("k" * 32)])), outbox_dir=tmp_path)
    cut = Cutoffs.at(NOW, make_settings(CommonSettings))
    removed = await purge_once(engine, privacy.purge_expired, cut, service="notifier")
    assert removed == {"notifier.deliveries": 1, "notifier.outbox": 1, "outbox files": 1}
    deliveries = await one(
        engine, "SELECT notification_id, request IS NULL AS gone FROM notifier.deliveries ORDER BY 1"
    )
    assert [tuple(d) for d in deliveries] == [("n-new", False), ("n-old", True), ("n-waiting", False)]
    copies = await one(engine, "SELECT notification_id, recipient, body FROM notifier.outbox ORDER BY 1")
    assert [tuple(c) for c in copies] == [
        ("n-new", "a@example.com", "You wrote: broken"),
        ("n-old", EXPIRED, EXPIRED),
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n-new.txt"]  # noqa: ASYNC240 - a test's tmp dir
    assert sum((await purge_once(engine, privacy.purge_expired, cut, service="notifier")).values()) == 0


async def test_collector_drops_expired_sms_requests_and_the_nightly_job_runs_the_purge(
    engine: AsyncEngine,
) -> None:
    await run_sql(
        engine,
        "INSERT INTO collector.sms_surveys (request_id, phone_hash, customer_id, metric, scale, expires_at) "
        "VALUES (:id, :h, 'c', 'csat', '1-5', :at)",
        [{"id": "s-old", "h": b"\x01" * 32, "at": OLD}, {"id": "s-new", "h": b"\x02" * 32, "at": NEW}],
    )
    purge: Purge = collector_purge
    job = RetentionJob(
        service="collector",
        engine=engine,
        purge=purge,
        settings=make_settings(CommonSettings),
        clock=lambda: NOW,
    )
    assert await job.run_now() == {"collector.sms_surveys": 1, "collector.inapp_surveys": 0}
    left = await one(engine, "SELECT request_id FROM collector.sms_surveys")
    assert [r.request_id for r in left] == ["s-new"]


def test_csat_retention_runs_one_service_now(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    from services.cli.commands import main

    async def seed() -> None:
        e = make_engine(database_url, pool_size=1)
        try:
            await run_sql(
                e,
                "INSERT INTO scorer.ratings (rating_id, metric, scale, score, sentiment, customer_id, "
                "comment, occurred_at, received_at) "
                "VALUES ('r', 'csat', '1-5', 2, 'negative', 'c', 'old words', :at, :at)",
                [{"at": datetime.now(UTC) - timedelta(days=40)}],
            )
        finally:
            await e.dispose()

    asyncio.run(seed())
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("CSAT_ENVIRONMENT", "test")
    monkeypatch.setenv("CSAT_RETENTION_COMMENT_DAYS", "30")
    assert main(["retention", "scorer"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {
        "removed": {"scorer.ratings": 1},
        "service": "scorer",
    }
