"""Account health scores: normalisations, weights, missing data, bands, and an explanation that adds up."""

from __future__ import annotations

import itertools
import random
from datetime import timedelta
from fractions import Fraction
from typing import Any

import pytest

from services.actions.health.evidence import Evidence
from services.actions.health.model import Band, Direction, Threshold
from services.actions.health.normalise import BaseCounts, BaseDistribution, piecewise, quantise
from services.actions.health.score import apportion, band_for, evaluate
from tests.unit.health_support import AS_OF, model, signal, usage


# ---- normalisations -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("points", "value", "expected"),
    [
        ([(0, 0), (10, 100)], -5, 0),  # flat before the first point
        ([(0, 0), (10, 100)], 0, 0),
        ([(0, 0), (10, 100)], 2.5, 25),
        ([(0, 0), (10, 100)], 10, 100),
        ([(0, 0), (10, 100)], 1e9, 100),  # flat after the last
        ([(0, 0), (5, 50), (20, 100)], 5, 50),  # on a breakpoint
        ([(0, 0), (5, 50), (20, 100)], 12.5, 75),
        ([(0, 0), (5, 50), (20, 100)], 4, 40),
        ([(0, 100), (1, 50), (3, 0)], 2, 25),  # falling: higher is worse
        ([(0, 100), (1, 50), (3, 0)], 0.5, 75),
        ([(-50, 0), (-20, 40), (0, 80), (20, 100)], -35, 20),
        ([(40, 0), (70, 50), (90, 100)], 80, 75),
    ],
)
def test_piecewise_linear(points: list[tuple[float, float]], value: float, expected: float) -> None:
    assert piecewise([Threshold(*p) for p in points], value) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("values", "value", "expected"),
    [
        ([1, 2, 2, 3], 2, 0.5),  # one below, two at it (count half): (1 + 1) / 4
        ([1, 2, 2, 3], 3, 0.875),
        ([1, 2, 2, 3], 0, 0.0),
        ([1, 2, 2, 3], 9, 1.0),
        ([1, 2, 2, 3], 2.5, 0.75),  # between steps: the three below
        ([5], 5, 0.5),  # alone in the base: the middle
        ([1, 2, 3, 4], 2.004, 0.375),  # quantised to 0.01: counts at 2.00
        ([1, 2, 3, 4], 2.006, 0.5),  # ... and at 2.01 (not in the base)
    ],
)
def test_percentile_is_the_mid_rank_in_the_base(values: list[float], value: float, expected: float) -> None:
    base = BaseDistribution.from_values(values, resolution=0.01)
    assert base.percentile(value) == expected


@pytest.mark.parametrize(
    ("value", "step"), [(2.004, 200), (2.005, 201), (-2.005, -200), (0.0, 0), (1e6, 10**8)]
)
def test_quantise_rounds_half_up(value: float, step: int) -> None:
    assert quantise(value, 0.01) == step


def test_the_base_kept_incrementally_ends_the_same_in_any_order() -> None:
    """Subjects' values move one at a time; the frozen base is the distribution of their last values."""
    moves = [("a", 3.0), ("b", 1.0), ("a", 5.0), ("c", 5.0), ("b", 2.5), ("d", 1.0), ("d", 7.25)]
    finals = {"a": 5.0, "b": 2.5, "c": 5.0, "d": 7.25}
    expected = BaseDistribution.from_values(finals.values(), resolution=0.25)
    for order in itertools.permutations(range(4)):
        subjects = [sorted(finals)[i] for i in order]
        counts = BaseCounts(resolution=0.25)
        current: dict[str, float] = {}
        for subject in subjects:  # each subject's own moves stay in order
            for who, value in moves:
                if who == subject:
                    counts.move(current.get(who), value)
                    current[who] = value
        assert counts.freeze() == expected
    assert expected.size == 4
    assert expected.percentile(5.0) == 0.5


def test_a_base_cannot_lose_a_subject_it_never_counted() -> None:
    counts = BaseCounts(resolution=1.0)
    counts.move(None, 3.0)
    counts.move(3.0, None)
    assert counts.freeze().size == 0
    with pytest.raises(ValueError, match="no subject was counted"):
        counts.move(3.0, 4.0)


@pytest.mark.parametrize(
    ("direction", "value", "expected"),
    [("higher_is_better", 40.0, 87.5), ("higher_is_worse", 40.0, 12.5), ("higher_is_better", 25.0, 50.0)],
)
def test_a_percentile_component_scores_its_mid_rank_in_its_direction(
    direction: str, value: float, expected: float
) -> None:
    m = model({**signal("volume", direction=direction), "normalise": {"percentile": {"min_base": 4}}})
    base = BaseDistribution.from_values([10, 20, 30, 40], resolution=0.01)
    result = evaluate(m, usage({"volume": value}), as_of=AS_OF, bases={"volume": base})
    (line,) = result.components
    assert (line.status, line.normalised, result.score) == ("counted", expected, expected)


