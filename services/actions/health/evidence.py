"""What the health model reads about a customer or an account, and the facts computed from it. Pure.

An account's evidence is its contacts' evidence pooled: every contact's ratings (so its CSAT is exact
counts over all of them, with n and a Wilson interval like every score), every observation (each
contact's latest value of a signal is aggregated by the component's rule; an observation posted for the
account itself wins over its contacts'), and the open alerts of all of them. A customer on their own
is the same computation with one contact.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from services.actions.health.model import Aggregate, Component, Fact
from shared.events import RatingSubmitted, UsageObserved
from shared.scales import Metric, NpsClass, nps_class
from shared.stats import proportion

DAYS_30 = 30 * 86400.0


@dataclass(frozen=True, slots=True)
class RatingPoint:
    """One answer as the model needs it; ``normalized`` is 0..1, 1 the best answer of its scale."""

    rating_id: str
    customer_id: str
    metric: Metric
    score: int
    normalized: float
    positive: bool
    occurred_at: datetime

    @classmethod
    def of(cls, rating: RatingSubmitted) -> RatingPoint:
        return cls(
            rating.rating_id,
            rating.customer.id,
            rating.metric,
            rating.score,
            rating.normalized,
            rating.positive,
            rating.occurred_at,
        )

    @property
    def nps_class(self) -> NpsClass | None:
        return nps_class(self.score) if self.metric is Metric.NPS else None


@dataclass(frozen=True, slots=True)
class Observation:
    """One usage observation; ``customer_id`` None means it is about the account itself."""

    observation_id: str
    customer_id: str | None
    observed_at: datetime
    signals: Mapping[str, float]

    @classmethod
    def of(cls, event: UsageObserved) -> Observation:
        return cls(event.observation_id, event.customer_id, event.observed_at, dict(event.signals))


@dataclass(frozen=True, slots=True)
class Evidence:
    """Everything the model reads about one subject (a customer, or an account's contacts pooled)."""

    ratings: Sequence[RatingPoint] = ()
    observations: Sequence[Observation] = ()
    open_alerts: int = 0


def pool(contacts: Iterable[Evidence], *, account_observations: Sequence[Observation] = ()) -> Evidence:
    """An account's evidence from its contacts' (a rating or observation seen twice counts once)."""
    ratings: dict[str, RatingPoint] = {}
    observations: dict[str, Observation] = {}
    alerts = 0
    for contact in contacts:
        ratings.update((r.rating_id, r) for r in contact.ratings)
        observations.update((o.observation_id, o) for o in contact.observations)
        alerts += contact.open_alerts
    for o in account_observations:
        observations[o.observation_id] = Observation(o.observation_id, None, o.observed_at, o.signals)
    return Evidence(tuple(ratings.values()), tuple(observations.values()), alerts)


# ---- satisfaction facts ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Reading:
    """A component's input value, or why there is none; ``detail`` is what the explanation shows."""

    value: float | None
    reason: str | None = None
    detail: Mapping[str, float | int | str | None] = field(default_factory=dict)


def _in_window(ratings: Sequence[RatingPoint], as_of: datetime, span: timedelta | None) -> list[RatingPoint]:
    start = as_of - span if span is not None else None
    return sorted(
        (r for r in ratings if r.occurred_at <= as_of and (start is None or r.occurred_at > start)),
        key=lambda r: (r.occurred_at, r.rating_id),
    )


def _pct(fraction: float | None) -> float | None:
    """A Wilson bound in percent, as the scores API gives it."""
    return None if fraction is None else round(100 * fraction, 2)


def _days(span: timedelta | None) -> str:
    return f"{span.total_seconds() / 86400:g}d" if span is not None else "ever"


def fact_reading(spec: Component, evidence: Evidence, *, as_of: datetime) -> Reading:
    """The value of a satisfaction fact as of ``as_of``, or why it is missing."""
    fact = spec.fact
    if fact is Fact.OPEN_ALERTS:
        return Reading(float(evidence.open_alerts), detail={"open_alerts": evidence.open_alerts})
    span = spec.span
    metric = spec.metric if fact in (Fact.TREND, Fact.LAST_ANSWER, Fact.DAYS_SINCE_ANSWER) else None
    if fact is Fact.CSAT:
        metric = Metric.CSAT
    elif fact is Fact.NPS:
        metric = Metric.NPS
    rows = [r for r in _in_window(evidence.ratings, as_of, span) if metric is None or r.metric is metric]
    what = f"{metric.value} answers" if metric else "answers"
    if fact is Fact.DAYS_SINCE_ANSWER:
        if not rows:
            return Reading(None, f"no {what} yet")
        return Reading(round((as_of - rows[-1].occurred_at).total_seconds() / 86400, 3))
    n = len(rows)
    if n < spec.evidence:
        return Reading(None, f"{n} {what} in {_days(span)}, fewer than {spec.evidence}", {"n": n})
    if fact is Fact.CSAT:
        share = proportion(sum(1 for r in rows if r.positive), n)
        detail = {
            "n": n,
            "positive": share.successes,
            "ci_low": _pct(share.ci_low),
            "ci_high": _pct(share.ci_high),
        }
        return Reading(100.0 * share.successes / n, detail=detail)
    if fact is Fact.NPS:
        promoters = sum(1 for r in rows if r.nps_class is NpsClass.PROMOTER)
        detractors = sum(1 for r in rows if r.nps_class is NpsClass.DETRACTOR)
        detail = {"n": n, "promoters": promoters, "detractors": detractors}
        return Reading(100.0 * (promoters - detractors) / n, detail=detail)
    if fact is Fact.LAST_ANSWER:
        last = rows[-1]
        return Reading(100.0 * last.normalized, detail={"metric": last.metric.value, "score": last.score})
    slope = _slope_per_30d(rows)
    if slope is None:
        return Reading(None, f"the {n} {what} in {_days(span)} are all at one instant", {"n": n})
    return Reading(slope, detail={"n": n})


def _slope_per_30d(rows: Sequence[RatingPoint]) -> float | None:
    """Least-squares slope of the answers on 0-100 against time, in points per 30 days."""
    t0 = rows[0].occurred_at
    xs = [(r.occurred_at - t0).total_seconds() / DAYS_30 for r in rows]
    ys = [100.0 * r.normalized for r in rows]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


# ---- usage signals --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Latest:
    at: datetime
    observation_id: str
    value: float


def _aggregate_at(spec: Component, observations: Sequence[Observation], at: datetime) -> Reading:
    """The signal's value for the subject at ``at``: each contact's latest fresh value, aggregated."""
    signal = spec.signal
    assert signal is not None
    oldest = at - spec.freshness
    latest: dict[str | None, _Latest] = {}
    for o in observations:
        value = o.signals.get(signal)
        if value is None or not oldest < o.observed_at <= at:
            continue
        seen = latest.get(o.customer_id)
        candidate = _Latest(o.observed_at, o.observation_id, value)
        if seen is None or (candidate.at, candidate.observation_id) > (seen.at, seen.observation_id):
            latest[o.customer_id] = candidate
    if None in latest:  # posted for the account itself: the account's own figure
        return Reading(latest[None].value, detail={"contacts": 0, "source": "account"})
    if not latest:
        return Reading(None, f"no {signal} observed in the {_days(spec.freshness)} before")
    values = [latest[k].value for k in sorted(latest, key=str)]
    rule = spec.aggregate
    if rule is Aggregate.SUM:
        value = math.fsum(values)
    elif rule is Aggregate.MAX:
        value = max(values)
    elif rule is Aggregate.MEAN:
        value = math.fsum(values) / len(values)
    else:
        value = max(latest.values(), key=lambda x: (x.at, x.observation_id)).value
    return Reading(value, detail={"contacts": len(values), "source": "contacts"})


def signal_reading(spec: Component, evidence: Evidence, *, as_of: datetime) -> Reading:
    """A usage signal's value as of ``as_of`` (or its % change over ``change_over``), or why it is missing."""
    now = _aggregate_at(spec, evidence.observations, as_of)
    if spec.change_over is None or now.value is None:
        return now
    then = _aggregate_at(spec, evidence.observations, as_of - spec.change_over)
    if then.value is None:
        return Reading(None, f"no {spec.signal} {_days(spec.change_over)} earlier to compare with")
    change = relative_change(then.value, now.value)
    return Reading(change, detail={**now.detail, "now": now.value, "before": then.value})


def relative_change(before: float, now: float) -> float:
    """Change in percent of the earlier value; from zero, any rise counts as +100 % (and a fall as -100 %)."""
    if before == 0:
        return 0.0 if now == 0 else math.copysign(100.0, now)
    return 100.0 * (now - before) / abs(before)


def reading(spec: Component, evidence: Evidence, *, as_of: datetime) -> Reading:
    if spec.signal is not None:
        return signal_reading(spec, evidence, as_of=as_of)
    return fact_reading(spec, evidence, as_of=as_of)
