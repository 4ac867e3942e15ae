"""The abuse case of the Trust issue, on the real broker and PostgreSQL with the four services' handlers.

A widget's publishable key is public. Someone holding it posts 1,000 ratings (batches and single
posts) naming an outside email address and phone, consent to contact and review, and a strategic,
high-value account. Every rating counts in the scores; none of them may make the platform write to
that address, send an SMS, or raise a high-priority alert. The same customer, vouched for by the
site's server (a valid identity proof) and known to the CRM (customers API), gets exactly what the
default playbook gives its score, at the CRM's address. And someone holding a *secret* key who
rotates customer ids still gets no more than the daily cap per address to one inbox.

The figures are printed (``FIGURES abuse: ...``) for the issue's note.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from services.actions.bootstrap import create_app as create_actions
from services.actions.settings import ActionsSettings
from services.collector.bootstrap import create_app as create_collector
from services.collector.settings import CollectorSettings
from services.notifier.bootstrap import create_app as create_notifier
from services.notifier.settings import NotifierSettings
from services.scorer.bootstrap import create_app as create_scorer
from services.scorer.settings import ScorerSettings
from shared.events import NotificationRequested
from shared.identity.sourcekeys import sign_customer
from shared.topics import Topics
from tests.helpers import events_to_end, make_settings, read_events, running, wait_for
from tests.infra import Infra
from tests.integration.notifier_support import FINAL, query

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": "Bearer dev-admin-key"}
OUTSIDER = "victim@outside.example"
OUTSIDER_PHONE = "+33699999999"
TARGET = "cus-42"  # a real customer the attacker also names
CRM_EMAIL = "ana@crm.example"
OWNER = "owner@example.com"


@dataclass
class Stack:
    collector: httpx.AsyncClient
    actions: httpx.AsyncClient
    database_url: str
    topics: Topics
    infra: Infra


@asynccontextmanager
async def stack(infra: Infra, database_url: str, topics: Topics) -> AsyncIterator[Stack]:
    """Collector, scorer, actions and notifier in this process, each with its consumer and database."""
    common: dict[str, Any] = {
        "kafka_bootstrap": infra.bootstrap,
        "database_url": database_url,
        "topic_prefix": topics.prefix,
        "environment": "test",
    }
    async with AsyncExitStack() as apps:
        collector = await apps.enter_async_context(
            running(create_collector(make_settings(CollectorSettings, **common, require_api_key=True)))
        )
        await apps.enter_async_context(running(create_scorer(make_settings(ScorerSettings, **common))))
        actions = await apps.enter_async_context(
            running(create_actions(make_settings(ActionsSettings, **common, timer_poll_s=0.5)))
        )
        notifier_cfg = make_settings(
            NotifierSettings, **common, dispatch_interval_s=0.05, quiet_hours="off"
        )  # every channel on the outbox provider: what it holds is everything that was sent
        await apps.enter_async_context(running(create_notifier(notifier_cfg)))
        yield Stack(collector, actions, database_url, topics, infra)


def claims(rid: str, customer: str, score: int, **extra: Any) -> dict[str, Any]:
    """Every claim the issue lists: an outside address and phone, consent, a strategic account."""
    return {
        "rating_id": rid,
        "metric": "csat",
        "scale": "1-5",
        "score": score,
        "customer": {"id": customer, "email": OUTSIDER, "phone": OUTSIDER_PHONE, **extra},
        "segment": {"store": "paris-1", "channel": "web"},
        "consent": {"contact": True, "review": True},
        "account": {"id": "acc-big", "tier": "strategic", "value": 2_000_000},
    }


async def _keys(s: Stack) -> tuple[str, str, str]:
    """The site's publishable and secret keys, and the identity secret its server signs customers with."""
    made = await s.collector.post("/v1/sources", json={"source_id": "shop", "name": "Shop"}, headers=ADMIN)
    assert made.status_code == 201, made.text
    secret = await s.collector.post("/v1/sources/shop/keys", json={"kind": "secret"}, headers=ADMIN)
    identity = await s.collector.post("/v1/sources/shop/identity-secret", headers=ADMIN)
    return made.json()["key"]["key"], secret.json()["key"], identity.json()["identity_secret"]


