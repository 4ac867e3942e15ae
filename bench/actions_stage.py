"""Actions throughput on the real (embedded) broker and PostgreSQL: ratings decided per second, and
timers fired per second. Run: ``.venv/bin/python -m bench.actions_stage [ratings] [timers]``.

Ratings use the default playbook (every rule type fires: alerts with SLA timers, apology emails,
re-surveys, nurture enrolments, theme routing, review invitations) over 2,000 customers, a third with
a comment; decisions per second is ratings stored and decided over the wall time from the consumer's
start to the last decision.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

from services.actions.bootstrap import create_app
from services.actions.engine import Policy
from services.actions.repository import PgTransactions
from services.actions.scheduler import Scheduler
from services.actions.settings import ActionsSettings
from services.collector.domain import RatingIn, normalize
from services.collector.intake import to_record
from shared.db import make_engine
from shared.kafka import make_producer
from tests.helpers import make_settings, produce, running
from tests.infra import new_database, new_topics, start_infra

COMMENTS = [
    "Livraison en retard, très déçu",
    "The staff was rude and the price too high",
    "Great service, thank you",
    "Le produit ne fonctionne pas",
    None,
    None,
]


async def ratings_per_second(infra: Any, url: str, topics: Any, n: int) -> None:
    rnd = random.Random(7)
    records = []
    for i in range(n):
        body = {
            "rating_id": f"b-{i}",
            "metric": "csat",
            "scale": "1-5",
            "score": rnd.choice([1, 2, 3, 4, 5, 5]),
            "customer": {"id": f"c-{rnd.randrange(2000)}", "email": f"c{i}@example.com"},
            "segment": {"store": f"s-{rnd.randrange(20)}"},
            "account": {"tier": rnd.choice(["smb", "smb", "strategic"])},
            "consent": {"contact": rnd.random() < 0.8, "review": rnd.random() < 0.5},
        }
        comment = rnd.choice(COMMENTS)
        if comment:
            body["comment"] = comment
        records.append(
            to_record(
                normalize(RatingIn.model_validate(body), received_at=datetime.now(UTC)), topic=topics.ratings
            )
        )
    await produce(infra.bootstrap, records)
    cfg = make_settings(
        ActionsSettings,
        kafka_bootstrap=infra.bootstrap,
        database_url=url,
        topic_prefix=topics.prefix,
        log_level="WARNING",
        scheduler_enabled=False,
    )
    engine = make_engine(url)
    app = create_app(cfg)
    async with running(app):
        started = None
        while True:
            async with engine.connect() as conn:
                done = int((await conn.execute(text("SELECT count(*) FROM actions.ratings"))).scalar_one())
            if done and started is None:
                started = time.perf_counter()
            if done >= n:
                break
            await asyncio.sleep(0.05)
        assert started is not None
        elapsed = time.perf_counter() - started
        async with engine.connect() as conn:
            decisions = int((await conn.execute(text("SELECT count(*) FROM actions.decisions"))).scalar_one())
            timers = int((await conn.execute(text("SELECT count(*) FROM actions.timers"))).scalar_one())
    await engine.dispose()
    print(
        f"ratings: {n} decided in {elapsed:.2f} s after the first batch -> {n / elapsed:,.0f} ratings/s "
        f"({decisions} decisions, {timers} timers)"
    )


async def timers_per_second(infra: Any, url: str, topics: Any, n: int) -> None:
    engine = make_engine(url)
    due = datetime.now(UTC) - timedelta(seconds=1)
    payload = {
        "rule_id": "bench",
        "action": "customer_email",
        "index": 0,
        "template": "thank_you",
        "channel": "email",
        "locale": "en",
        "context": {"customer": {"email": "x@example.com"}},
    }
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO actions.timers (timer_id, kind, customer_id, due_at, payload) "
                "VALUES (:id, 'send', :c, :due, CAST(:p AS jsonb))"
            ),
            [
                {
                    "id": f"t-{i}",
                    "c": f"c-{i}",
                    "due": due,
                    "p": json.dumps({**payload, "customer_id": f"c-{i}"}),
                }
                for i in range(n)
            ],
        )
    producer = make_producer(bootstrap=infra.bootstrap, client_id="bench", idempotence=False)
    await producer.start()
    scheduler = Scheduler(
        transactions=PgTransactions(engine),
        producer=lambda: producer,
        topics=topics,
        policy=Policy(),
        batch=500,
    )
    started = time.perf_counter()
    fired = 0
    while (k := await scheduler.tick()) > 0:
        fired += k
    elapsed = time.perf_counter() - started
    await producer.stop()
    await engine.dispose()
    print(
        f"timers: {fired} fired in {elapsed:.2f} s -> {fired / elapsed:,.0f} timers/s"
        " (batch 500, one scheduler)"
    )


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    m = int(sys.argv[2]) if len(sys.argv) > 2 else 5_000
    with tempfile.TemporaryDirectory() as tmp:
        for infra in start_infra(Path(tmp)):
            db, topics = infra.db_url(new_database(infra)), new_topics(infra, partitions=6)
            asyncio.run(ratings_per_second(infra, db, topics, n))
            db, topics = infra.db_url(new_database(infra)), new_topics(infra, partitions=6)
            asyncio.run(timers_per_second(infra, db, topics, m))


if __name__ == "__main__":
    main()
