"""Health over time: one band change per transition (not per recomputation), delta_30d, history points."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from services.actions.health.evidence import Evidence
from services.actions.health.model import Band
from services.actions.health.score import HealthResult
from services.actions.health.transitions import (
    BandChange,
    HealthPoint,
    HealthState,
    Step,
    advance,
    compact,
    delta,
    in_force,
    recompute,
)
from tests.unit.health_support import AS_OF, model, seen, signal

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
M = model(signal("a"), hysteresis=2)


def run(scores: Sequence[float | None], *, every: timedelta = DAY) -> tuple[list[Step], list[HealthPoint]]:
    """Recompute once per ``every`` with the signal at each score (None: no observation at all)."""
    state: HealthState | None = None
    history: list[HealthPoint] = []
    steps = []
    for i, score in enumerate(scores):
        at = T0 + i * every
        evidence = Evidence(observations=[] if score is None else [seen({"a": score}, ago=AS_OF - at)])
        step = recompute(M, evidence, as_of=at, state=state, history=history)
        state = step.state
        if step.point is not None:
            history.append(step.point)
        steps.append(step)
    return steps, history


def changes(steps: list[Step]) -> list[tuple[Band | None, Band | None]]:
    return [(s.change.previous_band, s.change.band) for s in steps if s.change is not None]


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        (
            [80, 80, 80],
            [(None, Band.HEALTHY)],
        ),  # the first band, then nothing: recomputations are not changes
        ([80, 75, 71, 69], [(None, Band.HEALTHY)]),  # 69 is within the 2-point hysteresis
        (
            [80, 67.9, 67, 66],
            [(None, Band.HEALTHY), (Band.HEALTHY, Band.AT_RISK)],
        ),  # once, not per recomputation
        ([80, 30, 35, 20], [(None, Band.HEALTHY), (Band.HEALTHY, Band.CRITICAL)]),
        (
            [80, 60, 45, 39, 37, 50, 71, 72],
            [
                (None, Band.HEALTHY),
                (Band.HEALTHY, Band.AT_RISK),
                (Band.AT_RISK, Band.CRITICAL),  # 37.9 or below: 39 was not enough
                (Band.CRITICAL, Band.AT_RISK),
                (Band.AT_RISK, Band.HEALTHY),  # 72: 70 + 2
            ],
        ),
        ([69.0, 68.0, 69.5], [(None, Band.AT_RISK)]),  # flapping around a bound makes no changes
        ([80, None, 80], [(None, Band.HEALTHY), (Band.HEALTHY, None), (None, Band.HEALTHY)]),  # evidence lost
        ([None, None], []),
    ],
)
def test_band_changes_once_per_transition(
    scores: list[float | None], expected: list[tuple[Band | None, Band | None]]
) -> None:
    steps, _ = run(scores)
    assert changes(steps) == expected
    assert [s.change.seq for s in steps if s.change] == list(range(1, len(expected) + 1))
    assert steps[-1].state.transitions == len(expected)


def test_a_fall_is_a_move_to_a_worse_band() -> None:
    steps, _ = run([80, 60, 30, 50, None, 20])
    falls = [(c.previous_band, c.band, c.fell) for s in steps if (c := s.change) is not None]
    assert falls == [
        (None, Band.HEALTHY, False),
        (Band.HEALTHY, Band.AT_RISK, True),
        (Band.AT_RISK, Band.CRITICAL, True),
        (Band.CRITICAL, Band.AT_RISK, False),
        (Band.AT_RISK, None, False),
        (None, Band.CRITICAL, False),
    ]


def test_the_change_carries_what_the_rules_read() -> None:
    steps, _ = run([90.0] * 31 + [60.0])
    last = steps[-1]
    assert last.change == BandChange(
        seq=2,
        at=T0 + 31 * DAY,
        previous_band=Band.HEALTHY,
        band=Band.AT_RISK,
        score=60.0,
        previous_score=90.0,
        delta_30d=-30.0,
    )
    assert last.state.band_since == T0 + 31 * DAY


@pytest.mark.parametrize(
    ("points", "score", "at", "expected"),
    [
        ([(0, 80.0)], 70.0, 30, -10.0),  # in force exactly 30 days before
        ([(0, 80.0)], 70.0, 29, None),  # no health 30 days before
        ([(0, 80.0), (10, 60.0), (45, 50.0)], 55.0, 50, -5.0),  # the point in force then: day 10's
        ([(0, 80.0), (10, None)], 55.0, 45, None),  # it had no score then
        ([(0, 80.0)], None, 45, None),
        ([(0, 62.35)], 70.0, 40, 7.7),  # to the tenth, on the decimals: 7.65 rounds half up
        ([(0, 70.0)], 62.35, 40, -7.6),  # half up: towards +infinity
    ],
)
def test_delta_30d_reads_the_history(
    points: list[tuple[int, float | None]], score: float | None, at: int, expected: float | None
) -> None:
    history = [HealthPoint(T0 + d * DAY, s, None) for d, s in points]
    assert delta(history, score, T0 + at * DAY, period=timedelta(days=30)) == expected


def test_a_point_is_stored_when_the_score_or_band_changes_not_on_every_recomputation() -> None:
    steps, history = run([80, 80, 80, 75, 75, 69, 67])
    assert [(p.at - T0).days for p in history] == [0, 3, 5, 6]
    assert [p.band for p in history] == [Band.HEALTHY, Band.HEALTHY, Band.HEALTHY, Band.AT_RISK]
    assert [s.point is not None for s in steps] == [True, False, False, True, False, True, True]


def test_an_older_recomputation_is_refused() -> None:
    state = HealthState(at=T0, score=50.0, band=Band.AT_RISK, band_since=T0)
    result = HealthResult(T0 - DAY, 60.0, Band.AT_RISK, ())
    with pytest.raises(ValueError, match="after one as of"):
        advance(state, result, history=[])


def test_the_same_recomputation_twice_changes_nothing_the_second_time() -> None:
    evidence = Evidence(observations=[seen({"a": 30.0})])
    first = recompute(M, evidence, as_of=AS_OF, state=None, history=[])
    again = recompute(
        M, evidence, as_of=AS_OF, state=first.state, history=[first.point] if first.point else []
    )
    assert first.change is not None and again.change is None and again.point is None
    assert again.state == first.state


def test_in_force() -> None:
    history = [HealthPoint(T0, 1.0, None), HealthPoint(T0 + DAY, 2.0, None)]
    assert in_force(history, T0 - timedelta(seconds=1)) is None
    assert in_force(history, T0) == history[0]
    assert in_force(history, T0 + 2 * DAY) == history[1]


def test_compact_keeps_the_health_in_force_at_every_kept_days_end() -> None:
    hours = [0, 5, 23, 24, 30, 50, 75, 76, 100]  # hours after T0
    history = [HealthPoint(T0 + timedelta(hours=h), float(h), None) for h in hours]
    daily_before = T0 + timedelta(hours=74)
    drop_before = T0 + timedelta(hours=26)
    kept = compact(history, daily_before=daily_before, drop_before=drop_before)
    assert [int((p.at - T0).total_seconds() // 3600) for p in kept] == [24, 30, 50, 75, 76, 100]
    for end in (T0 + timedelta(days=d, hours=23, minutes=59) for d in (1, 2, 3, 4)):
        assert in_force(kept, end) == in_force(history, end)
    assert in_force(kept, drop_before) == in_force(history, drop_before)
