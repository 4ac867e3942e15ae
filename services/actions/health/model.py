"""The health model, declarative: components, their normalisation, weights, missing-data rules and bands.

A YAML (or JSON) document validated on load; every mistake is refused with the component and the
field at fault, as rule files are. A component reads either a satisfaction fact (CSAT or NPS over a
window, the trend of the answers, the last answer, days since it, open alerts) or a usage signal
(``logins_7d``..., aggregated over an account's contacts by a declared rule, optionally as its change
over a period), maps it to 0-100 (thresholds or a percentile in the customer base) in its declared
direction, and weighs it. Pure code.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, NamedTuple

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from services.actions.rules import parse_duration
from services.actions.yamlio import load_yaml
from shared.scales import Metric
from shared.vocabulary import LOCALES

SIGNAL_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
MAX_COMPONENTS = 30


class Band(StrEnum):
    HEALTHY = "healthy"
    AT_RISK = "at_risk"
    CRITICAL = "critical"


#: Higher is better: a move to a lower rank is a fall.
BAND_RANK: Mapping[Band, int] = {Band.CRITICAL: 0, Band.AT_RISK: 1, Band.HEALTHY: 2}


class Fact(StrEnum):
    """Satisfaction facts a component may read, each computed from the subject's ratings or alerts."""

    CSAT = "csat"  # % positive answers over the window (0-100), with n and a Wilson interval
    NPS = "nps"  # % promoters - % detractors over the window (-100..100), with n
    TREND = "satisfaction_trend"  # least-squares slope of the 0-100 answers, points per 30 days
    LAST_ANSWER = "last_answer"  # the latest answer on 0-100 (100 = best answer of its scale)
    DAYS_SINCE_ANSWER = "days_since_answer"  # days since the latest answer
    OPEN_ALERTS = "open_alerts"  # CSM alerts open now


class Aggregate(StrEnum):
    """How an account's value of a signal comes from its contacts' latest values."""

    SUM = "sum"
    MAX = "max"
    MEAN = "mean"
    LATEST = "latest"


class Direction(StrEnum):
    HIGHER_IS_BETTER = "higher_is_better"
    HIGHER_IS_WORSE = "higher_is_worse"


#: Defaults, and which optional fields make sense for which fact.
DEFAULT_WINDOW: Mapping[Fact, timedelta] = {
    Fact.CSAT: timedelta(days=90),
    Fact.NPS: timedelta(days=180),
    Fact.TREND: timedelta(days=180),
    Fact.LAST_ANSWER: timedelta(days=365),
}
DEFAULT_MIN_N: Mapping[Fact, int] = {Fact.CSAT: 1, Fact.NPS: 1, Fact.TREND: 3}
METRIC_FILTERED = frozenset({Fact.TREND, Fact.LAST_ANSWER, Fact.DAYS_SINCE_ANSWER})
FACT_RANGE: Mapping[Fact, tuple[float, float]] = {
    Fact.CSAT: (0.0, 100.0),
    Fact.NPS: (-100.0, 100.0),
    Fact.LAST_ANSWER: (0.0, 100.0),
    Fact.DAYS_SINCE_ANSWER: (0.0, math.inf),
    Fact.OPEN_ALERTS: (0.0, math.inf),
}
DEFAULT_MAX_AGE = timedelta(days=30)


class Threshold(NamedTuple):
    """One point of a piecewise-linear normalisation: this value of the input scores this (0-100)."""

    value: float
    score: float


def _duration(value: Any) -> Any:
    return parse_duration(value) if isinstance(value, str | int) and not isinstance(value, bool) else value


