"""Segment drift alerts whose false-alarm rate holds under continuous monitoring (pure code, no I/O).

The method (docs/scores.md, "Drift alerts"): a Shiryaev-Roberts procedure on daily likelihood ratios.

- Each closed UTC day of a segment is one step. Its evidence is the log-likelihood ratio of that day's
  answers between "dropped by the smallest drop worth an alert" and "as usual", both distributions
  exponential tilts of the segment's own baseline (the 13 weeks that end 4 weeks before the day).
  The tilt is the distribution closest to the baseline (in Kullback-Leibler divergence) with the
  lower mean, so one formula serves CSAT (share of positive answers), NPS (promoter +1, passive 0,
  detractor -1) and CES (ease 1-7, the "how much effort" 1-5 variant turned around first).
- The statistic ``R = (1 + R) * LR_day`` alarms at ``R >= A`` with ``A`` the average run length
  wanted, in days. Under an unchanged segment ``R_t - t`` is a martingale, so the expected number of
  false alarms in any T days is at most ``T / A`` for any daily traffic (exactly, not
  asymptotically); ``A`` = "one false alarm per N months".
- The baseline is an estimate: its reference is lowered by a margin ``m`` with
  ``m * (delta - m) = log(A) * SE^2`` which, in the normal approximation, offsets on average the
  effect of the baseline's sampling error on the false-alarm rate; when no margin can do that
  (``delta^2 < 4 log(A) SE^2``) the baseline is too imprecise for that drop.
- A segment is too small to monitor a drop when its answers cannot confirm it within
  ``max_delay_days`` on average (``log(A) / (answers a day * KL)``); it then watches the smallest
  drop it can confirm in that time, up to ``max_drop``, and says so.
- Page's CUSUM on the same log-likelihood ratios gives the change point (the day after its last
  zero) and the answers since then, for the report.

The state advances over closed days only, so it is the same however often it is evaluated, and a
replay of the same day counters from the same first day gives the same state.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from statistics import NormalDist

from services.scorer.domain import wilson_interval
from services.scorer.signals import ALERT_NAMESPACE
from shared.scales import SCALES, Metric, NpsClass, nps_class

DAYS_PER_MONTH = 365.25 / 12
NEG_INF = -math.inf

#: One unit of the per-answer value in the metric's points: CSAT and NPS in percentage points, CES in
#: points of the 1-7 ease scale.
POINTS: dict[Metric, float] = {Metric.CSAT: 100.0, Metric.NPS: 100.0, Metric.CES: 1.0}


def answer_value(metric: Metric, scale_name: str, score: int) -> float:
    """The per-answer value whose mean is the metric (CSAT 1/0, NPS +1/0/-1, CES ease 1-7)."""
    scale = SCALES[(metric, scale_name)]
    if metric is Metric.CSAT:
        return 1.0 if scale.is_positive(score) else 0.0
    if metric is Metric.NPS:
        cls = nps_class(score)
        return 1.0 if cls is NpsClass.PROMOTER else -1.0 if cls is NpsClass.DETRACTOR else 0.0
    # The scores API's ease (domain.ces_ease) without its 6-decimal rounding, so that equal eases of
    # two scales fall on one grid value.
    ratio = (score - scale.low) / (scale.high - scale.low)
    return round(1.0 + 6.0 * (ratio if scale.higher_is_better else 1.0 - ratio), 9)


def _value_grid() -> dict[Metric, tuple[float, ...]]:
    grid: dict[Metric, set[float]] = {m: set() for m in Metric}
    for (metric, name), scale in SCALES.items():
        grid[metric].update(answer_value(metric, name, s) for s in scale.scores())
    return {m: tuple(sorted(v)) for m, v in grid.items()}


#: Every value an answer of the metric can take, on any of its scales, in increasing order.
VALUES: dict[Metric, tuple[float, ...]] = _value_grid()
_INDEX: dict[tuple[Metric, str, int], int] = {
    (metric, name, s): VALUES[metric].index(answer_value(metric, name, s))
    for (metric, name), scale in SCALES.items()
    for s in scale.scores()
}


@dataclass(frozen=True, slots=True)
class Tally:
    """Answers per value of the metric's grid (:data:`VALUES`): all the detector needs of a day."""

    metric: Metric
    counts: tuple[int, ...]

    @classmethod
    def empty(cls, metric: Metric) -> Tally:
        return cls(metric, (0,) * len(VALUES[metric]))

    @property
    def n(self) -> int:
        return sum(self.counts)

    @property
    def total(self) -> float:
        """Sum of the answers' values."""
        return sum(c * v for c, v in zip(self.counts, VALUES[self.metric], strict=True))

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.metric, tuple(a + b for a, b in zip(self.counts, other.counts, strict=True)))

    def __sub__(self, other: Tally) -> Tally:
        return Tally(self.metric, tuple(a - b for a, b in zip(self.counts, other.counts, strict=True)))


