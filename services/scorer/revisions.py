"""Survey re-clicks in the counters (pure): a newer revision of a rating replaces the answer counted.

A re-click publishes the same ``rating_id`` again with ``revision`` + 1 (``services.collector.reclick``).
The scorer holds one row per rating with the revision it counted: a newer revision takes the old answer
out of every time-bucketed counter it fed and puts the new one in (the increments below, written in
the batch's transaction with the offsets, so exactly-once holds); an older or equal one is a no-op (a
replay, or a revision delivered out of order); one whose rating was never stored is stored and
counted like a first answer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from services.scorer import increments as inc


@dataclass(frozen=True, slots=True)
class Held:
    """The answer the scorer counted for a rating, with the segment keys it fed."""

    rating_id: str
    revision: int
    metric: str
    scale: str
    score: int
    occurred_at: datetime
    keys: str  # segment keys joined by ``segments.KEY_SEPARATOR``


@dataclass(frozen=True, slots=True)
class Plan:
    """What a batch's revised ratings do: indexes into the revised list."""

    insert: list[int]  # never stored: store and count like a first answer
    replace: list[tuple[int, Held]]  # newer than held: old answer out, new one in
    stale: list[int]  # older or equal to what is held: nothing


class _Revised(inc.Counted, Protocol):
    @property
    def revision(self) -> int: ...


def plan(revised: Sequence[_Revised], held: Mapping[str, Held]) -> Plan:
    """Sort revised ratings (distinct ids) by what the scorer holds of each."""
    out = Plan([], [], [])
    for i, rating in enumerate(revised):
        old = held.get(rating.rating_id)
        if old is None:
            out.insert.append(i)
        elif rating.revision > old.revision:
            out.replace.append((i, old))
        else:
            out.stale.append(i)
    return out


def replacement(
    new: Sequence[inc.Counted],
    new_keys: Sequence[str],
    old: Sequence[Held],
    *,
    minute_since: datetime,
    hour_since: datetime,
) -> list[inc.Increment]:
    """The increments replacing each ``old[i]`` with ``new[i]``: -1 where the old answer was counted,
    +1 where the new one goes; rows that cancel out (same bucket, scale and score) are left out."""
    ids = {r.rating_id for r in new}
    plus = inc.aggregate(new, new_keys, ids, minute_since=minute_since, hour_since=hour_since)
    minus = inc.aggregate(old, [h.keys for h in old], ids, minute_since=minute_since, hour_since=hour_since)
    total: Counter[tuple[int, str, str, int, str, int]] = Counter()
    for i in plus:
        total[i[:-1]] += i.n
    for i in minus:
        total[i[:-1]] -= i.n
    return [inc.Increment(*k, n) for k, n in total.items() if n != 0]
