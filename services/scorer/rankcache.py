"""A short-lived memory of whole rankings, so paging through 10,000 segments is not 100 recomputations.

A breakdown ranks every value of a dimension before it answers one page: at 10 million ratings and
10,000 stores that is seconds of counter reads and scoring. Its figures move with each minute of the
rolling window and each batch of ratings, but a page read a few seconds after the previous one need not
be more exact than that: the rows (every segment's score, interval and change, before any caller's
grants or concealment) are kept ``ttl_s`` seconds per (metric, window, dimensions, minimum), and
concurrent requests for the same ranking wait for one computation rather than starting their own. The
rows are never handed out to be changed: each request ranks and conceals copies. ``ttl_s`` 0 turns it
off (every request computes).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class RankCache(Generic[T]):
    """At most ``size`` entries; the oldest goes first."""

    def __init__(self, *, ttl_s: float, size: int = 32, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._size = size
        self._clock = clock
        self._entries: dict[Hashable, tuple[float, asyncio.Future[T]]] = {}

    async def get(self, key: Hashable, compute: Callable[[], Awaitable[T]]) -> T:
        if self._ttl_s <= 0:
            return await compute()
        now = self._clock()
        found = self._entries.get(key)
        if found is not None and now - found[0] < self._ttl_s:
            return await asyncio.shield(found[1])
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._entries[key] = (now, future)
        while len(self._entries) > self._size:
            del self._entries[next(iter(self._entries))]
        try:
            value = await compute()
        except BaseException as exc:
            self._entries.pop(key, None)  # a failure is not remembered
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        future.set_result(value)
        return value