def tally(metric: Metric, counts: Mapping[tuple[str, int], int]) -> Tally:
    """Fold the scorer's counters of one bucket (or a sum of buckets), keyed (scale, score), into a tally."""
    out = [0] * len(VALUES[metric])
    for (scale_name, score), n in counts.items():
        if n:
            out[_INDEX[(metric, scale_name, score)]] += n
    return Tally(metric, tuple(out))


# ---- settings -----------------------------------------------------------------------------------------
def _default_min_drop() -> dict[Metric, float]:
    return {Metric.CSAT: 10.0, Metric.NPS: 10.0, Metric.CES: 0.5}


def _default_max_drop() -> dict[Metric, float]:
    return {Metric.CSAT: 30.0, Metric.NPS: 40.0, Metric.CES: 1.5}


@dataclass(frozen=True, slots=True)
class DriftSettings:
    """The settings in plain words; drops in the metric's points (CSAT/NPS points, CES 1-7 points)."""

    months_per_false_alarm: float = 120.0  # "at most one false alarm per segment per N months"
    min_drop: Mapping[Metric, float] = field(default_factory=_default_min_drop)  # worth an alert
    max_drop: Mapping[Metric, float] = field(default_factory=_default_max_drop)  # larger: not watched
    max_delay_days: float = 28.0  # a watched drop is confirmed within this many days on average
    baseline_days: int = 91  # the segment's usual level: 13 whole weeks...
    lag_days: int = 28  # ...ending this long before the day judged, so a drop is not its own baseline
    min_baseline_days: int = 28  # after a detected drop, its new level is learnt this long first
    recalibrate_weekday: int = 0  # the baseline is re-read every Monday (and after a detected drop)

    def __post_init__(self) -> None:
        if self.months_per_false_alarm * DAYS_PER_MONTH <= 1:
            raise ValueError("months_per_false_alarm must allow more than one day between false alarms")
        if self.lag_days < self.max_delay_days:
            raise ValueError("lag_days must cover max_delay_days: a drop must not become its own baseline")
        if not 0 < self.min_baseline_days <= self.baseline_days:
            raise ValueError("min_baseline_days must be between 1 and baseline_days")
        for metric in Metric:
            if not 0 < self.min_drop[metric] <= self.max_drop[metric]:
                raise ValueError(f"{metric.value}: need 0 < min_drop <= max_drop")

    @property
    def arl_days(self) -> float:
        """``A``: the average number of days between false alarms the threshold guarantees at least."""
        return self.months_per_false_alarm * DAYS_PER_MONTH

    @property
    def threshold(self) -> float:
        """The alarm threshold on ``log R`` (nats)."""
        return math.log(self.arl_days)


# ---- exponential tilts of a baseline ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Moments:
    """``log E[exp(-lam v)]``, mean and variance of the baseline tilted by ``lam``."""

    log_mgf: float
    mean: float
    variance: float