async def _attack(s: Stack, pk: str) -> int:
    """1,000 ratings with a publishable key: 800 in batches of 200, 200 one by one."""
    sent = 0
    customers = [TARGET] + [f"cus-rand-{i}" for i in range(99)]
    for b in range(4):
        batch = [claims(f"atk-{b}-{i}", customers[i % 100], 1 + i % 5) for i in range(200)]
        r = await s.collector.post("/v1/ratings/batch", json={"ratings": batch}, headers={"X-API-Key": pk})
        assert r.status_code == 202 and r.json()["accepted"] == 200, r.text
        sent += 200
    for i in range(200):
        r = await s.collector.post(
            "/v1/ratings",
            json=claims(f"atk-single-{i}", customers[i % 100], 1 + i % 2),
            headers={"X-API-Key": pk},
        )
        assert r.status_code == 202, r.text
        sent += 1
    return sent


async def _count(s: Stack, sql: str, **params: Any) -> int:
    return int((await query(s.database_url, sql, **params))[0]["n"])


async def _everything_decided(s: Stack, ratings: int) -> None:
    """Both consumers took every rating (the scorer stores each once, the actions too)."""

    async def counts() -> tuple[int, int]:
        scored = await _count(s, "SELECT count(*) AS n FROM scorer.ratings")
        decided = await _count(s, "SELECT count(*) AS n FROM actions.ratings")
        return scored, decided

    await wait_for(counts, until=lambda c: c == (ratings, ratings), timeout_s=120, every_s=0.5)


async def _to_address(s: Stack, address: str) -> tuple[int, int]:
    """Deliveries requested for ``address`` (any channel, any provider) and outbox messages sent to it."""
    requested = await _count(
        s,
        "SELECT count(*) AS n FROM notifier.deliveries WHERE request->'recipient'->>'email' = :a "
        "OR request->'recipient'->>'phone' = :a",
        a=address,
    )
    outbox = await _count(
        s, "SELECT count(*) AS n FROM notifier.outbox WHERE lower(recipient) = :a", a=address
    )
    return requested, outbox


