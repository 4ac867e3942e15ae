"""Notifier throughput on the real (embedded) broker and PostgreSQL: messages delivered per second.

Run: ``.venv/bin/python -m bench.notifier_stage [messages]``. Two runs: the embedded outbox,
and SendGrid's wire format against the loopback fake (HTTP, 16 sends in flight). Each run requests
``messages`` customer emails (distinct customers, so the daily cap does not bite), then reports the
wall time from the first request to the last recorded outcome, and the request-to-sent latency.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import text

from services.notifier.bootstrap import create_app
from shared.db import make_engine
from shared.events import Channel
from shared.topics import Topics
from tests.fakes.sendgrid import FakeSendGrid
from tests.helpers import produce, running
from tests.infra import Infra, new_database, new_topics, start_infra
from tests.integration.notifier_support import notifier_settings, records, request


async def one_run(infra: Infra, url: str, topics: Topics, label: str, n: int, **provider: Any) -> None:
    cfg = notifier_settings(infra, url, topics, log_level="WARNING", dispatch_interval_s=0.2, **provider)
    notes = [
        request(f"{label}-{i}", channel=Channel.EMAIL, to=f"c{i}@example.com", template="thank_you",
                customer=f"c-{i}")
        for i in range(n)
    ]  # fmt: skip
    engine = make_engine(url)
    async with running(create_app(cfg)):
        await asyncio.sleep(3)  # let the consumer join its group (Tansu assigns after ~half a session)
        started = time.perf_counter()
        await produce(infra.bootstrap, records(topics, notes))
        while True:
            async with engine.connect() as conn:
                done = (
                    await conn.execute(text("SELECT count(*) FROM notifier.deliveries WHERE status = 'sent'"))
                ).scalar_one()
            if done >= n:
                break
            await asyncio.sleep(0.05)
        wall = time.perf_counter() - started
        async with engine.connect() as conn:
            p50, p95, p99 = (
                await conn.execute(
                    text(
                        "SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY "
                        "extract(epoch FROM sent_at - CAST(request->>'requested_at' AS timestamptz))) "
                        "FROM notifier.deliveries"
                    )
                )
            ).scalar_one()
    await engine.dispose()
    sys.stdout.write(
        f"{label:>9}: {n} messages in {wall:.2f} s = {n / wall:,.0f}/s; request->sent p50 {p50:.2f} s, "
        f"p95 {p95:.2f} s, p99 {p99:.2f} s\n"
    )


def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, contextmanager(start_infra)(Path(tmp)) as infra:
        url, topics = infra.db_url(new_database(infra)), new_topics(infra)
        asyncio.run(one_run(infra, url, topics, "outbox", n))
        url, topics = infra.db_url(new_database(infra)), new_topics(infra)
        with FakeSendGrid() as fake:
            provider = {
                "email_provider": "sendgrid",
                "sendgrid_api_key": fake.api_key,
                "sendgrid_base_url": fake.url,
            }
            asyncio.run(one_run(infra, url, topics, "sendgrid", n, **provider))
            assert len(fake.accepted) == n, "every message exactly once"


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