def tilt_moments(weights: Sequence[float], values: Sequence[float], lam: float) -> Moments:
    """Moments of ``p_lam(v) ∝ w(v) exp(-lam v)`` (``w`` need not sum to one)."""
    exps = [-lam * v for v, w in zip(values, weights, strict=True) if w > 0]
    top = max(exps)
    scaled = [w * math.exp(-lam * v - top) if w > 0 else 0.0 for v, w in zip(values, weights, strict=True)]
    z = sum(scaled)
    mean = sum(s * v for s, v in zip(scaled, values, strict=True)) / z
    var = sum(s * (v - mean) ** 2 for s, v in zip(scaled, values, strict=True)) / z
    return Moments(top + math.log(z) - math.log(sum(weights)), mean, max(var, 0.0))


def tilt_for_mean(weights: Sequence[float], values: Sequence[float], target: float) -> float:
    """The ``lam`` whose tilt has mean ``target`` (the mean falls as ``lam`` grows): safeguarded Newton."""
    lam, low, high = 0.0, NEG_INF, math.inf
    for _ in range(200):
        mom = tilt_moments(weights, values, lam)
        gap = mom.mean - target
        if abs(gap) < 1e-12:
            return lam
        if gap > 0:
            low = lam
        else:
            high = lam
        step = lam + gap / mom.variance if mom.variance > 0 else math.nan
        if not low < step < high:
            if math.isinf(high):
                step = lam + 2.0 * max(1.0, abs(lam))
            elif math.isinf(low):
                step = lam - 2.0 * max(1.0, abs(lam))
            else:
                step = (low + high) / 2
        lam = step
    return lam


def tilt_kl(weights: Sequence[float], values: Sequence[float], lam_a: float, lam_b: float) -> float:
    """Kullback-Leibler divergence KL(p_a || p_b) of two tilts of the same baseline (nats per answer)."""
    a = tilt_moments(weights, values, lam_a)
    b = tilt_moments(weights, values, lam_b)
    return -(lam_a - lam_b) * a.mean - a.log_mgf + b.log_mgf


def margin(delta: float, *, se2: float, log_a: float) -> float | None:
    """The smaller root of ``m (delta - m) = log_a * se2``; ``None`` when the baseline is too imprecise."""
    disc = delta * delta - 4.0 * log_a * se2
    if disc < 0:
        return None
    return (delta - math.sqrt(disc)) / 2.0


# ---- calibration: what a segment's baseline lets it watch -------------------------------------------
class Status(StrEnum):
    WARMING_UP = "warming_up"  # too few baseline days (after a detected drop: its new level is learnt)
    TOO_SMALL = "too_small"  # cannot confirm the smallest drop worth an alert in time (see watched_drop)
    MONITORING = "monitoring"
    DROP_DETECTED = "drop_detected"  # an alert was raised; the new level becomes the baseline


@dataclass(frozen=True, slots=True)
class DateRange:
    """Days ``start <= day < end`` (UTC days, as the scorer's day buckets)."""

    start: date
    end: date

    @property
    def days(self) -> int:
        return max(0, (self.end - self.start).days)


@dataclass(frozen=True, slots=True)
class Calibration:
    """The reference a segment is judged against until the next calibration (means in answer units)."""

    day: date
    status: Status
    baseline: Tally
    baseline_days: int
    rate: float  # answers a day in the baseline
    mean: float | None
    watched_drop: float | None  # the drop the statistic is tuned to; None: nothing is watched
    delay_min_drop: float  # expected days to confirm the smallest drop worth an alert (inf: never)
    delay_watched: float | None
    theta: float = 0.0  # a day's log-likelihood ratio is -theta * sum(values) - answers * offset
    offset: float = 0.0


@dataclass(frozen=True, slots=True)
class _Design:
    theta: float
    offset: float
    kl: float