@pytest.mark.parametrize("base_values", [None, [10, 20, 30]])
def test_a_percentile_with_too_small_a_base_counts_as_missing(base_values: list[float] | None) -> None:
    m = model(
        {**signal("volume"), "normalise": {"percentile": {"min_base": 4}}},
        signal("other"),
    )
    bases = {"volume": BaseDistribution.from_values(base_values, resolution=0.01)} if base_values else {}
    result = evaluate(m, usage({"volume": 25, "other": 60}), as_of=AS_OF, bases=bases)
    volume, _ = result.components
    assert volume.status == "skipped" and "too few" in (volume.reason or "")
    assert result.score == 60.0


# ---- weights and missing data ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("weights", "values", "score", "points", "max_points"),
    [
        ((3, 1), (100, 0), 75.0, (75.0, 0.0), (75.0, 25.0)),
        ((1, 1), (80, 40), 60.0, (40.0, 20.0), (50.0, 50.0)),
        ((25, 75), (60, 100), 90.0, (15.0, 75.0), (25.0, 75.0)),
        ((1, 1, 1), (100, 100, 0), 66.7, (33.4, 33.3, 0.0), (33.4, 33.3, 33.3)),  # 66.67: remainders
        ((1, 2), (50, 50), 50.0, (16.7, 33.3), (33.3, 66.7)),
        ((0.5, 0.5), (33.3, 66.6), 50.0, (16.7, 33.3), (50.0, 50.0)),  # 49.95 rounds half up to 50.0
    ],
)
def test_weights(
    weights: tuple[float, ...],
    values: tuple[float, ...],
    score: float,
    points: tuple[float, ...],
    max_points: tuple[float, ...],
) -> None:
    names = [f"s{i}" for i in range(len(weights))]
    m = model(*(signal(n, w) for n, w in zip(names, weights, strict=True)))
    result = evaluate(m, usage(dict(zip(names, values, strict=True))), as_of=AS_OF)
    assert result.score == score
    assert tuple(c.points for c in result.components) == points
    assert tuple(c.max_points for c in result.components) == max_points
    assert sum(round(c.points * 10) for c in result.components) == round(score * 10)


@pytest.mark.parametrize(
    ("missing", "status", "score", "normalised", "value"),
    [
        ("skip", "skipped", 80.0, None, None),  # left out, the other weight becomes 100 %
        ("worst", "worst", 40.0, 0.0, None),  # counts as 0 points
        ({"assume": 50}, "assumed", 65.0, 50.0, 50.0),  # counts as the value 50, normalised
        ({"assume": 500}, "assumed", 90.0, 100.0, 500.0),  # normalised like a real value: clamped
    ],
)
def test_missing_data_rules(
    missing: Any, status: str, score: float, normalised: float | None, value: float | None
) -> None:
    m = model(signal("present", 1), signal("absent", 1, missing=missing))
    result = evaluate(m, usage({"present": 80}), as_of=AS_OF)
    present, absent = result.components
    assert (absent.status, absent.normalised, absent.value) == (status, normalised, value)
    assert absent.reason == "no absent observed in the 30d before"
    assert result.score == score
    assert present.points + absent.points == score
    assert (present.max_points, absent.max_points) == ((100.0, 0.0) if status == "skipped" else (50.0, 50.0))


def test_nothing_to_count_leaves_the_health_unknown() -> None:
    m = model(signal("a"), signal("b"))
    result = evaluate(m, Evidence(), as_of=AS_OF)
    assert (result.score, result.band) == (None, None)
    assert [c.status for c in result.components] == ["skipped", "skipped"]
    assert all(c.points == 0 and c.max_points == 0 for c in result.components)


@pytest.mark.parametrize(
    ("direction", "thresholds", "value", "normalised"),
    [
        ("higher_is_worse", [[0, 100], [5, 0]], 1, 80.0),  # tickets: fewer is healthier
        ("higher_is_worse", [[0, 100], [5, 0]], 9, 0.0),
        ("higher_is_better", [[0, 0], [5, 100]], 1, 20.0),
    ],
)
def test_direction(direction: str, thresholds: list[list[float]], value: float, normalised: float) -> None:
    m = model(signal("tickets_open", direction=direction, thresholds=thresholds))
    assert Direction(direction)
    assert evaluate(m, usage({"tickets_open": value}), as_of=AS_OF).score == normalised


