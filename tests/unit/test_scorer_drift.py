"""Drift alerts (services/scorer/drift.py): the statistics against known values and independent
computations, then the detector's behaviour on seeded streams of daily counters."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest

from services.scorer import drift
from services.scorer.drift import (
    VALUES,
    DateRange,
    DriftSettings,
    DriftState,
    History,
    Status,
)
from shared.scales import Metric

SETTINGS = DriftSettings()
START = date(2025, 1, 6)  # a Monday
_erfc = np.vectorize(math.erfc)


def normal_cdf(x: np.ndarray) -> np.ndarray:
    return np.asarray(0.5 * _erfc(-x / math.sqrt(2.0)), dtype=float)


def bernoulli_kl(a: float, b: float) -> float:
    return a * math.log(a / b) + (1 - a) * math.log((1 - a) / (1 - b))


# ---- answer values and tallies --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("metric", "scale", "score", "value"),
    [
        (Metric.CSAT, "1-5", 5, 1.0),
        (Metric.CSAT, "1-5", 4, 1.0),
        (Metric.CSAT, "1-5", 3, 0.0),  # neutral counts in the denominator, not as positive
        (Metric.CSAT, "1-3", 3, 1.0),
        (Metric.CSAT, "1-10", 7, 1.0),
        (Metric.CSAT, "yes-no", 0, 0.0),
        (Metric.NPS, "0-10", 10, 1.0),
        (Metric.NPS, "0-10", 8, 0.0),
        (Metric.NPS, "0-10", 6, -1.0),
        (Metric.CES, "1-7", 7, 7.0),  # "how easy": higher is easier
        (Metric.CES, "1-7", 1, 1.0),
        (Metric.CES, "1-5", 1, 7.0),  # "how much effort": 1 is the easiest
        (Metric.CES, "1-5", 5, 1.0),
        (Metric.CES, "1-5", 2, 5.5),
    ],
)
def test_answer_values_put_every_scale_the_right_way_up(
    metric: Metric, scale: str, score: int, value: float
) -> None:
    assert drift.answer_value(metric, scale, score) == value


def test_a_tally_folds_counters_of_several_scales_onto_one_grid() -> None:
    t = drift.tally(Metric.CES, {("1-7", 7): 2, ("1-5", 1): 3, ("1-5", 5): 1, ("1-7", 4): 0})
    assert t.n == 6
    assert t.total == 2 * 7 + 3 * 7 + 1 * 1
    assert VALUES[Metric.CES] == (1.0, 2.0, 2.5, 3.0, 4.0, 5.0, 5.5, 6.0, 7.0)
    assert (t + t - t) == t


@pytest.mark.parametrize(
    ("span", "expected"),
    [
        (DateRange(START, START + timedelta(days=3)), 1 + 2 + 3),
        (DateRange(START + timedelta(days=1), START + timedelta(days=2)), 2),
        (DateRange(START - timedelta(days=10), START + timedelta(days=1)), 1),  # before the history: empty
        (DateRange(START + timedelta(days=2), START + timedelta(days=40)), 3),  # after it: empty
        (DateRange(START + timedelta(days=2), START + timedelta(days=2)), 0),
    ],
)
def test_history_sums_day_buckets_over_a_range(span: DateRange, expected: int) -> None:
    counts = {START + timedelta(days=i): {("1-5", 5): i + 1} for i in range(3)}
    history = History.from_counts(
        Metric.CSAT, span=DateRange(START, START + timedelta(days=3)), counts=counts
    )
    assert history.total(span).n == expected


# ---- tilts, divergences, margins ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("p", "q", "kl"),
    [
        (0.8, 0.7, 0.028167557595283554),  # KL(0.7 || 0.8): the 10-point CSAT drop of the targets
        (0.8, 0.6, None),
        (0.8, 0.75, None),
        (0.5, 0.3, None),
        (0.95, 0.85, None),
    ],
)
def test_a_tilt_of_a_two_point_baseline_is_the_bernoulli_with_that_mean(
    p: float, q: float, kl: float | None
) -> None:
    weights, values = [1 - p, p], [0.0, 1.0]
    lam = drift.tilt_for_mean(weights, values, q)
    assert drift.tilt_moments(weights, values, lam).mean == pytest.approx(q, abs=1e-12)
    # The tilt's log-likelihood ratio per answer is the Bernoulli one: log(q/p) for a positive answer.
    mom = drift.tilt_moments(weights, values, lam)
    assert -lam * 1.0 - mom.log_mgf == pytest.approx(math.log(q / p), abs=1e-12)
    assert -lam * 0.0 - mom.log_mgf == pytest.approx(math.log((1 - q) / (1 - p)), abs=1e-12)
    expected = bernoulli_kl(q, p) if kl is None else kl
    assert drift.tilt_kl(weights, values, lam, 0.0) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize(
    ("shares", "target"),
    [
        ((0.2, 0.3, 0.5), 0.2),  # NPS 30 -> 20 (detractor, passive, promoter)
        ((0.2, 0.3, 0.5), 0.1),
        ((0.1, 0.6, 0.3), 0.0),
        ((0.4, 0.2, 0.4), -0.2),
    ],
)
def test_the_tilt_is_the_closest_three_class_distribution_with_the_lower_mean(
    shares: tuple[float, float, float], target: float
) -> None:
    """Among all (detractor, passive, promoter) shares with NPS ``target`` (a one-parameter family,
    scanned here on a fine grid), the tilt has the smallest KL divergence from the baseline."""
    values = [-1.0, 0.0, 1.0]
    lam = drift.tilt_for_mean(list(shares), values, target)
    best = drift.tilt_kl(list(shares), values, lam, 0.0)
    # promoters - detractors = target; passives = 1 - promoters - detractors
    d = np.linspace(1e-6, (1 - target) / 2 - 1e-6, 200001)
    q = np.stack([d, 1 - 2 * d - target, d + target], axis=1)
    q = q[(q > 0).all(axis=1)]
    scanned = np.sum(q * np.log(q / np.array(shares)), axis=1)
    assert best == pytest.approx(float(scanned.min()), abs=1e-9)
    assert best <= float(scanned.min()) + 1e-12


@pytest.mark.parametrize(
    ("delta", "se2", "log_a", "expected"),
    [
        (0.10, 0.0, 8.2, 0.0),  # a perfect baseline needs no margin
        (0.10, 3.5e-4, 8.2, None),  # 5 answers a day, 13 weeks: too imprecise for a 10-point drop
        (0.10, 0.16 / 1820, 8.2, None),  # 20 answers a day: checked by its defining equation below
        (0.20, 0.16 / 455, 8.2, None),
    ],
)
def test_the_margin_solves_its_equation(
    delta: float, se2: float, log_a: float, expected: float | None
) -> None:
    m = drift.margin(delta, se2=se2, log_a=log_a)
    if delta * delta < 4 * log_a * se2:
        assert m is None
        return
    assert m is not None
    if expected is not None:
        assert m == pytest.approx(expected)
    assert m * (delta - m) == pytest.approx(log_a * se2, rel=1e-9)
    assert 0 <= m <= delta / 2


@pytest.mark.parametrize(
    ("metric", "counts"),
    [
        (Metric.CSAT, {("1-5", 5): 800, ("1-5", 4): 650, ("1-5", 2): 370}),
        (Metric.NPS, {("0-10", 10): 900, ("0-10", 8): 550, ("0-10", 3): 370}),
        (Metric.CES, {("1-7", 7): 600, ("1-7", 5): 600, ("1-5", 4): 300, ("1-7", 1): 320}),
    ],
)
def test_a_days_ratio_has_mean_one_under_the_reference_and_gains_kl_under_the_drop(
    metric: Metric, counts: dict[tuple[str, int], int]
) -> None:
    """The daily ratio is a likelihood ratio: its mean is exactly 1 under the reference (the baseline
    lowered by the margin), which is what makes R - t a martingale."""
    baseline = drift.tally(metric, counts)
    cal = drift.calibrate(metric, day=START, baseline=baseline, baseline_days=91, settings=SETTINGS)
    assert cal.mean is not None and cal.watched_drop is not None
    values = VALUES[metric]
    weights = [float(c) for c in baseline.counts]
    weights[0] += 0.5
    weights[-1] += 0.5
    se2 = drift.tilt_moments(weights, values, 0.0).variance / sum(weights)
    m = drift.margin(cal.watched_drop, se2=se2, log_a=SETTINGS.threshold)
    assert m is not None and 0 < m < cal.watched_drop / 2

    def tilted(mean: float) -> np.ndarray:
        lam = drift.tilt_for_mean(weights, values, mean)
        w = np.array(weights) * np.exp(-lam * np.array(values))
        return np.asarray(w / w.sum(), dtype=float)

    ratio = np.exp(-cal.theta * np.array(values) - cal.offset)
    ref, alt = tilted(cal.mean - m), tilted(cal.mean - cal.watched_drop)
    seen = alt > 0  # values no answer took have no weight in either
    assert float(ref @ ratio) == pytest.approx(1.0, abs=1e-12)
    kl = float(np.sum(alt[seen] * np.log(alt[seen] / ref[seen])))
    assert float(alt @ np.log(ratio)) == pytest.approx(kl, rel=1e-9)
    assert float(alt @ np.log(ratio)) > 0 > float(ref @ np.log(ratio))


# ---- the procedure's run lengths --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("log_r", "llr"),
    [(-math.inf, 0.0), (-math.inf, 1.5), (0.0, 0.0), (2.0, -0.5), (-30.0, 0.1), (800.0, 1.0), (-5.0, -2.0)],
)
def test_the_steps_are_the_textbook_recursions(log_r: float, llr: float) -> None:
    r = 0.0 if log_r == -math.inf else math.exp(min(log_r, 700))
    expected = math.log1p(r) + llr if log_r < 700 else log_r + llr  # log((1 + R) e^llr)
    assert drift.sr_step(log_r, llr) == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert drift.cusum_step(max(log_r, 0.0), llr) == max(0.0, max(log_r, 0.0) + llr)


def _sr_arl(threshold: float, mu: float, cells: int = 700) -> float:
    """ARL to false alarm of Shiryaev-Roberts on N(0,1) data tuned to N(mu,1) (Markov chain on R)."""
    edges = np.linspace(0.0, threshold, cells + 1)
    mids = (edges[:-1] + edges[1:]) / 2

    def row(log_start: float) -> np.ndarray:
        # log R' = sr_step(log R, mu X - mu^2/2) < log e  <=>  X < (log e - sr_step(log R, 0) + mu^2/2) / mu
        with np.errstate(divide="ignore"):
            z = (np.log(edges) - drift.sr_step(log_start, 0.0) + mu * mu / 2) / mu
        cdf = normal_cdf(z)
        return np.asarray(cdf[1:] - cdf[:-1], dtype=float)

    chain = np.array([row(math.log(r)) for r in mids])
    arl = np.linalg.solve(np.eye(cells) - chain, np.ones(cells))
    return float(1.0 + row(-math.inf) @ arl)


def _siegmund_nu(x: float) -> float:
    """Siegmund's overshoot constant nu(x) = 2 x^-2 exp(-2 sum_n n^-1 Phi(-x sqrt(n) / 2))."""
    n = np.arange(1, 4000)
    return float(2 / x**2 * math.exp(-2 * np.sum(normal_cdf(-x * np.sqrt(n) / 2) / n)))