def _design(
    weights: Sequence[float], values: Sequence[float], mean: float, delta: float, *, se2: float, log_a: float
) -> _Design | None:
    """Reference ``mean - m`` against alternative ``mean - delta``, both tilts of the baseline."""
    if mean - delta <= values[0] + 1e-9:
        return None
    m = margin(delta, se2=se2, log_a=log_a)
    if m is None:
        return None
    lam_ref = tilt_for_mean(weights, values, mean - m)
    lam_alt = tilt_for_mean(weights, values, mean - delta)
    ref = tilt_moments(weights, values, lam_ref)
    alt = tilt_moments(weights, values, lam_alt)
    return _Design(lam_alt - lam_ref, alt.log_mgf - ref.log_mgf, tilt_kl(weights, values, lam_alt, lam_ref))


def calibrate(
    metric: Metric, *, day: date, baseline: Tally, baseline_days: int, settings: DriftSettings
) -> Calibration:
    """What the baseline lets the segment watch: the smallest drop confirmable in ``max_delay_days``."""
    points = POINTS[metric]
    min_drop = settings.min_drop[metric] / points
    never = Calibration(day, Status.WARMING_UP, baseline, baseline_days, 0.0, None, None, math.inf, None)
    if baseline_days < settings.min_baseline_days:
        return never
    n = baseline.n
    rate = n / baseline_days
    values = VALUES[metric]
    # Half an answer at each end of the scale: a baseline of identical answers still has a tilt.
    weights = [float(c) for c in baseline.counts]
    weights[0] += 0.5
    weights[-1] += 0.5
    base = tilt_moments(weights, values, 0.0)
    se2 = base.variance / sum(weights)
    log_a = settings.threshold

    def delay(design: _Design | None) -> float:
        if design is None or rate <= 0 or design.kl <= 0:
            return math.inf
        return log_a / (rate * design.kl)

    first = _design(weights, values, base.mean, min_drop, se2=se2, log_a=log_a)
    # A baseline too imprecise for any margin still gets its figure, as if the baseline were exact.
    at_min = delay(first or _design(weights, values, base.mean, min_drop, se2=0.0, log_a=log_a))
    small = replace(never, status=Status.TOO_SMALL, rate=rate, mean=base.mean, delay_min_drop=at_min)
    if first is not None and at_min <= settings.max_delay_days:
        return replace(
            small,
            status=Status.MONITORING,
            watched_drop=min_drop,
            delay_watched=at_min,
            theta=first.theta,
            offset=first.offset,
        )
    high = min(settings.max_drop[metric] / points, base.mean - values[0] - 1e-6)
    top = _design(weights, values, base.mean, high, se2=se2, log_a=log_a)
    if high <= min_drop or delay(top) > settings.max_delay_days:
        return small

    # The delay falls as the watched drop grows: regula falsi (Illinois) on log(delay / max delay)
    # from where a margin exists; the feasible end is kept, to a hundredth of the smallest drop.
    def gap(drop: float) -> float:
        return math.log(delay(_design(weights, values, base.mean, drop, se2=se2, log_a=log_a)) / target)

    target = settings.max_delay_days
    low = max(min_drop, 2.0 * math.sqrt(log_a * se2) * (1 + 1e-9))
    f_low, f_high = gap(low), gap(high)
    side = 0
    while high - low > 0.01 * min_drop and not -0.005 < f_high <= 0:
        if f_low <= 0:
            high, f_high = low, f_low
            break
        mid = (low + high) / 2
        if math.isfinite(f_low):
            mid = min(max((low * f_high - high * f_low) / (f_high - f_low), low + 1e-3 * min_drop), high)
        f_mid = gap(mid)
        if f_mid <= 0:
            high, f_high = mid, f_mid
            f_low = f_low / 2 if side == -1 else f_low
            side = -1
        else:
            low, f_low = mid, f_mid
            f_high = f_high / 2 if side == 1 else f_high
            side = 1
    chosen = _design(weights, values, base.mean, high, se2=se2, log_a=log_a)
    assert chosen is not None  # high always satisfies the condition
    return replace(
        small, watched_drop=high, delay_watched=delay(chosen), theta=chosen.theta, offset=chosen.offset
    )


