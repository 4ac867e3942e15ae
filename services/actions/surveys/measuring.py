"""How surveys are doing: the funnel, response and completion rates with 95 % intervals, time to answer,
a daily "response rate dropped" test and the "scores less representative" flag. Pure.

Definitions (docs/surveys.md, "Metrics"):
- sent: the provider accepted the invitation (an answer proves it went out even if its outcome was lost);
  delivered: sent and not bounced; expired: sent, unanswered, past its answer window.
- response rate = answered / sent (the issue's "answered / invited": only sent invitations count);
  completion rate = answered with a comment / answered (the follow-up question was answered too).
- time to answer: from sending to the first answer; p50 and p90 are nearest-rank (observed values).

Why Fisher's exact test, once a day, for "the response rate dropped": a broken template or a blocked
sender shows as a sudden, large fall. Each day's invitations form a closed cohort, all given the same
``horizon`` to answer before the test runs once, so the test sees a fixed sample (no peeking at a growing
one). Daily counts are often small (20 invitations, 6 expected answers), where the normal approximation
is wrong; Fisher's test is exact and conditions on both samples, so the baseline's own sampling error is
counted. At ``alpha`` = 0.001 a survey with nothing wrong raises a false alarm about once in 1,000 days
per (survey, channel); a minimum relative drop keeps huge samples from alarming on an irrelevant dip.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import NamedTuple

from services.actions.surveys.decisions import Delivery
from shared.stats import Proportion, fisher_less, percentile, proportion

#: Below this response rate (on at least ``MIN_SENT`` invitations) a segment's score is flagged.
LOW_RESPONSE_RATE = 0.10
MIN_SENT = 30


@dataclass(frozen=True, slots=True)
class InvitationRecord:
    """One invitation as the measures need it."""

    survey_id: str
    channel: str
    segment: Mapping[str, str]
    delivery: Delivery
    sent_at: datetime | None
    expires_at: datetime
    answered_at: datetime | None = None
    commented: bool = False

    @property
    def sent(self) -> bool:
        return self.delivery in (Delivery.SENT, Delivery.BOUNCED) or self.answered_at is not None

    def expired(self, now: datetime) -> bool:
        return self.sent and self.answered_at is None and now >= self.expires_at


class Label(NamedTuple):
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class Group:
    """What a funnel is about: e.g. ``survey=post-delivery-csat, channel=email, segment.store=paris-1``."""

    labels: tuple[Label, ...] = ()

    def __str__(self) -> str:
        return ", ".join(f"{label.name}={label.value}" for label in self.labels) or "all"


@dataclass(slots=True)
class Funnel:
    """Counts of one group, from invited to answered with a comment."""

    invited: int = 0
    sent: int = 0
    bounced: int = 0
    answered: int = 0
    commented: int = 0
    expired: int = 0
    answer_seconds: list[float] = field(default_factory=list)

    @property
    def delivered(self) -> int:
        return self.sent - self.bounced

    def add(self, record: InvitationRecord, *, now: datetime) -> None:
        self.invited += 1
        if not record.sent:
            return
        self.sent += 1
        self.bounced += record.delivery is Delivery.BOUNCED
        self.expired += record.expired(now)
        if record.answered_at is not None:
            self.answered += 1
            self.commented += record.commented
            if record.sent_at is not None:
                self.answer_seconds.append(max(0.0, (record.answered_at - record.sent_at).total_seconds()))


def _group_of(record: InvitationRecord, by: Sequence[str]) -> Group:
    labels = []
    for name in by:
        if name == "survey":
            labels.append(Label(name, record.survey_id))
        elif name == "channel":
            labels.append(Label(name, record.channel))
        elif name.startswith("segment."):
            labels.append(Label(name, record.segment.get(name.removeprefix("segment."), "(none)")))
        else:
            raise ValueError(f"cannot group by {name!r}; use survey, channel or segment.<dimension>")
    return Group(tuple(labels))


def tally(records: Iterable[InvitationRecord], *, by: Sequence[str], now: datetime) -> dict[Group, Funnel]:
    """One funnel per group (``by``: ``survey``, ``channel``, ``segment.<dimension>``, in that order)."""
    funnels: dict[Group, Funnel] = defaultdict(Funnel)
    for record in records:
        funnels[_group_of(record, by)].add(record, now=now)
    return dict(funnels)


@dataclass(frozen=True, slots=True)
class Rates:
    """A funnel's rates with their 95 % intervals, its time to answer, and whether it is representative."""

    response: Proportion
    completion: Proportion
    bounce: Proportion
    answer_p50_s: float | None
    answer_p90_s: float | None
    #: Few enough of those asked answered that the scores may not speak for everyone.
    low_response: bool


