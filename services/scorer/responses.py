"""Survey response rates per segment, from events: invitations (``csat.surveys.invited.v1``) and their
answers (ratings whose ``survey_id`` is an invitation id) counted per metric, segment and hour of the
invitation. Pure.

Why per hour *of the invitation*: an answer is counted in its invitation's bucket, so over a window
``answered / invited`` is the share of that window's invitations answered so far, exactly (never above
1, and each answer next to the invitation it answers). Only the first answer counts: a re-click (a
revision of the same rating) answers nothing new. Either event may arrive first (two topics); the store
keeps one row per invitation id and counts a row as answered once both are known.

Why 10 % on at least 30 invitations for ``low``: email CSAT surveys usually get 10 to 30 % of
answers (one-click, in-email scales at the top of that range); below 10 % the answers come from a
self-selected few (the very pleased and the very upset), the non-response bias the survey literature
warns about, so the scores may not speak for the segment. Under 30 invitations the rate itself is too
uncertain to say so (the same minimum sample as a score's). Both are settings
(``CSAT_LOW_RESPONSE_RATE``, ``CSAT_LOW_RESPONSE_MIN_INVITED``) and match the surveys' stats route.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from services.scorer.segments import KEY_SEPARATOR
from services.scorer.windows import ceil_to, floor_to
from shared.stats import proportion

HOUR = timedelta(hours=1)
#: Below this response rate, on at least ``MIN_INVITED`` invitations, a segment is flagged ``low``.
LOW_RESPONSE_RATE = 0.10
MIN_INVITED = 30


@dataclass(frozen=True, slots=True)
class Invitation:
    """What the store keeps of an invitation: its metric, its segment keys (``KEY_SEPARATOR``-joined,
    as for ratings) and when it was sent."""

    invitation_id: str
    metric: str
    segment: Mapping[str, str]
    keys: str
    invited_at: datetime


class Answer(NamedTuple):
    """The first answer to an invitation: when it came, and whether it carried a comment."""

    at: datetime
    commented: bool


@dataclass(frozen=True, slots=True)
class Counted:
    """An invitation row that moved in this batch: to count as invited (its invitation came) and/or as
    answered (its first answer and its invitation are both known now, one of them new)."""

    metric: str
    keys: str
    invited_at: datetime
    invited: bool
    answered: bool
    commented: bool = False  # the answer counted here came with a comment (the follow-up question)


class ResponseIncrement(NamedTuple):
    metric: str
    segment_key: str
    bucket_start: datetime
    invited: int
    answered: int
    commented: int


def increments(counted: Iterable[Counted]) -> list[ResponseIncrement]:
    """Counter increments per (metric, segment key, hour of the invitation), in key order (lock order)."""
    sums: dict[tuple[str, str, datetime], list[int]] = defaultdict(lambda: [0, 0, 0])
    for c in counted:
        if not (c.invited or c.answered):
            continue
        bucket = floor_to(c.invited_at, HOUR)
        for key in c.keys.split(KEY_SEPARATOR):
            total = sums[(c.metric, key, bucket)]
            total[0] += c.invited
            total[1] += c.answered
            total[2] += c.answered and c.commented
    return [ResponseIncrement(m, k, b, i, a, c) for (m, k, b), (i, a, c) in sorted(sums.items())]


def window(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The hours of invitations a score window ``[start, end)`` reads: snapped outward to whole hours."""
    return floor_to(start, HOUR), ceil_to(end, HOUR)


@dataclass(frozen=True, slots=True)
class ResponseSettings:
    threshold: float = LOW_RESPONSE_RATE
    min_invited: int = MIN_INVITED


@dataclass(frozen=True, slots=True)
class ResponseCounts:
    """Of the invitations sent in a window: how many, how many answered, how many with a comment."""

    invited: int = 0
    answered: int = 0
    commented: int = 0


def body(
    counts: ResponseCounts, *, start: datetime, end: datetime, settings: ResponseSettings
) -> dict[str, Any]:
    """``response_rate`` and ``completion_rate`` (None without invitations, answers) and ``low_response``
    for ``GET /v1/scores``."""
    if counts.invited <= 0:
        return {"response_rate": None, "completion_rate": None, "low_response": False}
    p = proportion(counts.answered, counts.invited)
    low = p.below(settings.threshold, min_n=settings.min_invited)
    completion = None
    if counts.answered:
        c = proportion(counts.commented, counts.answered)
        completion = {
            "rate": c.value,
            "ci_low": c.ci_low,
            "ci_high": c.ci_high,
            "answered": counts.answered,
            "commented": counts.commented,
        }
    return {
        "response_rate": {
            "rate": p.value,
            "ci_low": p.ci_low,
            "ci_high": p.ci_high,
            "invited": counts.invited,
            "answered": counts.answered,
            "low": low,
            "threshold": settings.threshold,
            "min_invited": settings.min_invited,
            "from": start.isoformat(),
            "to": end.isoformat(),
        },
        "completion_rate": completion,
        "low_response": low,
    }