# ---- the detector's state and its daily step -----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DriftState:
    """Everything carried from one day to the next for one (metric, segment)."""

    day: date | None = None  # the last closed day folded in
    log_sr: float = NEG_INF  # log of the Shiryaev-Roberts statistic (R = 0 at the start)
    cusum: float = 0.0  # Page's CUSUM on the same ratios: its excursion dates the change
    since: date | None = None  # first day of the CUSUM's current excursion
    before: Tally | None = None  # the baseline in force on ``since``
    after: Tally | None = None  # answers from ``since`` to ``day``
    floor: date | None = None  # the baseline starts no earlier (the change point of the last alarm)
    episode_since: date | None = None  # the change point of the alert being re-baselined, if any
    alarms: int = 0
    calibration: Calibration | None = None
    last_drop: DropEstimate | None = None  # what the last alarm detected (the API reports it)


def baseline_window(state: DriftState, *, day: date, settings: DriftSettings) -> DateRange:
    """The days whose counters make the baseline that judges ``day`` (the caller sums them)."""
    end = day - timedelta(days=settings.lag_days)
    start = end - timedelta(days=settings.baseline_days)
    if state.floor is not None and state.floor > start:
        start = min(state.floor, end)
    return DateRange(start, end)


def needs_calibration(state: DriftState, *, day: date, settings: DriftSettings) -> bool:
    """Weekly, and every day while warming up: the baseline moves slowly, the ratios stay predictable."""
    cal = state.calibration
    return cal is None or cal.status is Status.WARMING_UP or day.weekday() == settings.recalibrate_weekday


@dataclass(frozen=True, slots=True)
class DropEstimate:
    """What was detected, in the metric's points; the interval is a plain 95 % one (see the docs)."""

    since: date
    before: float
    after: float
    size: float  # before - after: positive is a drop
    ci_low: float
    ci_high: float
    answers_before: int
    answers_after: int


@dataclass(frozen=True, slots=True)
class Verdict:
    """One closed day judged: the status, whether an alert is due, and the evidence behind it."""

    day: date
    status: Status
    alarm: bool
    evidence: float  # log R (nats)
    threshold: float  # log A (nats)
    watched_drop: float | None  # points
    min_drop: float  # points: the smallest drop worth an alert
    delay_min_drop: float  # expected days to confirm ``min_drop`` at this segment's rate
    rate: float  # answers a day in the baseline
    drop: DropEstimate | None  # on an alarm


@dataclass(frozen=True, slots=True)
class Step:
    state: DriftState
    verdict: Verdict


class History:
    """A segment's day counters from ``start`` (the scorer's day buckets), summed over ranges in O(1)."""

    def __init__(self, metric: Metric, start: date, days: Sequence[Tally]) -> None:
        self.metric = metric
        self.start = start
        self.end = start + timedelta(days=len(days))
        width = len(VALUES[metric])
        running = [0] * width
        prefix = [tuple(running)]
        for t in days:
            running = [a + b for a, b in zip(running, t.counts, strict=True)]
            prefix.append(tuple(running))
        self._prefix = prefix

    @classmethod
    def from_counts(
        cls, metric: Metric, *, span: DateRange, counts: Mapping[date, Mapping[tuple[str, int], int]]
    ) -> History:
        """From day buckets keyed (scale, score), as the repository reads them; missing days are empty."""
        empty: Mapping[tuple[str, int], int] = {}
        return cls(
            metric,
            span.start,
            [tally(metric, counts.get(span.start + timedelta(days=i), empty)) for i in range(span.days)],
        )

    def _at(self, day: date) -> tuple[int, ...]:
        i = min(max((day - self.start).days, 0), len(self._prefix) - 1)
        return self._prefix[i]

    def total(self, days: DateRange) -> Tally:
        """Answers over ``days`` (days outside the history count as empty)."""
        hi, lo = self._at(days.end), self._at(days.start)
        return Tally(self.metric, tuple(a - b for a, b in zip(hi, lo, strict=True)))

    def day(self, day: date) -> Tally:
        return self.total(DateRange(day, day + timedelta(days=1)))


