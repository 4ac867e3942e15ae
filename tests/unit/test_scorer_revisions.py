"""The pure re-click rules of the scorer: which revisions apply, and the increments that replace one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from services.scorer import increments as inc
from services.scorer.revisions import Held, plan, replacement

AT = datetime(2026, 11, 23, 10, 30, 15, tzinfo=UTC)
FAR = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class R:
    rating_id: str
    score: int
    revision: int
    occurred_at: datetime = AT
    metric: str = "csat"
    scale: str = "1-5"


def held(rating_id: str, score: int, revision: int, keys: str = "*", at: datetime = AT) -> Held:
    return Held(rating_id, revision, "csat", "1-5", score, at, keys)


def test_plan_sorts_revisions_by_what_is_held() -> None:
    todo = plan(
        [R("new", 4, 1), R("newer", 4, 2), R("same", 4, 1), R("older", 4, 1)],
        {"newer": held("newer", 3, 1), "same": held("same", 3, 1), "older": held("older", 3, 2)},
    )
    assert todo.insert == [0]
    assert [(i, h.rating_id) for i, h in todo.replace] == [(1, "newer")]
    assert todo.stale == [2, 3]


def test_replacement_moves_one_count_from_the_old_score_to_the_new_in_each_tier() -> None:
    moves = replacement([R("r", 5, 1)], ["*"], [held("r", 2, 0)], minute_since=FAR, hour_since=FAR)
    by = {(m.tier, m.score): m.n for m in moves}
    assert by == {(t, 5): 1 for t in (0, 1, 2)} | {(t, 2): -1 for t in (0, 1, 2)}
    assert sum(m.n for m in moves) == 0


def test_the_same_answer_elsewhere_in_time_or_segment_moves_only_what_differs() -> None:
    later = AT + timedelta(minutes=5)  # another minute bucket, same hour and day
    moves = replacement(
        [R("r", 3, 1, occurred_at=later)],
        ["*\x1fstore=b"],
        [held("r", 3, 0, "*\x1fstore=a")],
        minute_since=FAR,
        hour_since=FAR,
    )
    rows = sorted((m.tier, m.segment_key, m.n) for m in moves)
    assert rows == [
        (inc.MINUTE_TIER, "*", -1),
        (inc.MINUTE_TIER, "*", 1),
        (inc.MINUTE_TIER, "store=a", -1),
        (inc.MINUTE_TIER, "store=b", 1),
        (inc.HOUR_TIER, "store=a", -1),
        (inc.HOUR_TIER, "store=b", 1),
        (inc.DAY_TIER, "store=a", -1),
        (inc.DAY_TIER, "store=b", 1),
    ]
