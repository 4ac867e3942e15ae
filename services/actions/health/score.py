"""The health score of one subject as of an instant, with the contribution of each component. Pure.

Each component's reading becomes a 0-100 score (its normalisation, in its direction). A missing reading
follows the component's rule: ``skip`` (left out, the other weights renormalised), ``worst`` (scores 0)
or ``assume`` (that value, normalised like a real one). The health is the weighted mean of the counted
components' scores; no counted component leaves it unknown (score and band None).

Rounding, so that the explanation adds up: the exact weighted mean S (rational arithmetic on the
weights and component scores as decimals, each float read as the shortest decimal that prints it) is
rounded half up to one decimal; each component's exact contribution
``share x score`` is cut to tenths and the tenths still missing go to the largest remainders (ties:
the earlier component), the largest-remainder method. The contributions shown therefore sum to the
score shown, to the tenth, and none is more than 0.1 from its exact value. The components' maximum
points (their share of 100) are apportioned the same way and sum to 100.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from typing import Literal

from services.actions.health.evidence import Evidence, Reading, reading
from services.actions.health.model import Assume, Band, Component, HealthModel
from services.actions.health.normalise import BaseDistribution, decimal, oriented, piecewise

Status = Literal["counted", "assumed", "worst", "skipped"]


@dataclass(frozen=True, slots=True)
class ComponentScore:
    """One line of the explanation: what was read, what it scored, what it weighs and gave, in points."""

    id: str
    status: Status
    value: float | None  # the input read (or assumed); None when missing
    normalised: float | None  # 0-100, 100 the healthy end; None when skipped
    weight: float  # as declared
    max_points: float  # its share of 100 once skipped components are left out (sums to 100)
    points: float  # what it gives the score (sums to the score)
    reason: str | None = None  # why the input is missing, when it is
    detail: Mapping[str, float | int | str | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HealthResult:
    """The score (one decimal) and band, and the explanation whose points add up to the score."""

    as_of: datetime
    score: float | None
    band: Band | None
    components: tuple[ComponentScore, ...]


def normalised(spec: Component, value: float, base: BaseDistribution | None) -> float | None:
    """0-100 for a value; a percentile without a big enough base gives None (counts as missing)."""
    norm = spec.normalise
    if norm.thresholds is not None:
        return piecewise(norm.thresholds, value)
    assert norm.percentile is not None
    if base is None or base.size < norm.percentile.min_base:
        return None
    share = base.percentile(value)
    return None if share is None else oriented(100.0 * share, spec.direction)


@dataclass(frozen=True, slots=True)
class _Scored:
    spec: Component
    status: Status
    value: float | None
    normalised: float | None
    reason: str | None
    detail: Mapping[str, float | int | str | None]


def _score_component(spec: Component, got: Reading, base: BaseDistribution | None) -> _Scored:
    value, reason = got.value, got.reason
    norm = normalised(spec, value, base) if value is not None else None
    if value is not None and norm is None:
        size = base.size if base is not None else 0
        reason = f"the customer base has {size} subjects, too few for a percentile"
    if norm is not None:
        return _Scored(spec, "counted", value, norm, None, got.detail)
    rule = spec.missing
    if isinstance(rule, Assume):
        assumed = normalised(spec, rule.assume, base)
        if assumed is not None:
            return _Scored(spec, "assumed", rule.assume, assumed, reason, got.detail)
    elif rule == "worst":
        return _Scored(spec, "worst", None, 0.0, reason, got.detail)
    return _Scored(spec, "skipped", None, None, reason, got.detail)


def apportion(parts: Sequence[Fraction], total: int) -> list[int]:
    """Integers summing to ``total``, each the floor or the ceiling of its part (largest remainders)."""
    floors = [math.floor(p) for p in parts]
    missing = total - sum(floors)
    if not 0 <= missing <= len(parts):
        raise ValueError(f"cannot apportion {total} over parts summing to {float(sum(parts))}")
    order = sorted(range(len(parts)), key=lambda i: (-(parts[i] - floors[i]), i))
    for i in order[:missing]:
        floors[i] += 1
    return floors


def round_half_up(value: Fraction) -> int:
    return math.floor(value + Fraction(1, 2))


def evaluate(
    model: HealthModel,
    evidence: Evidence,
    *,
    as_of: datetime,
    bases: Mapping[str, BaseDistribution] | None = None,
    previous_band: Band | None = None,
) -> HealthResult:
    """The health as of ``as_of``; ``bases`` holds the base of each percentile component (by id)."""
    scored = [
        _score_component(spec, reading(spec, evidence, as_of=as_of), (bases or {}).get(spec.id))
        for spec in model.components
    ]
    counted = [s for s in scored if s.normalised is not None]
    if not counted:
        lines = tuple(
            ComponentScore(s.spec.id, s.status, s.value, None, s.spec.weight, 0.0, 0.0, s.reason, s.detail)
            for s in scored
        )
        return HealthResult(as_of, None, None, lines)
    total_weight = sum(decimal(s.spec.weight) for s in counted)
    shares = [decimal(s.spec.weight) / total_weight for s in counted]
    exact = [share * decimal(s.normalised or 0.0) for share, s in zip(shares, counted, strict=True)]
    tenths = round_half_up(sum(exact, Fraction(0)) * 10)
    points = dict(zip((s.spec.id for s in counted), apportion([e * 10 for e in exact], tenths), strict=True))
    maxima = dict(
        zip((s.spec.id for s in counted), apportion([sh * 1000 for sh in shares], 1000), strict=True)
    )
    lines = tuple(
        ComponentScore(
            s.spec.id,
            s.status,
            s.value,
            None if s.normalised is None else round(s.normalised, 1),
            s.spec.weight,
            maxima.get(s.spec.id, 0) / 10,
            points.get(s.spec.id, 0) / 10,
            s.reason,
            s.detail,
        )
        for s in scored
    )
    score = tenths / 10
    return HealthResult(as_of, score, band_for(model, score, previous_band), lines)


def band_for(model: HealthModel, score: float, previous: Band | None) -> Band:
    """The band of a score; with hysteresis, the previous band is kept until the score passes its bound
    by ``hysteresis`` points (then the band is the one the score is in)."""
    plain = model.bands.of(score)
    if previous is None or plain is previous or model.hysteresis == 0:
        return plain
    h = model.hysteresis
    if score < model.bands.lower(previous) - h or score >= model.bands.upper(previous) + h:
        return plain
    return previous