@pytest.mark.parametrize(("threshold", "mu"), [(100.0, 1.0), (500.0, 1.0), (300.0, 0.5)])
def test_shiryaev_roberts_never_alarms_sooner_on_average_than_its_threshold(
    threshold: float, mu: float
) -> None:
    """Pollak's bound E[T] >= A (the guarantee of the settings), and the closed form E[T] ~ A / nu(mu)
    (overshoot correction) against a Markov-chain computation of the run length."""
    arl = _sr_arl(threshold, mu)
    assert arl >= threshold
    assert arl == pytest.approx(threshold / _siegmund_nu(mu), rel=0.01)


def _cusum_arl(h: float, k: float, shift: float, cells: int = 500) -> float:
    """Brook and Evans' Markov chain for the one-sided CUSUM on N(shift, 1) with reference k."""
    w = h / cells
    edges = np.arange(cells + 1) * w
    mids = (np.arange(cells) + 0.5) * w
    mids[0] = 0.0
    chain = np.zeros((cells, cells))
    for i, s in enumerate(mids):
        # next state drift.cusum_step(s, x - k) falls in cell j when it lies in [edges[j], edges[j + 1])
        cdf = normal_cdf(edges - s + k - shift)
        chain[i, 0] = cdf[1]
        chain[i, 1:] = cdf[2:] - cdf[1:-1]
        assert drift.cusum_step(s, -s - 1.0) == 0.0  # a large enough fall resets it, as the chain assumes
    return float(np.linalg.solve(np.eye(cells) - chain, np.ones(cells))[0])