def advance(state: DriftState, *, history: History, day: date, settings: DriftSettings) -> Step:
    """Fold one closed day in, judged against the baseline of :func:`baseline_window` in ``history``."""
    if state.day is not None and day != state.day + timedelta(days=1):
        raise ValueError(f"days are folded one after the other: expected {state.day + timedelta(days=1)}")
    metric = history.metric
    answers = history.day(day)
    cal = state.calibration
    if cal is None or needs_calibration(state, day=day, settings=settings):
        window = baseline_window(state, day=day, settings=settings)
        cal = calibrate(
            metric, day=day, baseline=history.total(window), baseline_days=window.days, settings=settings
        )
    episode = state.episode_since if cal.status is Status.WARMING_UP else None
    log_sr, cusum, since = state.log_sr, state.cusum, state.since
    before, after = state.before, state.after
    if cal.watched_drop is None:
        log_sr, cusum, since, before, after = NEG_INF, 0.0, None, None, None
    else:
        llr = -cal.theta * answers.total - answers.n * cal.offset if answers.n else 0.0
        log_sr = sr_step(log_sr, llr)
        cusum = cusum_step(cusum, llr)
        if cusum <= 0.0:
            since, before, after = None, None, None
        elif since is None or after is None:
            since, before, after = day, cal.baseline, answers
        else:
            after = after + answers
    alarm = cal.watched_drop is not None and log_sr >= settings.threshold
    drop = None
    status = Status.DROP_DETECTED if episode is not None else cal.status
    new = replace(
        state,
        day=day,
        log_sr=log_sr,
        cusum=cusum,
        since=since,
        before=before,
        after=after,
        episode_since=episode,
        calibration=cal,
    )
    if alarm:
        start = since or day
        ref, seen = before or cal.baseline, after or answers
        # No answers since the change point can only follow years without one (then R <= days).
        drop = estimate(metric, since=start, before=ref, after=seen) if ref.n and seen.n else None
        status = Status.DROP_DETECTED
        # The new level becomes the baseline once known; until then the segment is re-baselining.
        new = DriftState(
            day=day,
            floor=start,
            episode_since=start,
            alarms=state.alarms + 1,
            last_drop=drop or state.last_drop,
        )
    verdict = Verdict(
        day=day,
        status=status,
        alarm=alarm,
        evidence=log_sr,
        threshold=settings.threshold,
        watched_drop=None if cal.watched_drop is None else cal.watched_drop * POINTS[metric],
        min_drop=settings.min_drop[metric],
        delay_min_drop=cal.delay_min_drop,
        rate=cal.rate,
        drop=drop,
    )
    return Step(new, verdict)


def sr_step(log_r: float, llr: float) -> float:
    """Shiryaev-Roberts in logs: ``R' = (1 + R) * exp(llr)``, without overflow (``R = 0`` is ``-inf``)."""
    if log_r == NEG_INF:
        return llr
    grown = log_r + math.log1p(math.exp(-log_r)) if log_r > 0 else math.log1p(math.exp(log_r))
    return grown + llr


def cusum_step(s: float, llr: float) -> float:
    """Page's CUSUM: ``max(0, S + llr)``."""
    return max(0.0, s + llr)


# ---- what was detected ----------------------------------------------------------------------------------
Z_95 = NormalDist().inv_cdf(0.975)


def _mean_var(t: Tally) -> tuple[float, float]:
    n = t.n
    values = VALUES[t.metric]
    mean = t.total / n
    var = sum(c * (v - mean) ** 2 for c, v in zip(t.counts, values, strict=True)) / n
    return mean, var


@dataclass(frozen=True, slots=True)
class Interval:
    low: float
    high: float


