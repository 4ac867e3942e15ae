"""The in-memory aggregation of a micro-batch's counter increments (``services.scorer.increments``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from services.scorer.increments import DAY_TIER, HOUR_TIER, MINUTE_TIER, Increment, aggregate, dirty_segments
from services.scorer.segments import KEY_SEPARATOR

T0 = datetime(2026, 12, 5, 10, 0, 0, tzinfo=UTC)
NO_CUTOFF = datetime(1, 1, 1, tzinfo=UTC)


@dataclass
class R:
    rating_id: str
    occurred_at: datetime
    score: int = 5
    metric: str = "csat"
    scale: str = "1-5"
    segment: dict[str, str] = field(default_factory=dict)


def _by_tier(rows: list[Increment]) -> dict[int, Counter[tuple[str, int, int]]]:
    out: dict[int, Counter[tuple[str, int, int]]] = {
        MINUTE_TIER: Counter(),
        HOUR_TIER: Counter(),
        DAY_TIER: Counter(),
    }
    for i in rows:
        out[i.tier][(i.segment_key, i.bucket_s, i.score)] += i.n
    return out


def test_increments_add_up_per_bucket_and_skip_ratings_not_stored() -> None:
    ratings = [
        R("a", T0.replace(second=5)),
        R("b", T0.replace(second=59, microsecond=999_999)),
        R("c", T0.replace(minute=1)),
        R("d", T0.replace(minute=1), score=1),
        R("dup", T0.replace(minute=2)),
    ]
    keys = [KEY_SEPARATOR.join(["*", "store=s1"])] * 4 + ["*"]
    rows = aggregate(ratings, keys, {"a", "b", "c", "d"}, minute_since=NO_CUTOFF, hour_since=NO_CUTOFF)
    tiers = _by_tier(rows)
    m0 = int(T0.timestamp())
    assert tiers[MINUTE_TIER] == {
        ("*", m0, 5): 2,
        ("store=s1", m0, 5): 2,
        ("*", m0 + 60, 5): 1,
        ("store=s1", m0 + 60, 5): 1,
        ("*", m0 + 60, 1): 1,
        ("store=s1", m0 + 60, 1): 1,
    }
    day = m0 - m0 % 86400
    assert tiers[HOUR_TIER] == {
        ("*", m0, 5): 3,
        ("store=s1", m0, 5): 3,
        ("*", m0, 1): 1,
        ("store=s1", m0, 1): 1,
    }
    assert tiers[DAY_TIER] == {
        ("*", day, 5): 3,
        ("store=s1", day, 5): 3,
        ("*", day, 1): 1,
        ("store=s1", day, 1): 1,
    }
    assert sorted(dirty_segments(rows)) == [("csat", "*"), ("csat", "store=s1")]


def test_buckets_before_the_cutoffs_are_left_out_but_the_day_tier_keeps_everything() -> None:
    old = R("old", datetime(2020, 1, 1, 12, 30, tzinfo=UTC))
    rows = aggregate([old], ["*"], {"old"}, minute_since=T0, hour_since=T0)
    assert [(i.tier, i.n) for i in rows] == [(DAY_TIER, 1)]
    assert dirty_segments(rows) == [("csat", "*")]