@pytest.mark.parametrize(
    ("h", "shift", "literature"),
    [(4.0, 0.0, 336.0), (5.0, 0.0, 930.0), (4.0, 1.0, 8.38), (5.0, 1.0, 10.4)],
)
def test_page_cusum_run_lengths_match_the_tables(h: float, shift: float, literature: float) -> None:
    """One-sided CUSUM k = 0.5: in-control ARL 336 / 930 and 8.38 / 10.4 at a one-sigma shift (Hawkins'
    tables), the Markov chain, and Siegmund's approximation with b = h + 1.166."""
    arl = _cusum_arl(h, 0.5, shift)
    assert arl == pytest.approx(literature, rel=0.01)
    d, b = shift - 0.5, h + 1.166
    siegmund = (math.exp(-2 * d * b) + 2 * d * b - 1) / (2 * d * d)
    assert siegmund == pytest.approx(arl, rel=0.015)


def test_r_minus_t_is_a_martingale_exactly() -> None:
    """E[R_t] = t under an unchanged segment, by enumerating every outcome of 6 days of 3 answers."""
    p0, p1, n = 0.8, 0.7, 3
    outcomes = [
        (
            math.comb(n, x) * p0**x * (1 - p0) ** (n - x),
            x * math.log(p1 / p0) + (n - x) * math.log((1 - p1) / (1 - p0)),
        )
        for x in range(n + 1)
    ]
    dist = {-math.inf: 1.0}  # log R -> probability
    for t in range(1, 7):
        nxt: dict[float, float] = {}
        for log_r, pr in dist.items():
            for po, llr in outcomes:
                key = round(drift.sr_step(log_r, llr), 12)
                nxt[key] = nxt.get(key, 0.0) + pr * po
        dist = nxt
        assert sum(pr * math.exp(lr) for lr, pr in dist.items()) == pytest.approx(t, rel=1e-12)


