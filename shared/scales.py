"""Rating scales: which scores exist, which direction is better, and how each score is classified.

Pure code. The collector uses it to validate and normalise, the scorer to aggregate, actions to route.
A scale is identified by the pair (metric, scale name) because the same range can mean different
things: CES on ``1-5`` is the "how much effort" variant where lower is better, CSAT on ``1-5`` is
stars or Likert where higher is better.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple


class Metric(StrEnum):
    CSAT = "csat"
    NPS = "nps"
    CES = "ces"


class Sentiment(StrEnum):
    NEGATIVE = "negative"
    NEUTRAL = "neutral"
    POSITIVE = "positive"


class NpsClass(StrEnum):
    PROMOTER = "promoter"
    PASSIVE = "passive"
    DETRACTOR = "detractor"


class Band(NamedTuple):
    """An inclusive range of scores on one scale (e.g. the positive answers 4-5 of a 1-5 scale)."""

    low: int
    high: int


@dataclass(frozen=True, slots=True)
class Scale:
    """One answer scale for one metric; thresholds are inclusive score ranges."""

    metric: Metric
    name: str
    low: int
    high: int
    higher_is_better: bool
    positive: Band
    negative: Band
    labels: dict[str, int] = field(default_factory=dict)
    description: str = ""

    def contains(self, score: int) -> bool:
        return self.low <= score <= self.high

    def is_positive(self, score: int) -> bool:
        return self.positive.low <= score <= self.positive.high

    def sentiment(self, score: int) -> Sentiment:
        if self.is_positive(score):
            return Sentiment.POSITIVE
        if self.negative.low <= score <= self.negative.high:
            return Sentiment.NEGATIVE
        return Sentiment.NEUTRAL

    def normalized(self, score: int) -> float:
        """Score mapped to 0..1 where 1 is always the best answer, whatever the scale's direction."""
        span = self.high - self.low
        ratio = (score - self.low) / span
        return round(ratio if self.higher_is_better else 1.0 - ratio, 6)

    def scores(self) -> range:
        return range(self.low, self.high + 1)


def nps_class(score: int) -> NpsClass:
    """Promoters 9-10, passives 7-8, detractors 0-6 (the NPS definition)."""
    if score >= 9:
        return NpsClass.PROMOTER
    if score >= 7:
        return NpsClass.PASSIVE
    return NpsClass.DETRACTOR


_LIKERT_5 = {
    "very dissatisfied": 1,
    "dissatisfied": 2,
    "neutral": 3,
    "neither satisfied nor dissatisfied": 3,
    "satisfied": 4,
    "very satisfied": 5,
    "tres insatisfait": 1,
    "très insatisfait": 1,
    "insatisfait": 2,
    "neutre": 3,
    "satisfait": 4,
    "tres satisfait": 5,
    "très satisfait": 5,
}
_SMILEYS_3 = {
    "sad": 1,
    "unhappy": 1,
    "\U0001f61e": 1,  # disappointed face
    "\U0001f641": 1,  # slightly frowning face
    "neutral": 2,
    "meh": 2,
    "\U0001f610": 2,  # neutral face
    "happy": 3,
    "\U0001f600": 3,  # grinning face
    "\U0001f642": 3,  # slightly smiling face
    "\U0001f60a": 3,  # smiling face with smiling eyes
}
_YES_NO = {"yes": 1, "no": 0, "true": 1, "false": 0, "oui": 1, "non": 0}

_SCALES: tuple[Scale, ...] = (
    Scale(Metric.CSAT, "1-5", 1, 5, True, Band(4, 5), Band(1, 2), _LIKERT_5, "stars or Likert, 4-5 positive"),
    Scale(Metric.CSAT, "1-3", 1, 3, True, Band(3, 3), Band(1, 1), _SMILEYS_3, "three smileys, 3 positive"),
    Scale(Metric.CSAT, "1-10", 1, 10, True, Band(7, 10), Band(1, 4), {}, "ten points, 7-10 positive"),
    Scale(Metric.CSAT, "yes-no", 0, 1, True, Band(1, 1), Band(0, 0), _YES_NO, "yes = positive"),
    Scale(Metric.NPS, "0-10", 0, 10, True, Band(9, 10), Band(0, 6), {}, "likelihood to recommend"),
    Scale(Metric.CES, "1-7", 1, 7, True, Band(5, 7), Band(1, 3), {}, "how easy was it, 5-7 easy"),
    Scale(Metric.CES, "1-5", 1, 5, False, Band(1, 2), Band(4, 5), {}, "how much effort, lower is easier"),
)

SCALES: dict[tuple[Metric, str], Scale] = {(s.metric, s.name): s for s in _SCALES}

#: Scale names accepted as synonyms of a canonical name.
SCALE_ALIASES: dict[str, str] = {
    "stars": "1-5",
    "likert-5": "1-5",
    "smileys": "1-3",
    "smiley": "1-3",
    "yesno": "yes-no",
    "boolean": "yes-no",
    "1-5-effort": "1-5",
    "effort-1-5": "1-5",
    "ease-1-7": "1-7",
}

DEFAULT_SCALE: dict[Metric, str] = {Metric.CSAT: "1-5", Metric.NPS: "0-10", Metric.CES: "1-7"}


class ScaleError(ValueError):
    """A scale or score that the metric does not define; ``field`` names the offending input."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


def scales_for(metric: Metric) -> list[str]:
    return [name for (m, name) in SCALES if m is metric]


def get_scale(metric: Metric, name: str | None) -> Scale:
    """Resolve a (metric, scale name) pair, applying aliases and the metric's default scale."""
    canonical = DEFAULT_SCALE[metric] if name is None else SCALE_ALIASES.get(name.strip().lower(), name)
    scale = SCALES.get((metric, canonical.strip().lower()))
    if scale is None:
        allowed = ", ".join(scales_for(metric))
        raise ScaleError("scale", f"scale {name!r} is not defined for {metric.value}; use one of: {allowed}")
    return scale


def parse_score(scale: Scale, raw: object) -> int:
    """Turn what a client sent (int, numeric string, label, smiley, yes/no) into an integer score."""
    if isinstance(raw, bool):
        value = int(raw)
    elif isinstance(raw, int):
        value = raw
    elif isinstance(raw, float):
        if not raw.is_integer():
            raise ScaleError("score", f"score {raw} must be a whole number on scale {scale.name}")
        value = int(raw)
    elif isinstance(raw, str):
        text = raw.strip().lower()
        if text in scale.labels:
            value = scale.labels[text]
        else:
            try:
                value = int(text)
            except ValueError:
                hint = f"; labels: {', '.join(sorted(scale.labels))}" if scale.labels else ""
                raise ScaleError(
                    "score", f"score {raw!r} is not a number on scale {scale.name}{hint}"
                ) from None
    else:
        raise ScaleError("score", "score must be a number or a label")
    if not scale.contains(value):
        raise ScaleError(
            "score", f"score {value} is outside scale {scale.name} ({scale.low} to {scale.high})"
        )
    return value
