"""The broker goes away during a stream of posts: frozen (SIGSTOP), then its port cut by a proxy.

Promise under test: a 202 is only given for a rating the broker acknowledged, and every such rating is
counted exactly once; while the broker is away a post gets 503 within the publish timeout, never a hang.
The embedded broker keeps data in memory only, so killing it would lose what it held and prove nothing
about us: it is frozen or cut off instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.faults.harness import FaultStack, Poster, fault_stack, report, wait_counted

pytestmark = pytest.mark.timeout(300)

PUBLISH_TIMEOUT_S = 3.0  # FAULT_ENV's CSAT_PUBLISH_TIMEOUT_S
RATE = 30.0
BEFORE_S, OUTAGE_S, AFTER_S = 6.0, 12.0, 8.0


async def _outage(fs: FaultStack, *, scenario: str, down: Callable[[], None], up: Callable[[], None]) -> None:
    poster = Poster(fs.url["collector"], rate=RATE)
    poster.start()
    await asyncio.sleep(BEFORE_S)
    outage_start = time.monotonic()
    await asyncio.to_thread(down)
    await asyncio.sleep(OUTAGE_S)
    await asyncio.to_thread(up)
    outage_end = time.monotonic()
    await asyncio.sleep(AFTER_S)
    await poster.stop()

    posts = list(poster.posts)
    # Posts that started well inside the outage: the broker cannot have acknowledged them.
    inside = [p for p in posts if outage_start + 0.5 < p.started < outage_end - PUBLISH_TIMEOUT_S - 0.5]
    slowest = max(p.seconds for p in posts)
    back = [p.started + p.seconds for p in posts if p.status == 202 and p.started > outage_end]
    recovery_s = round(min(back) - outage_end, 2) if back else None
    statuses: dict[str, int] = {}
    for p in posts:
        statuses[str(p.status)] = statuses.get(str(p.status), 0) + 1
    refused_first = len({p.rating_id for p in posts if p.status != 202})
    retried = await poster.retry_refused(timeout_s=90)
    acked = poster.acknowledged
    counts = await wait_counted(fs.database_url, acked, timeout_s=120)
    lost = len(acked) - counts["stored"]
    duplicated = counts["counted"] - counts["rows"]
    report(
        scenario,
        sent=len(posts),
        acknowledged=len(acked),
        counted=counts["stored"],
        lost=lost,
        duplicated=duplicated,
        statuses=statuses,
        during_outage=len(inside),
        during_outage_503=sum(p.status == 503 for p in inside),
        slowest_answer_s=round(slowest, 2),
        first_202_after_restore_s=recovery_s,
        refused_then_retried=f"{refused_first}/{retried}",
        counters_global=counts["counted"],
        counters_by_store=counts["by_store"],
    )
    assert inside, "no post fell inside the outage window"
    assert all(p.status == 503 for p in inside), [p.status for p in inside if p.status != 503][:10]
    assert all(p.status in (202, 503) for p in posts), statuses
    assert slowest < PUBLISH_TIMEOUT_S + 3, f"a post took {slowest:.1f}s: that is a hang"
    assert len(acked) == len(posts), "some refused rating could not be re-sent after the outage"
    assert lost == 0
    assert duplicated == 0
    assert counts["by_store"] == counts["rows"], "per-store counters disagree with the stored ratings"


async def test_broker_frozen_with_sigstop(fault_dir: Path) -> None:
    async with fault_stack(fault_dir / "frozen", services=("collector", "scorer")) as fs:
        await _outage(fs, scenario="broker frozen (SIGSTOP 12 s)", down=fs.broker.pause, up=fs.broker.resume)


async def test_broker_port_cut_by_proxy(fault_dir: Path) -> None:
    async with fault_stack(fault_dir / "cut", services=("collector", "scorer"), via_proxy=True) as fs:
        assert fs.proxy is not None
        await _outage(fs, scenario="broker port cut (proxy 12 s)", down=fs.proxy.cut, up=fs.proxy.restore)