# ---- intervals --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("x1", "n1", "x2", "n2", "low", "high"),
    [  # Newcombe (1998), Table II, method 10
        (56, 70, 48, 80, 0.0524, 0.3339),
        (9, 10, 3, 10, 0.1705, 0.8090),
        (6, 7, 2, 7, 0.0582, 0.8062),
        (5, 56, 0, 29, -0.0381, 0.1926),
        (0, 10, 0, 20, -0.1611, 0.2775),
    ],
)
def test_newcombe_interval_of_a_difference(
    x1: int, n1: int, x2: int, n2: int, low: float, high: float
) -> None:
    ci = drift.newcombe_difference(x1, n1, x2, n2)
    assert (round(ci.low, 4), round(ci.high, 4)) == (low, high)


def test_the_estimate_reports_points_and_an_interval_around_the_drop() -> None:
    before = drift.tally(Metric.CSAT, {("1-5", 5): 1456, ("1-5", 2): 364})  # 80 %
    after = drift.tally(Metric.CSAT, {("1-5", 5): 140, ("1-5", 2): 60})  # 70 %
    est = drift.estimate(Metric.CSAT, since=START, before=before, after=after)
    assert (est.before, est.after, est.size) == pytest.approx((80.0, 70.0, 10.0))
    ci = drift.newcombe_difference(1456, 1820, 140, 200)
    assert (est.ci_low, est.ci_high) == pytest.approx((100 * ci.low, 100 * ci.high))
    nps = drift.estimate(
        Metric.NPS,
        since=START,
        before=drift.tally(Metric.NPS, {("0-10", 10): 50, ("0-10", 8): 30, ("0-10", 1): 20}),
        after=drift.tally(Metric.NPS, {("0-10", 10): 40, ("0-10", 8): 30, ("0-10", 1): 30}),
    )
    # NPS 30 -> 10; each sample's variance of (+1, 0, -1) is p + d - (p - d)^2
    half = 1.959963984540054 * math.sqrt((0.7 - 0.09) / 100 + (0.7 - 0.01) / 100) * 100
    assert (nps.size, nps.ci_low, nps.ci_high) == pytest.approx((20.0, 20.0 - half, 20.0 + half))


