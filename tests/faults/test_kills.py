"""Scorer and notifier killed (SIGKILL) at random points while ratings stream in, 20 rounds.

Promise under test: results and offsets commit together, so a crash anywhere leaves the counts exact,
and the notifier's delivery record makes a replayed notification a no-op: no message twice.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path

import pytest

from tests.faults.harness import Poster, fault_stack, report, wait_alerts, wait_counted

pytestmark = pytest.mark.timeout(600)

ROUNDS = int(os.environ.get("CSAT_FAULT_KILL_ROUNDS", "20"))
SEED = int(os.environ.get("CSAT_FAULT_SEED", str(int(time.time()))))


async def test_scorer_and_notifier_killed_at_random_points(fault_dir: Path) -> None:
    rng = random.Random(SEED)
    async with fault_stack(fault_dir / "kills") as fs:
        services = fs.stack.services
        poster = Poster(fs.url["collector"], rate=25)
        poster.start()
        kills = {"scorer": 0, "notifier": 0}
        began = time.monotonic()
        for _round in range(ROUNDS):
            await asyncio.sleep(rng.uniform(0.3, 2.5))
            victims = rng.choice([("scorer",), ("notifier",), ("scorer", "notifier")])
            for name in victims:
                await asyncio.to_thread(services[name].kill)
                kills[name] += 1
            await asyncio.sleep(rng.uniform(0.0, 0.5))
            for name in victims:
                await asyncio.to_thread(services[name].start)
            if rng.random() < 0.5:  # half the time the next kill may land during start-up or a rebalance
                for name in victims:
                    await asyncio.to_thread(services[name].wait_ready, 90)
        for name in ("scorer", "notifier"):
            await asyncio.to_thread(services[name].wait_ready, 90)
        await poster.stop()
        chaos_s = time.monotonic() - began
        acked = poster.acknowledged
        customers = poster.acknowledged_customers
        counts = await wait_counted(fs.database_url, acked, timeout_s=180)
        alerts = await wait_alerts(fs.database_url, customers, timeout_s=180)
    lost = len(acked) - counts["stored"]
    duplicated = counts["counted"] - counts["rows"]
    report(
        "scorer+notifier SIGKILL",
        seed=SEED,
        rounds=ROUNDS,
        kills=kills,
        seconds=round(chaos_s, 1),
        sent=len(poster.posts),
        acknowledged=len(acked),
        counted=counts["stored"],
        lost=lost,
        duplicated=duplicated,
        counters_global=counts["counted"],
        alerts_expected=len(customers),
        alerts_sent=alerts["sent"],
        alerts_lost=len(customers) - alerts["customers_alerted"],
        alerts_duplicated=alerts["duplicates"],
        outbox_rows=alerts["outbox"],
    )
    assert len(acked) == len(poster.posts), "the collector refused posts although the broker was up"
    assert lost == 0
    assert duplicated == 0
    assert counts["by_store"] == counts["rows"]
    assert alerts["duplicates"] == 0
    assert alerts["customers_alerted"] == len(customers)
    assert alerts["sent"] == len(customers)
    assert alerts["outbox"] == len(customers)
