"""Token-bucket rate limits per key and per client IP, kept in process memory (per replica)."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class KeyedLimiter:
    """One bucket per client id; the least recently seen ids are forgotten past ``max_clients``.

    A forgotten client starts again with a full bucket, which only errs on the generous side.
    """

    def __init__(
        self,
        *,
        rate_per_s: float,
        burst: int,
        max_clients: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate_per_s
        self.burst = float(burst)
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def acquire(
        self, client: str, *, cost: float = 1.0, rate: float | None = None, burst: float | None = None
    ) -> float:
        """Take ``cost`` tokens; returns 0 when allowed, else the seconds until it would be.

        Every token counts: a request of ``cost`` tokens is charged all of them, even past the burst.
        """
        rate = self.rate if rate is None else rate
        cap = self.burst if burst is None else burst
        if rate <= 0:
            return 0.0
        now = self._clock()
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = _Bucket(tokens=cap, stamp=now)
            self._buckets[client] = bucket
            if len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(client)
            bucket.tokens = min(cap, bucket.tokens + (now - bucket.stamp) * rate)
            bucket.stamp = now
        # A request costing more than the burst (a batch of 500 against a burst of 400) would never fit:
        # it goes when the bucket is full and leaves it in debt, so the long-run rate still holds.
        needed = min(cost, cap)
        if bucket.tokens >= needed:
            bucket.tokens -= cost
            return 0.0
        return (needed - bucket.tokens) / rate


def retry_after(wait_s: float) -> int:
    """Whole seconds for a Retry-After header, never 0."""
    return max(1, math.ceil(wait_s))