# ---- the detector on streams of daily counters ------------------------------------------------------------
Dist = dict[tuple[str, int], float]


def stream(
    metric: Metric, rng: random.Random, *, days: int, rate: int, dist: Callable[[int], Dist]
) -> History:
    """``rate`` answers a day drawn from ``dist(day)``, as day buckets keyed (scale, score)."""
    counts: dict[date, dict[tuple[str, int], int]] = {}
    for d in range(days):
        probs = dist(d)
        keys = list(probs)
        drawn = rng.choices(keys, weights=[probs[k] for k in keys], k=rate)
        day: dict[tuple[str, int], int] = {}
        for k in drawn:
            day[k] = day.get(k, 0) + 1
        counts[START + timedelta(days=d)] = day
    return History.from_counts(metric, span=DateRange(START, START + timedelta(days=days)), counts=counts)


def csat(p: float) -> Dist:
    return {("1-5", 5): p, ("1-5", 2): 1 - p}


def run(history: History, days: int, settings: DriftSettings = SETTINGS) -> drift.Folded:
    return drift.fold(
        DriftState(),
        history=history,
        days=[START + timedelta(days=i) for i in range(days)],
        settings=settings,
    )


HISTORY_DAYS = SETTINGS.lag_days + SETTINGS.baseline_days


def test_a_stable_segment_is_watched_and_never_alerted() -> None:
    days = HISTORY_DAYS + 365
    out = run(stream(Metric.CSAT, random.Random(7), days=days, rate=20, dist=lambda d: csat(0.8)), days)
    assert out.alarms == []
    last = out.verdicts[-1]
    assert last.status is Status.MONITORING and last.watched_drop == 10.0
    assert last.evidence < last.threshold == pytest.approx(math.log(120 * 365.25 / 12))
    assert 10 < last.delay_min_drop < SETTINGS.max_delay_days
    assert "watching for a drop of 10 points" in drift.describe(last, metric=Metric.CSAT, settings=SETTINGS)