def _finite(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number")
    return value


class Percentile(BaseModel):
    """The value's mid-rank in the base distribution (each subject's current value, quantised)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_base: int = Field(
        default=20, ge=2, description="Fewer subjects in the base: the value counts as missing"
    )
    resolution: float = Field(default=0.01, gt=0, description="Values are quantised to multiples of this")


class Normalise(BaseModel):
    """Exactly one of: ``thresholds`` (``[[value, score], ...]``) or ``percentile`` (``{}`` for defaults)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    thresholds: tuple[Threshold, ...] | None = None
    percentile: Percentile | None = None

    @field_validator("thresholds", mode="before")
    @classmethod
    def _pairs(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, list | tuple) or len(value) < 2:
            raise ValueError("at least two [value, score] points, values rising")
        for i, point in enumerate(value):
            if (
                not isinstance(point, list | tuple)
                or len(point) != 2
                or any(isinstance(x, bool) or not isinstance(x, int | float) for x in point)
            ):
                raise ValueError(f"{i}: a [value, score] pair of numbers, got {point!r}")
        return [Threshold(float(v), float(s)) for v, s in value]

    @field_validator("thresholds")
    @classmethod
    def _rising(cls, value: tuple[Threshold, ...] | None) -> tuple[Threshold, ...] | None:
        if value is None:
            return None
        for i, point in enumerate(value):
            _finite(point.value, f"{i}: the value")
            if not 0.0 <= _finite(point.score, f"{i}: the score") <= 100.0:
                raise ValueError(f"{i}: the score {point.score:g} must be between 0 and 100")
            if i and point.value <= value[i - 1].value:
                raise ValueError(f"{i}: values must rise ({value[i - 1].value:g} then {point.value:g})")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Normalise:
        if (self.thresholds is None) == (self.percentile is None):
            raise ValueError("give either thresholds: [[value, score], ...] or percentile: {}")
        return self


class Assume(BaseModel):
    """Missing data counts as this value of the input (it is then normalised like a real one)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    assume: float

    @field_validator("assume")
    @classmethod
    def _is_finite(cls, value: float) -> float:
        return _finite(value, "assume")


MissingRule = Literal["skip", "worst"] | Assume


class Component(BaseModel):
    """One input of the score: what it reads, how it maps to 0-100, its weight, and what if it is missing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    label: dict[str, str] = Field(default_factory=dict, description="What a CSM reads, per locale")
    fact: Fact | None = None
    signal: str | None = Field(default=None, pattern=SIGNAL_PATTERN)
    aggregate: Aggregate | None = Field(default=None, description="signals: contacts -> account")
    max_age: timedelta | None = Field(default=None, description="signals: older observations are missing")
    change_over: timedelta | None = Field(default=None, description="signals: % change over this period")
    window: timedelta | None = Field(default=None, description="facts: the answers this far back")
    min_n: int | None = Field(default=None, ge=1, le=10_000, description="facts: fewer answers = missing")
    metric: Metric | None = Field(default=None, description="trend, last answer: only this metric's answers")
    direction: Direction
    normalise: Normalise
    weight: float = Field(gt=0, le=1000)
    missing: MissingRule = "skip"

    @field_validator("max_age", "change_over", "window", mode="before")
    @classmethod
    def _durations(cls, value: Any) -> Any:
        return _duration(value)

    @field_validator("max_age", "change_over", "window")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError("a duration must be positive")
        return value

    @field_validator("label")
    @classmethod
    def _locales(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(LOCALES))
        if unknown:
            raise ValueError(f"unknown locale {unknown[0]!r}; use {', '.join(LOCALES)}")
        return value

    @field_validator("weight")
    @classmethod
    def _finite_weight(cls, value: float) -> float:
        return _finite(value, "weight")

    @model_validator(mode="after")
    def _consistent(self) -> Component:
        if (self.fact is None) == (self.signal is None):
            raise ValueError("fact: a component reads either a fact or a signal (exactly one)")
        if self.signal is not None:
            self._check_signal()
        else:
            self._check_fact()
        self._check_direction()
        return self

    def _check_signal(self) -> None:
        for name in ("window", "min_n", "metric"):
            if getattr(self, name) is not None:
                raise ValueError(f"{name}: applies to satisfaction facts, not to signals; remove it")
        if self.aggregate is None:
            choices = ", ".join(a.value for a in Aggregate)
            raise ValueError(f"aggregate: how contacts' values make the account's: one of {choices}")

    def _check_fact(self) -> None:
        fact = self.fact
        assert fact is not None
        for name in ("aggregate", "max_age", "change_over"):
            if getattr(self, name) is not None:
                raise ValueError(f"{name}: applies to usage signals, not to {fact.value}; remove it")
        if self.window is not None and fact not in DEFAULT_WINDOW:
            raise ValueError(f"window: {fact.value} has no window; remove it")
        if self.min_n is not None and fact not in DEFAULT_MIN_N:
            raise ValueError(f"min_n: {fact.value} needs no minimum of answers; remove it")
        if self.metric is not None and fact not in METRIC_FILTERED:
            raise ValueError(f"metric: {fact.value} already says its metric; remove it")
        low, high = FACT_RANGE.get(fact, (-math.inf, math.inf))
        for i, point in enumerate(self.normalise.thresholds or ()):
            if not low <= point.value <= high:
                raise ValueError(
                    f"normalise.thresholds.{i}: {fact.value} lies between {low:g} and {high:g}; "
                    f"{point.value:g} can never be reached"
                )

    def _check_direction(self) -> None:
        points = self.normalise.thresholds or ()
        rising = self.direction is Direction.HIGHER_IS_BETTER
        for i in range(1, len(points)):
            step = points[i].score - points[i - 1].score
            if (rising and step < 0) or (not rising and step > 0):
                word = "rise" if rising else "fall"
                raise ValueError(
                    f"normalise.thresholds.{i}: with direction {self.direction.value} the scores must {word} "
                    f"({points[i - 1].score:g} then {points[i].score:g})"
                )

    @property
    def span(self) -> timedelta | None:
        """The window of answers a fact reads (its default when not set)."""
        return self.window or (DEFAULT_WINDOW.get(self.fact) if self.fact else None)

    @property
    def evidence(self) -> int:
        """The fewest answers a fact counts on (1 when the fact needs no minimum)."""
        return self.min_n or (DEFAULT_MIN_N.get(self.fact, 1) if self.fact else 1)

    @property
    def freshness(self) -> timedelta:
        """How old a signal's observation may be and still count."""
        return self.max_age or DEFAULT_MAX_AGE

    def text(self, locale: str) -> str:
        """The component's label in ``locale`` (else English, else its id)."""
        return self.label.get(locale) or self.label.get(LOCALES[0]) or self.id


class Bands(BaseModel):
    """Lower bounds: healthy from ``healthy``, at risk from ``at_risk``, critical below."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    healthy: float = Field(default=70.0, gt=0, le=100)
    at_risk: float = Field(default=40.0, gt=0, le=100)

    @model_validator(mode="after")
    def _ordered(self) -> Bands:
        if self.at_risk >= self.healthy:
            raise ValueError(f"at_risk: {self.at_risk:g} must be below healthy ({self.healthy:g})")
        return self

    def of(self, score: float) -> Band:
        """The band a score falls in, without hysteresis."""
        if score >= self.healthy:
            return Band.HEALTHY
        if score >= self.at_risk:
            return Band.AT_RISK
        return Band.CRITICAL

    def lower(self, band: Band) -> float:
        return {Band.HEALTHY: self.healthy, Band.AT_RISK: self.at_risk, Band.CRITICAL: -math.inf}[band]

    def upper(self, band: Band) -> float:
        return {Band.HEALTHY: math.inf, Band.AT_RISK: self.healthy, Band.CRITICAL: self.at_risk}[band]


class HealthModel(BaseModel):
    """A whole model: bands, hysteresis and components (at least one)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    description: str = ""
    bands: Bands = Field(default_factory=Bands)
    hysteresis: float = Field(
        default=0.0, ge=0, le=10, description="Points beyond a band's bound before the band is left"
    )
    components: tuple[Component, ...] = Field(min_length=1, max_length=MAX_COMPONENTS)

    def component(self, component_id: str) -> Component:
        return next(c for c in self.components if c.id == component_id)


@dataclass(frozen=True, slots=True)
class ModelError:
    """One problem: the component (id, or ``#index``) and the field path within it."""

    component: str | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"component {self.component}: " if self.component else ""
        return f"{where}{self.field}: {self.message}"


class HealthModelError(ValueError):
    """A model that cannot be used; the message names each component and field at fault."""

    def __init__(self, origin: str, errors: Sequence[ModelError]) -> None:
        self.origin = origin
        self.errors = list(errors)
        super().__init__(f"{origin}: " + "; ".join(str(e) for e in self.errors))


_KNOWN_FIELDS = frozenset(Component.model_fields)
_MESSAGES = {
    "missing": "one of skip, worst or {assume: <a number>}",
    "components": "a model needs at least one component",
}


def _error(err: Mapping[str, Any], data: Any) -> ModelError:
    loc: list[Any] = list(err["loc"])
    msg = str(err["msg"]).removeprefix("Value error, ")
    component: str | None = None
    if len(loc) >= 2 and loc[0] == "components" and isinstance(loc[1], int) and isinstance(data, dict):
        items = data.get("components")
        item = items[loc[1]] if isinstance(items, list) and loc[1] < len(items) else None
        cid = item.get("id") if isinstance(item, dict) else None
        component = str(cid) if cid else f"#{loc[1]}"
        loc = loc[2:]
    # pydantic names the branch of a union it tried ("missing.literal['skip','worst']"): the field is enough.
    loc = [
        p
        for p in loc
        if not (isinstance(p, str) and (p.startswith(("literal[", "function-")) or p == "Assume"))
    ]
    head, sep, tail = msg.partition(": ")
    if sep and " " not in head and (not loc or component is None or head.isdigit()):
        loc, msg = [*loc, *head.split(".")], tail
    field = ".".join(str(p) for p in loc) or "file"
    if field in _MESSAGES and err["type"] in ("literal_error", "model_type", "too_short"):
        msg = _MESSAGES[field]
    elif err["type"] == "extra_forbidden" and loc:
        known = _KNOWN_FIELDS if component is not None else frozenset(HealthModel.model_fields)
        close = difflib.get_close_matches(str(loc[-1]), sorted(known), n=1) if len(loc) == 1 else []
        msg = f"unknown field {loc[-1]!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
    elif err["type"] == "enum" and isinstance(err.get("input"), str):
        choices = re.findall(r"'([^']+)'", str((err.get("ctx") or {}).get("expected", "")))
        close = difflib.get_close_matches(err["input"], choices, n=1)
        msg = f"unknown value {err['input']!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
        msg += f"; one of {', '.join(choices)}"
    return ModelError(component, field, msg)


def parse_health_model(data: Any, *, origin: str = "<health model>") -> HealthModel:
    """Validate a parsed document; raises HealthModelError naming component and field."""
    if not isinstance(data, dict):
        raise HealthModelError(origin, [ModelError(None, "file", "a mapping with `components:` is expected")])
    try:
        model = HealthModel.model_validate(data)
    except ValidationError as exc:
        found = exc.errors()
        # A component that fails is not counted by the length check: "at least 1 item" is noise then.
        inner = any(len(e["loc"]) > 1 and e["loc"][0] == "components" for e in found)
        errors = [
            _error(e, data)
            for e in found
            if not (inner and e["type"] == "too_short" and tuple(e["loc"]) == ("components",))
        ]
        raise HealthModelError(origin, _dedupe(errors)) from exc
    seen: dict[str, int] = {}
    errors = []
    for i, component in enumerate(model.components):
        if component.id in seen:
            message = f"id {component.id!r} is used twice (components #{seen[component.id]} and #{i})"
            errors.append(ModelError(component.id, "id", message))
        seen.setdefault(component.id, i)
    if errors:
        raise HealthModelError(origin, errors)
    return model


def _dedupe(errors: list[ModelError]) -> list[ModelError]:
    """One line per (component, field), and none for a field when one inside it says more."""
    out: dict[tuple[str | None, str], ModelError] = {}
    for e in errors:
        out.setdefault((e.component, e.field), e)
    return [
        e
        for (component, name), e in out.items()
        if not any(c == component and f.startswith(name + ".") for c, f in out)
    ]


def load_health_text(text: str, *, origin: str = "<health model>") -> HealthModel:
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        raise HealthModelError(origin, [ModelError(None, "file", f"not valid YAML: {exc}")]) from exc
    return parse_health_model(data, origin=origin)


def load_health_file(path: Path) -> HealthModel:
    return load_health_text(path.read_text(encoding="utf-8"), origin=str(path))