async def test_a_publishable_key_reaches_nobody_and_the_proven_customer_gets_the_playbook(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    async with stack(infra, database_url, topics) as s:
        pk, sk, identity_secret = await _keys(s)
        crm = {"email": CRM_EMAIL, "owner_email": OWNER, "consent": {"contact": True, "review": True}}
        assert (await s.actions.put(f"/v1/customers/{TARGET}", json=crm, headers=ADMIN)).status_code == 200

        started = time.monotonic()
        attacked = await _attack(s, pk)
        await _everything_decided(s, attacked)
        attack_s = time.monotonic() - started

        # -- the attack: counted, and nothing else ------------------------------------------------------
        # Every rating decided, each with its requests published before its offsets were stored: complete.
        requests = await events_to_end(infra.bootstrap, topics.notifications)
        alerts = await _count(s, "SELECT count(*) AS n FROM actions.alerts")
        high = await _count(s, "SELECT count(*) AS n FROM actions.alerts WHERE priority = 'high'")
        timers = await _count(s, "SELECT count(*) AS n FROM actions.timers")
        sms = await _count(s, "SELECT count(*) AS n FROM notifier.deliveries WHERE channel = 'sms'")
        to_outsider = await _to_address(s, OUTSIDER)
        to_phone = await _to_address(s, OUTSIDER_PHONE)
        skipped = Counter(
            r["outcome"] for r in await query(database_url, "SELECT outcome FROM actions.decisions")
        )
        assert requests == []  # not one message was even asked for
        assert (alerts, high, timers, sms) == (0, 0, 0, 0)
        assert to_outsider == (0, 0) and to_phone == (0, 0)
        assert set(skipped) <= {"skipped_unverified_customer"}

        # -- the same customer, vouched for by the site's server ------------------------------------------
        proof = sign_customer(
            identity_secret=identity_secret, customer_id=TARGET, expires_at=int(time.time()) + 600
        )
        proven = claims("proven-1", TARGET, 1, proof=proof)
        assert (
            await s.collector.post("/v1/ratings", json=proven, headers={"X-API-Key": pk})
        ).status_code == 202
        await _everything_decided(s, attacked + 1)
        decisions = {
            r["rule_id"]: r["outcome"]
            for r in await query(
                database_url, "SELECT rule_id, outcome FROM actions.decisions WHERE rating_id = 'proven-1'"
            )
        }
        # What the default playbook gives a 1/5 without a comment, for a customer the CRM knows as not
        # strategic, who agreed to contact and reviews: no churn alert (the typed-in low scores are
        # not this customer's), no strategic SLA (the claimed tier is not a fact).
        assert decisions == {
            "low-score-csm-alert": "notified",
            "low-score-customer-email": "notified",
            "low-score-resurvey": "scheduled",
            "low-value-education": "scheduled",
            "review-invitation": "scheduled",
        }

        async def sent_for_target() -> list[dict[str, Any]]:
            return await query(
                database_url,
                "SELECT d.notification_id, d.status, d.rule_id, o.recipient, "
                "d.request->>'priority' AS priority FROM notifier.deliveries d "
                "LEFT JOIN notifier.outbox o USING (notification_id) "
                "WHERE d.customer_id = :c",
                c=TARGET,
            )

        rows = await wait_for(
            sent_for_target,
            until=lambda r: len(r) == 2 and all(x["status"] in FINAL for x in r),
            timeout_s=60,
        )
        assert sorted((r["rule_id"], r["status"], r["recipient"], r["priority"]) for r in rows) == [
            ("low-score-csm-alert", "sent", OWNER, "normal"),
            ("low-score-customer-email", "sent", CRM_EMAIL, "normal"),
        ]
        requested = [e.data for e in await read_events(infra.bootstrap, topics.notifications, count=2)]
        assert all(isinstance(n, NotificationRequested) and n.source == "shop" for n in requested)
        assert await _to_address(s, OUTSIDER) == (0, 0)

        # -- a leaked secret key, rotating customer ids: the cap per address holds -------------------------
        rotated = [
            {
                **claims(f"sk-{i}", f"cus-rotated-{i}", 5),
                "customer": {"id": f"cus-rotated-{i}", "email": OUTSIDER},
            }
            for i in range(20)
        ]
        r = await s.collector.post("/v1/ratings/batch", json={"ratings": rotated}, headers={"X-API-Key": sk})
        assert r.status_code == 202 and r.json()["accepted"] == 20

        async def thanked() -> list[dict[str, Any]]:
            return await query(
                database_url,
                "SELECT status, reason FROM notifier.deliveries WHERE rule_id = 'promoter-thank-you'",
            )

        thanks = await wait_for(
            thanked, until=lambda t: len(t) == 20 and all(x["status"] in FINAL for x in t), timeout_s=60
        )
        outcome = Counter((t["status"], t["reason"]) for t in thanks)
        assert outcome == {("sent", None): 3, ("suppressed", "address_cap"): 17}
        assert (await _to_address(s, OUTSIDER))[1] == 3
        scored = await _count(s, "SELECT count(*) AS n FROM scorer.ratings")

    print(
        f"FIGURES abuse: publishable_posts={attacked} (800 in 4 batches + 200 single) in {attack_s:.1f}s "
        f"scored={scored} requests_from_attack={len(requests)} messages_to_outsider={to_outsider[1]} "
        f"sms={sms} csm_alerts={alerts} high_priority_alerts={high} "
        f"proven_customer_messages={len(rows)} rotated_secret_key_thanks_sent={outcome[('sent', None)]} "
        f"suppressed_by_address_cap={outcome[('suppressed', 'address_cap')]}"
    )