def test_a_step_drop_is_alerted_once_with_its_change_point_and_size() -> None:
    change = HISTORY_DAYS + 60
    days = change + 150
    history = stream(
        Metric.CSAT, random.Random(11), days=days, rate=20, dist=lambda d: csat(0.8 if d < change else 0.65)
    )
    out = run(history, days)
    assert len(out.alarms) == 1  # then the new level becomes the baseline: no second alert for it
    alarm = out.alarms[0]
    assert alarm.drop is not None
    # Page's estimate: here a week of unlucky answers just before the change is counted in it
    assert abs((alarm.drop.since - START).days - change) <= 7
    assert 0 < (alarm.day - START).days - change <= 14
    assert alarm.drop.ci_low < 15.0 < alarm.drop.ci_high
    assert alarm.evidence >= alarm.threshold
    statuses = [v.status for v in out.verdicts[(alarm.day - START).days :]]
    assert statuses[0] is Status.DROP_DETECTED and statuses[-1] is Status.MONITORING
    assert "dropped by" in drift.describe(alarm, metric=Metric.CSAT, settings=SETTINGS)


def test_the_state_does_not_depend_on_how_often_it_is_evaluated() -> None:
    """Evaluating at 300 random instants (several a day, none for days) folds the same closed days to
    the same state and the same alerts as one evaluation a day."""
    change = HISTORY_DAYS + 40
    days = change + 60
    history = stream(
        Metric.CSAT, random.Random(3), days=days, rate=20, dist=lambda d: csat(0.8 if d < change else 0.6)
    )
    daily = run(history, days)
    rng = random.Random(5)
    instants = sorted(
        datetime.combine(START, datetime.min.time(), UTC) + timedelta(seconds=rng.uniform(0, days * 86400))
        for _ in range(300)
    )
    state, alarms = DriftState(), []
    for now in [*instants, datetime.combine(START + timedelta(days=days), datetime.min.time(), UTC)]:
        due = drift.closed_days(state, now=now + timedelta(hours=1), grace=timedelta(hours=1), first=START)
        out = drift.fold(state, history=history, days=due, settings=SETTINGS)
        state = out.state
        alarms += out.alarms
    assert state == daily.state
    assert alarms == daily.alarms and len(alarms) == 1


@pytest.mark.parametrize(
    ("metric", "usual", "changed", "alerted"),
    [
        # NPS 30: promoters down and detractors up is a drop; the reverse is not
        (
            Metric.NPS,
            {("0-10", 10): 0.5, ("0-10", 8): 0.3, ("0-10", 3): 0.2},
            {("0-10", 10): 0.35, ("0-10", 8): 0.3, ("0-10", 3): 0.35},
            True,
        ),
        (
            Metric.NPS,
            {("0-10", 10): 0.5, ("0-10", 8): 0.3, ("0-10", 3): 0.2},
            {("0-10", 10): 0.65, ("0-10", 8): 0.3, ("0-10", 3): 0.05},
            False,
        ),
        # CES 1-7 "how easy": lower answers are a drop
        (
            Metric.CES,
            {("1-7", 7): 0.4, ("1-7", 5): 0.4, ("1-7", 2): 0.2},
            {("1-7", 7): 0.25, ("1-7", 5): 0.4, ("1-7", 2): 0.35},
            True,
        ),
        (
            Metric.CES,
            {("1-7", 7): 0.4, ("1-7", 5): 0.4, ("1-7", 2): 0.2},
            {("1-7", 7): 0.55, ("1-7", 5): 0.4, ("1-7", 2): 0.05},
            False,
        ),
        # CES 1-5 "how much effort": higher answers (more effort) are the drop
        (
            Metric.CES,
            {("1-5", 1): 0.4, ("1-5", 2): 0.4, ("1-5", 4): 0.2},
            {("1-5", 1): 0.25, ("1-5", 2): 0.4, ("1-5", 4): 0.35},
            True,
        ),
        (
            Metric.CES,
            {("1-5", 1): 0.4, ("1-5", 2): 0.4, ("1-5", 4): 0.2},
            {("1-5", 1): 0.55, ("1-5", 2): 0.4, ("1-5", 4): 0.05},
            False,
        ),
    ],
)
def test_only_a_change_for_the_worse_is_alerted(
    metric: Metric, usual: Dist, changed: Dist, alerted: bool
) -> None:
    change = HISTORY_DAYS + 30
    days = change + 60
    history = stream(
        metric, random.Random(17), days=days, rate=40, dist=lambda d: usual if d < change else changed
    )
    out = run(history, days)
    assert bool(out.alarms) is alerted
    if alerted:
        drop = out.alarms[0].drop
        assert drop is not None and drop.size > 0 and drop.before > drop.after


