"""Builders for the account-health tests: components with an identity normalisation, evidence in one line."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from services.actions.health.evidence import Evidence, Observation, RatingPoint
from services.actions.health.model import HealthModel, parse_health_model
from shared.scales import SCALES, Metric

AS_OF = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
IDENTITY = [[0, 0], [100, 100]]


def signal(
    name: str,
    weight: float = 1,
    *,
    thresholds: list[list[float]] | None = None,
    missing: Any = "skip",
    direction: str = "higher_is_better",
    aggregate: str = "latest",
    **extra: Any,
) -> dict[str, Any]:
    """A component reading signal ``name`` whose value is its score (0-100) unless told otherwise."""
    return {
        "id": name,
        "signal": name,
        "aggregate": aggregate,
        "direction": direction,
        "normalise": {"thresholds": thresholds or IDENTITY},
        "weight": weight,
        "missing": missing,
        **extra,
    }


def model(*components: dict[str, Any], **top: Any) -> HealthModel:
    return parse_health_model({"version": 1, "components": list(components), **top})


def seen(
    values: Mapping[str, float],
    *,
    customer: str | None = None,
    ago: timedelta = timedelta(hours=1),
    oid: str | None = None,
) -> Observation:
    """An observation of ``values`` ``ago`` before AS_OF (for the account itself unless ``customer``)."""
    at = AS_OF - ago
    return Observation(oid or f"o-{customer}-{at.isoformat()}-{sorted(values)}", customer, at, dict(values))


def usage(values: Mapping[str, float]) -> Evidence:
    return Evidence(observations=[seen(values)])


def rated(
    score: int,
    *,
    metric: Metric = Metric.CSAT,
    scale: str = "1-5",
    ago: timedelta = timedelta(days=1),
    customer: str = "c1",
    rid: str | None = None,
) -> RatingPoint:
    s = SCALES[(metric, scale)]
    at = AS_OF - ago
    return RatingPoint(
        rid or f"r-{customer}-{at.isoformat()}-{score}",
        customer,
        metric,
        score,
        s.normalized(score),
        s.is_positive(score),
        at,
    )