def newcombe_difference(x1: int, n1: int, x2: int, n2: int, z: float = Z_95) -> Interval:
    """Interval for p1 - p2 from the two Wilson intervals (Newcombe 1998, method 10)."""
    l1, u1 = wilson_interval(x1, n1, z)
    l2, u2 = wilson_interval(x2, n2, z)
    if l1 is None or u1 is None or l2 is None or u2 is None:
        raise ValueError("both samples need answers")
    p1, p2 = x1 / n1, x2 / n2
    d = p1 - p2
    return Interval(
        d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    )


def estimate(metric: Metric, *, since: date, before: Tally, after: Tally) -> DropEstimate:
    """The drop between the baseline and the answers since the change point, with its 95 % interval."""
    points = POINTS[metric]
    n1, n2 = before.n, after.n
    if n1 == 0 or n2 == 0:
        raise ValueError("both the baseline and the answers since the change need answers")
    m1, v1 = _mean_var(before)
    m2, v2 = _mean_var(after)
    if metric is Metric.CSAT:
        ci = newcombe_difference(round(before.total), n1, round(after.total), n2)
        low, high = ci.low, ci.high
    else:
        half = Z_95 * math.sqrt(v1 / n1 + v2 / n2)
        low, high = m1 - m2 - half, m1 - m2 + half
    return DropEstimate(
        since=since,
        before=m1 * points,
        after=m2 * points,
        size=(m1 - m2) * points,
        ci_low=low * points,
        ci_high=high * points,
        answers_before=n1,
        answers_after=n2,
    )


def describe(verdict: Verdict, *, metric: Metric, settings: DriftSettings) -> str:
    """The verdict in one sentence for people (the API and the alert say it as it is)."""
    years = settings.months_per_false_alarm / 12
    budget = f"one false alarm per {years:g} years" if years >= 1 else "the false-alarm budget"
    unit = "points" if metric is not Metric.CES else "points of ease (1-7)"
    smallest = f"a drop of {verdict.min_drop:g} {unit}"
    if verdict.status is Status.WARMING_UP:
        return f"learning the segment's level: {settings.min_baseline_days} days of baseline are needed"
    if verdict.drop is not None:
        d = verdict.drop
        return (
            f"{metric.value.upper()} dropped by {d.size:.1f} {unit} (95 % interval {d.ci_low:.1f} to "
            f"{d.ci_high:.1f}) since {d.since.isoformat()}: {d.before:.1f} -> {d.after:.1f} on "
            f"{d.answers_after} answers; evidence {verdict.evidence:.1f} >= {verdict.threshold:.1f} nats"
        )
    if verdict.status is Status.DROP_DETECTED:
        return "a drop was detected; its new level becomes the baseline"
    if verdict.status is Status.TOO_SMALL:
        took = (
            f"about {verdict.delay_min_drop:.0f} days"
            if math.isfinite(verdict.delay_min_drop)
            else "longer than the baseline can tell"
        )
        head = (
            f"too small to monitor {smallest}: at {verdict.rate:.1f} answers a day "
            f"it would take {took} to confirm at {budget}"
        )
        if verdict.watched_drop is None:
            return head + "; no drop up to the largest watched can be confirmed in time"
        return (
            f"{head}; drops of {verdict.watched_drop:.1f} {unit} or more are watched "
            f"(about {settings.max_delay_days:g} days)"
        )
    return (
        f"watching for {smallest} (about {verdict.delay_min_drop:.0f} days to "
        f"confirm at {verdict.rate:.1f} answers a day, {budget})"
    )


