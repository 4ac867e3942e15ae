"""Health over time: the stored state, its history points, delta_30d and band changes. Pure.

History representation: a subject's history is a step function stored as points ``(at, score, band)``;
a point is written when a recomputation changes the score or the band (not on every recomputation), so
the health in force at any instant is the last point at or before it. ``delta_30d`` is the score now
minus the health in force 30 days earlier (None when the subject had no score then). Old points are
thinned by :func:`compact`: the last point of each UTC day beyond a horizon, and nothing before the
retention limit except the one point still in force there.

A band change is reported once per transition: when a recomputation's band differs from the stored
band (including the first band a subject gets, and a band lost for want of evidence), never when the
band stays. Each change has a sequence number per subject (the stored count of changes plus one), from
which ids are derived, so reprocessing the same recomputation yields the same change.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from services.actions.health.evidence import Evidence
from services.actions.health.model import BAND_RANK, Band, HealthModel
from services.actions.health.normalise import BaseDistribution, decimal
from services.actions.health.score import HealthResult, evaluate, round_half_up

DELTA_PERIOD = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class HealthPoint:
    """One step of the history: from ``at`` on, the subject's health was this."""

    at: datetime
    score: float | None
    band: Band | None


@dataclass(frozen=True, slots=True)
class HealthState:
    """A subject's current health as stored: the last recomputation and how many band changes so far."""

    at: datetime
    score: float | None
    band: Band | None
    band_since: datetime | None
    transitions: int = 0


@dataclass(frozen=True, slots=True)
class BandChange:
    """The band moved: what the rules read as ``health.*`` and ``csat.health.changed.v1`` carries."""

    seq: int
    at: datetime
    previous_band: Band | None
    band: Band | None
    score: float | None
    previous_score: float | None
    delta_30d: float | None

    @property
    def fell(self) -> bool:
        """A move to a worse band (a first band or a lost one is not a fall)."""
        if self.previous_band is None or self.band is None:
            return False
        return BAND_RANK[self.band] < BAND_RANK[self.previous_band]


@dataclass(frozen=True, slots=True)
class Step:
    """One recomputation's outcome: the new state, the point to append and the band change (if any)."""

    result: HealthResult
    state: HealthState
    point: HealthPoint | None
    change: BandChange | None
    delta_30d: float | None


def in_force(history: Sequence[HealthPoint], at: datetime) -> HealthPoint | None:
    """The point in force at ``at`` (the last one at or before it); ``history`` in time order."""
    i = bisect.bisect_right([p.at for p in history], at)
    return history[i - 1] if i else None


def delta(
    history: Sequence[HealthPoint], score: float | None, at: datetime, *, period: timedelta
) -> float | None:
    """Score now minus the score in force ``period`` earlier, to the tenth (on the decimals, half up)."""
    then = in_force(history, at - period)
    if score is None or then is None or then.score is None:
        return None
    return round_half_up((decimal(score) - decimal(then.score)) * 10) / 10


def advance(
    state: HealthState | None,
    result: HealthResult,
    *,
    history: Sequence[HealthPoint],
    period: timedelta = DELTA_PERIOD,
) -> Step:
    """Fold one recomputation into the stored state. ``history``: the stored points, oldest first."""
    if state is not None and result.as_of < state.at:
        raise ValueError(f"health recomputed as of {result.as_of} after one as of {state.at}")
    moved = state is None or (state.score, state.band) != (result.score, result.band)
    point = HealthPoint(result.as_of, result.score, result.band) if moved else None
    d = delta(history, result.score, result.as_of, period=period)
    previous_band = state.band if state is not None else None
    count = state.transitions if state is not None else 0
    change = None
    since = state.band_since if state is not None else None
    if result.band != previous_band:
        count += 1
        since = result.as_of if result.band is not None else None
        change = BandChange(
            seq=count,
            at=result.as_of,
            previous_band=previous_band,
            band=result.band,
            score=result.score,
            previous_score=state.score if state is not None else None,
            delta_30d=d,
        )
    new_state = HealthState(result.as_of, result.score, result.band, since, count)
    return Step(result, new_state, point, change, d)


def recompute(
    model: HealthModel,
    evidence: Evidence,
    *,
    as_of: datetime,
    state: HealthState | None,
    history: Sequence[HealthPoint],
    bases: Mapping[str, BaseDistribution] | None = None,
) -> Step:
    """Evaluate (the band's hysteresis starting from the stored band) and fold the result into the state."""
    result = evaluate(
        model, evidence, as_of=as_of, bases=bases, previous_band=state.band if state is not None else None
    )
    return advance(state, result, history=history)


def compact(
    history: Sequence[HealthPoint], *, daily_before: datetime, drop_before: datetime
) -> list[HealthPoint]:
    """Thin the history: one point per UTC day before ``daily_before`` (the day's last), none before
    ``drop_before`` except the one in force then. The health in force at any kept day's end is unchanged."""
    kept: list[HealthPoint] = []
    floor = in_force(history, drop_before)
    for i, p in enumerate(history):
        if p.at <= drop_before and p is not floor:
            continue
        nxt = history[i + 1] if i + 1 < len(history) else None
        if (
            p is not floor
            and nxt is not None
            and nxt.at < daily_before
            and nxt.at.astimezone(UTC).date() == p.at.astimezone(UTC).date()
        ):
            continue
        kept.append(p)
    return kept