# ---- the explanation adds up ---------------------------------------------------------------------
def test_the_explanation_adds_up_to_the_score_on_random_models() -> None:
    rng = random.Random(20261123)
    for case in range(400):
        k = rng.randint(1, 8)
        weights = [rng.choice([rng.uniform(0.1, 50), float(rng.randint(1, 30))]) for _ in range(k)]
        values = [rng.choice([rng.uniform(0, 100), float(rng.randint(0, 100)), 100 / 3]) for _ in range(k)]
        missing = [rng.random() < 0.2 for _ in range(k)]
        names = [f"s{i}" for i in range(k)]
        m = model(*(signal(n, w) for n, w in zip(names, weights, strict=True)))
        observed = {n: v for n, v, gone in zip(names, values, missing, strict=True) if not gone}
        result = evaluate(m, usage(observed), as_of=AS_OF)
        if not observed:
            assert result.score is None
            continue
        counted = [(w, v) for w, v, gone in zip(weights, values, missing, strict=True) if not gone]
        total = sum((Fraction(repr(w)) for w, _ in counted), Fraction(0))
        exact = sum((Fraction(repr(w)) * Fraction(repr(v)) for w, v in counted), Fraction(0)) / total
        assert result.score is not None
        assert abs(Fraction(result.score).limit_denominator(10) - exact) <= Fraction(1, 20), case
        tenths = [round(c.points * 10) for c in result.components]
        assert sum(tenths) == round(result.score * 10), case
        assert sum(round(c.max_points * 10) for c in result.components) == 1000, case
        for c, (w, v) in zip((c for c in result.components if c.status == "counted"), counted, strict=True):
            share = Fraction(repr(w)) * Fraction(repr(v)) / total
            assert abs(Fraction(c.points).limit_denominator(10) - share) <= Fraction(1, 10), case


@pytest.mark.parametrize(
    ("parts", "total", "expected"),
    [
        ((Fraction(10, 3), Fraction(10, 3), Fraction(10, 3)), 10, [4, 3, 3]),  # ties: the earlier first
        ((Fraction(5, 2), Fraction(5, 2)), 5, [3, 2]),
        ((Fraction(12, 10), Fraction(38, 10)), 5, [1, 4]),
        ((Fraction(1), Fraction(2)), 3, [1, 2]),
    ],
)
def test_largest_remainders(parts: tuple[Fraction, ...], total: int, expected: list[int]) -> None:
    assert apportion(parts, total) == expected


def test_apportioning_an_impossible_total_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot apportion"):
        apportion([Fraction(1, 2)], 3)


# ---- bands ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("score", "previous", "hysteresis", "band"),
    [
        (70.0, None, 0, Band.HEALTHY),
        (69.9, None, 0, Band.AT_RISK),
        (40.0, None, 0, Band.AT_RISK),
        (39.9, None, 0, Band.CRITICAL),
        (0.0, None, 0, Band.CRITICAL),
        (100.0, None, 0, Band.HEALTHY),
        (69.9, Band.HEALTHY, 0, Band.AT_RISK),  # no hysteresis: the plain band
        (68.0, Band.HEALTHY, 2, Band.HEALTHY),  # within 2 points below the bound: stays healthy
        (67.9, Band.HEALTHY, 2, Band.AT_RISK),  # beyond: falls
        (38.5, Band.HEALTHY, 2, Band.CRITICAL),  # falls two bands at once: the band it is in
        (71.9, Band.AT_RISK, 2, Band.AT_RISK),  # rising takes 72 to leave at risk
        (72.0, Band.AT_RISK, 2, Band.HEALTHY),
        (38.0, Band.AT_RISK, 2, Band.AT_RISK),
        (37.9, Band.AT_RISK, 2, Band.CRITICAL),
        (41.9, Band.CRITICAL, 2, Band.CRITICAL),
        (42.0, Band.CRITICAL, 2, Band.AT_RISK),
        (80.0, Band.CRITICAL, 2, Band.HEALTHY),
        (55.0, None, 2, Band.AT_RISK),  # a first band has nothing to hold on to
    ],
)
def test_bands(score: float, previous: Band | None, hysteresis: float, band: Band) -> None:
    m = model(signal("a"), hysteresis=hysteresis)
    assert band_for(m, score, previous) is band


@pytest.mark.parametrize(
    ("bands", "score", "band"),
    [
        ({"healthy": 80, "at_risk": 50}, 79.9, Band.AT_RISK),
        ({"healthy": 80, "at_risk": 50}, 49.9, Band.CRITICAL),
    ],
)
def test_bands_are_configurable(bands: dict[str, float], score: float, band: Band) -> None:
    m = model(signal("a"), bands=bands)
    assert evaluate(m, usage({"a": score}), as_of=AS_OF).band is band


def test_the_band_follows_the_score_shown() -> None:
    """69.95 shows as 70.0 and is healthy: the band never contradicts the number a CSM reads."""
    m = model(signal("a"))
    result = evaluate(m, usage({"a": 69.95}), as_of=AS_OF)
    assert (result.score, result.band) == (70.0, Band.HEALTHY)


def test_evaluation_reads_only_the_past() -> None:
    m = model(signal("a"))
    future = Evidence(observations=[*usage({"a": 10}).observations])
    later = evaluate(m, future, as_of=AS_OF + timedelta(hours=1))
    earlier = evaluate(m, future, as_of=AS_OF - timedelta(hours=2))
    assert (later.score, earlier.score) == (10.0, None)