# ---- driving it ---------------------------------------------------------------------------------------
def closed_days(state: DriftState, *, now: datetime, grace: timedelta, first: date) -> list[date]:
    """Days not folded yet whose bucket closed at least ``grace`` ago (late answers land first)."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    last = (now.astimezone(UTC) - grace).date() - timedelta(days=1)
    start = first if state.day is None else state.day + timedelta(days=1)
    return [start + timedelta(days=i) for i in range((last - start).days + 1)]


@dataclass(frozen=True, slots=True)
class Folded:
    state: DriftState
    verdicts: list[Verdict]

    @property
    def alarms(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.alarm]


def fold(state: DriftState, *, history: History, days: Iterable[date], settings: DriftSettings) -> Folded:
    """Fold closed days in order (what an evaluation does with the days :func:`closed_days` lists)."""
    verdicts: list[Verdict] = []
    for day in days:
        step = advance(state, history=history, day=day, settings=settings)
        state = step.state
        verdicts.append(step.verdict)
    return Folded(state, verdicts)


# ---- one segment, one evaluation: what the scorer's drift step and ``make stats`` both call ------------
DRIFT_DROP = "drift_drop"
#: A segment's first fold (a new segment, a deployment on old data, a replay) catches up from its first
#: day but publishes only the alarms of its last closed days: older news is not an alert any more.
CATCH_UP_PUBLISH_DAYS = 2


def last_closed_day(now: datetime, *, grace: timedelta) -> date:
    """The last UTC day whose bucket closed at least ``grace`` before ``now``."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    return (now.astimezone(UTC) - grace).date() - timedelta(days=1)


@dataclass(frozen=True, slots=True)
class SegmentRound:
    """One evaluation of one (metric, segment): its new state, every day judged, the alarms to publish."""

    state: DriftState
    verdicts: list[Verdict]
    publish: list[Verdict]


def evaluate_segment(
    state: DriftState,
    *,
    history: History,
    first: date,
    now: datetime,
    grace: timedelta,
    settings: DriftSettings,
) -> SegmentRound:
    """Fold every closed day not folded yet (from ``first`` on a first fold) and say which alarms to publish.

    ``history`` must cover the baseline of the first day folded through the last closed day.
    """
    days = closed_days(state, now=now, grace=grace, first=first)
    folded = fold(state, history=history, days=days, settings=settings)
    alarms = folded.alarms
    if state.day is None:
        recent = last_closed_day(now, grace=grace) - timedelta(days=CATCH_UP_PUBLISH_DAYS - 1)
        alarms = [v for v in alarms if v.day >= recent]
    return SegmentRound(folded.state, folded.verdicts, alarms)


def history_start(state: DriftState, *, first: date, settings: DriftSettings) -> date:
    """The first day whose counters the next evaluation reads: the whole history on a first fold,
    else the baseline of the next day to fold."""
    if state.day is None:
        return first
    return state.day + timedelta(days=1 - settings.lag_days - settings.baseline_days)


def alert_id(metric: Metric, segment: str, day: date) -> str:
    """Deterministic: the alarm of a (metric, segment) on a day has one id, in a replay too."""
    return str(uuid.uuid5(ALERT_NAMESPACE, f"{metric.value}|{segment}|{DRIFT_DROP}|{day.isoformat()}"))


def status_of(state: DriftState) -> Status:
    """The status a stored state stands for (after an alarm the new level is being learnt)."""
    cal = state.calibration
    if state.episode_since is not None and (cal is None or cal.status is Status.WARMING_UP):
        return Status.DROP_DETECTED
    return Status.WARMING_UP if cal is None else cal.status


def verdict_of(state: DriftState, *, metric: Metric, settings: DriftSettings) -> Verdict:
    """The latest verdict as a state keeps it (for the API: what :func:`describe` says of it)."""
    cal = state.calibration
    status = status_of(state)
    if state.day is None:
        raise ValueError("a state that folded no day has no verdict")
    return Verdict(
        day=state.day,
        status=status,
        alarm=False,
        evidence=state.log_sr,
        threshold=settings.threshold,
        watched_drop=None if cal is None or cal.watched_drop is None else cal.watched_drop * POINTS[metric],
        min_drop=settings.min_drop[metric],
        delay_min_drop=math.inf if cal is None else cal.delay_min_drop,
        rate=0.0 if cal is None else cal.rate,
        drop=state.last_drop if status is Status.DROP_DETECTED else None,
    )