@pytest.mark.parametrize(
    ("rate", "status", "watched"),
    [
        (100, Status.MONITORING, (10.0, 10.0)),
        (20, Status.MONITORING, (10.0, 10.0)),
        (5, Status.TOO_SMALL, (12.0, 25.0)),  # watches the drops it can confirm in 4 weeks
        (1, Status.TOO_SMALL, None),  # not even a 30-point drop: nothing is watched
    ],
)
def test_a_segment_says_when_it_is_too_small_to_monitor(
    rate: int, status: Status, watched: tuple[float, float] | None
) -> None:
    days = HISTORY_DAYS + 7
    out = run(stream(Metric.CSAT, random.Random(rate), days=days, rate=rate, dist=lambda d: csat(0.8)), days)
    last = out.verdicts[-1]
    assert last.status is status
    if watched is None:
        assert last.watched_drop is None
    else:
        assert last.watched_drop is not None and watched[0] <= last.watched_drop <= watched[1]
    text = drift.describe(last, metric=Metric.CSAT, settings=SETTINGS)
    if status is Status.TOO_SMALL:
        assert text.startswith("too small to monitor a drop of 10 points: at ")
        assert last.delay_min_drop > SETTINGS.max_delay_days
        assert ("are watched" in text) is (watched is not None)


def test_days_are_folded_one_after_the_other() -> None:
    history = stream(Metric.CSAT, random.Random(1), days=3, rate=5, dist=lambda d: csat(0.8))
    step = drift.advance(DriftState(), history=history, day=START, settings=SETTINGS)
    with pytest.raises(ValueError, match="one after the other"):
        drift.advance(step.state, history=history, day=START + timedelta(days=2), settings=SETTINGS)


def test_closed_days_wait_for_the_grace_after_midnight() -> None:
    state = replace(DriftState(), day=START)
    midnight = datetime.combine(START + timedelta(days=2), datetime.min.time(), UTC)
    grace = timedelta(hours=1)
    # The day after START closes at ``midnight``; late answers have until ``midnight + grace``.
    assert drift.closed_days(state, now=midnight + timedelta(minutes=59), grace=grace, first=START) == []
    assert drift.closed_days(state, now=midnight + grace, grace=grace, first=START) == [
        START + timedelta(days=1)
    ]
    assert drift.closed_days(state, now=midnight + timedelta(days=3), grace=grace, first=START) == [
        START + timedelta(days=d) for d in (1, 2, 3)
    ]
    assert drift.closed_days(DriftState(), now=midnight + grace, grace=grace, first=START)[0] == START


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"months_per_false_alarm": 0.01}, "more than one day"),
        ({"lag_days": 14}, "its own baseline"),  # shorter than max_delay_days
        ({"min_baseline_days": 0}, "between 1 and baseline_days"),
        ({"min_drop": {Metric.CSAT: 40.0, Metric.NPS: 10.0, Metric.CES: 0.5}}, "csat: need 0 < min_drop"),
    ],
)
def test_settings_refuse_what_cannot_work(bad: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DriftSettings(**bad)  # type: ignore[arg-type]  # the table mixes the fields' types


def test_baseline_windows_lag_and_stop_at_the_last_change() -> None:
    day = START + timedelta(days=200)
    window = drift.baseline_window(DriftState(), day=day, settings=SETTINGS)
    assert window == DateRange(day - timedelta(days=28 + 91), day - timedelta(days=28))
    after = replace(DriftState(), floor=day - timedelta(days=40))
    assert drift.baseline_window(after, day=day, settings=SETTINGS).days == 12
