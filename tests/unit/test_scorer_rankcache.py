"""The breakdown's memory of whole rankings (services.scorer.rankcache): reused for its time to live,
computed once for concurrent requests, a failure never remembered, off at 0."""

from __future__ import annotations

import asyncio

import pytest

from services.scorer.rankcache import RankCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_ranking_is_reused_for_its_time_to_live_then_computed_again() -> None:
    clock, calls = Clock(), []

    async def compute() -> int:
        calls.append(clock.now)
        return len(calls)

    cache: RankCache[int] = RankCache(ttl_s=30, clock=clock)
    assert await cache.get("k", compute) == 1
    clock.now = 29.9
    assert await cache.get("k", compute) == 1
    assert await cache.get("other", compute) == 2  # another ranking is its own
    clock.now = 30.0
    assert await cache.get("k", compute) == 3


async def test_concurrent_requests_wait_for_one_computation() -> None:
    started, release = asyncio.Event(), asyncio.Event()
    calls = 0

    async def compute() -> str:
        nonlocal calls
        calls += 1
        started.set()
        await release.wait()
        return "rows"

    cache: RankCache[str] = RankCache(ttl_s=30)
    first = asyncio.create_task(cache.get("k", compute))
    await started.wait()
    second = asyncio.create_task(cache.get("k", compute))
    release.set()
    assert list(await asyncio.gather(first, second)) == ["rows", "rows"] and calls == 1


async def test_a_failure_is_not_remembered_and_zero_turns_it_off() -> None:
    calls = 0

    async def flaky() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database gone")
        return calls

    cache: RankCache[int] = RankCache(ttl_s=30)
    with pytest.raises(RuntimeError):
        await cache.get("k", flaky)
    assert await cache.get("k", flaky) == 2
    off: RankCache[int] = RankCache(ttl_s=0)
    assert await off.get("k", flaky) == 3 and await off.get("k", flaky) == 4


async def test_at_most_size_rankings_are_kept() -> None:
    async def one() -> int:
        return 1

    cache: RankCache[int] = RankCache(ttl_s=30, size=2)
    for key in ("a", "b", "c"):
        await cache.get(key, one)
    assert list(cache._entries) == ["b", "c"]