def rates(funnel: Funnel, *, threshold: float = LOW_RESPONSE_RATE, min_sent: int = MIN_SENT) -> Rates:
    response = proportion(funnel.answered, funnel.sent)
    return Rates(
        response=response,
        completion=proportion(funnel.commented, funnel.answered),
        bounce=proportion(funnel.bounced, funnel.sent),
        answer_p50_s=percentile(funnel.answer_seconds, 50),
        answer_p90_s=percentile(funnel.answer_seconds, 90),
        low_response=response.below(threshold, min_n=min_sent),
    )


# ---- the daily drop test -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Cohort:
    """Invitations sent in a period, and how many of them were answered within the horizon."""

    sent: int
    answered: int


@dataclass(frozen=True, slots=True)
class DropVerdict:
    """``dropped``: significant and large; ``reason`` says why not otherwise (``no_data``, ``too_few``...)."""

    dropped: bool
    reason: str
    rate: float | None = None
    baseline: float | None = None
    p_value: float | None = None


def response_drop(
    day: Cohort,
    baseline: Cohort,
    *,
    alpha: float = 0.001,
    min_relative_drop: float = 0.3,
    min_expected: float = 5.0,
) -> DropVerdict:
    """Is ``day``'s response rate significantly and substantially below ``baseline``'s (Fisher, one-sided)?"""
    if day.sent == 0 or baseline.sent == 0:
        return DropVerdict(False, "no_data")
    rate, base = day.answered / day.sent, baseline.answered / baseline.sent
    if day.sent * base < min_expected:
        return DropVerdict(False, "too_few", rate, base)
    p = fisher_less(day.answered, day.sent, baseline.answered, baseline.sent)
    relative = 1 - rate / base if base else 0.0
    if p >= alpha:
        return DropVerdict(False, "not_significant", rate, base, p)
    if relative < min_relative_drop:
        return DropVerdict(False, "too_small", rate, base, p)
    return DropVerdict(True, "dropped", rate, base, p)


def cohort(
    records: Iterable[InvitationRecord], *, sent_from: datetime, sent_until: datetime, horizon: timedelta
) -> Cohort:
    """Invitations sent in [from, until), answered within ``horizon`` of their sending."""
    sent = answered = 0
    for r in records:
        if r.sent and r.sent_at is not None and sent_from <= r.sent_at < sent_until:
            sent += 1
            answered += r.answered_at is not None and r.answered_at - r.sent_at <= horizon
    return Cohort(sent, answered)


def daily_check(
    records: Sequence[InvitationRecord],
    *,
    day: date,
    now: datetime,
    baseline_days: int = 28,
    horizon: timedelta = timedelta(hours=24),
    alpha: float = 0.001,
) -> DropVerdict:
    """One closed UTC day against the ``baseline_days`` before it, each invitation given ``horizon``."""
    start = datetime.combine(day, time(0), UTC)
    end = start + timedelta(days=1)
    if now < end + horizon:
        return DropVerdict(False, "not_closed")
    today = cohort(records, sent_from=start, sent_until=end, horizon=horizon)
    before = cohort(
        records, sent_from=start - timedelta(days=baseline_days), sent_until=start, horizon=horizon
    )
    return response_drop(today, before, alpha=alpha)
