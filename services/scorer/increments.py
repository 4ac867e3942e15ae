"""A micro-batch's counter increments, aggregated in memory before they reach PostgreSQL.

The batch statement of ``repository.writes`` can count in SQL (``CSAT_COUNTER_WRITE=statement``: the
keys travel with every rating and PostgreSQL groups them) or take the increments this module adds up
per (tier, metric, segment, bucket, scale, score) from the ratings the batch actually stored: one row
per counter that moves, whatever the number of ratings behind it. Pure code: no I/O.

Buckets are whole seconds since the Unix epoch (minute, hour and day buckets are multiples of 60, 3,600
and 86,400 seconds: what ``date_bin`` with origin 1970-01-01 UTC gives, ``windows.floor_to``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from math import floor
from typing import NamedTuple, Protocol

from services.scorer.segments import KEY_SEPARATOR

MINUTE_TIER = 0
HOUR_TIER = 1
DAY_TIER = 2


class Counted(Protocol):
    """What counting needs of a rating (``ports.Rating`` has it)."""

    @property
    def rating_id(self) -> str: ...
    @property
    def metric(self) -> str: ...
    @property
    def scale(self) -> str: ...
    @property
    def score(self) -> int: ...
    @property
    def occurred_at(self) -> datetime: ...


class Increment(NamedTuple):
    """Add ``n`` to one counter row of one tier (``bucket_s``: the bucket's start, epoch seconds)."""

    tier: int
    metric: str
    segment_key: str
    bucket_s: int
    scale: str
    score: int
    n: int


def aggregate(
    ratings: Sequence[Counted],
    keys: Sequence[str],
    new: Collection[str],
    *,
    minute_since: datetime,
    hour_since: datetime,
) -> list[Increment]:
    """The increments of the ratings whose id is in ``new`` (``keys[i]``: rating i's keys joined by
    ``segments.KEY_SEPARATOR``), minute and hour buckets before the cutoffs left out. Unsorted: the
    statement that applies them sorts in the tables' key order (one lock order for every scorer)."""
    minute_from = minute_since.timestamp()
    hour_from = hour_since.timestamp()
    per_minute: Counter[tuple[str, str, int, str, int]] = Counter()
    for r, k in zip(ratings, keys, strict=True):
        if r.rating_id not in new:
            continue
        # Whole seconds first (exact: a float is within 0.25 us of a microsecond timestamp), then minutes.
        minute = floor(r.occurred_at.timestamp()) // 60 * 60
        metric, scale, score = str(r.metric), r.scale, r.score
        for key in k.split(KEY_SEPARATOR):
            per_minute[(metric, key, minute, scale, score)] += 1
    per_hour: Counter[tuple[str, str, int, str, int]] = Counter()
    per_day: Counter[tuple[str, str, int, str, int]] = Counter()
    for (metric, key, minute, scale, score), n in per_minute.items():
        per_hour[(metric, key, minute - minute % 3600, scale, score)] += n
        per_day[(metric, key, minute - minute % 86400, scale, score)] += n
    out: list[Increment] = []
    out.extend(_rows(MINUTE_TIER, per_minute.items(), since=minute_from))
    out.extend(_rows(HOUR_TIER, per_hour.items(), since=hour_from))
    out.extend(_rows(DAY_TIER, per_day.items(), since=None))
    return out


def _rows(
    tier: int, counts: Iterable[tuple[tuple[str, str, int, str, int], int]], *, since: float | None
) -> list[Increment]:
    return [
        Increment(tier, metric, key, bucket, scale, score, n)
        for (metric, key, bucket, scale, score), n in counts
        if since is None or bucket >= since
    ]


def dirty_segments(increments: Iterable[Increment]) -> list[tuple[str, str]]:
    """The (metric, segment key) pairs the increments touch (the evaluator's dirty marks)."""
    return list({(i.metric, i.segment_key) for i in increments})
