"""Score maths and segment/window logic: pure functions, tested with tables of worked examples."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from shared.scales import SCALES, Metric, NpsClass, Scale, Sentiment, nps_class
from shared.stats import Z_95 as Z_95  # re-exported: the scorer reads them from its domain
from shared.stats import wilson_interval as wilson_interval

GLOBAL_SEGMENT = "*"
OTHER = "other"

_WINDOW = re.compile(r"^(\d{1,4})(m|h|d|w)$")
_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


class WindowError(ValueError):
    pass


def parse_window(text: str, *, max_window: timedelta = timedelta(days=800)) -> timedelta:
    """``30d`` -> 30 days; minutes, hours, days and weeks; bounded by retention."""
    match = _WINDOW.match(text.strip())
    if not match:
        raise WindowError(f"window {text!r} must look like 15m, 24h, 30d or 2w")
    value = int(match.group(1)) * _UNITS[match.group(2)]
    if value <= timedelta(0) or value > max_window:
        raise WindowError(f"window {text!r} must be between 1m and {max_window.days}d")
    return value


_ESCAPES = (("%", "%25"), ("|", "%7C"), ("=", "%3D"))


def escape_part(text: str) -> str:
    """Percent-escape ``%``, ``|`` and ``=`` so a value can never forge another segment's key."""
    if "%" not in text and "|" not in text and "=" not in text:
        return text
    for raw, escaped in _ESCAPES:
        text = text.replace(raw, escaped)
    return text


def unescape_part(text: str) -> str:
    if "%" not in text:
        return text
    for raw, escaped in reversed(_ESCAPES):
        text = text.replace(escaped, raw)
    return text


def segment_key(attributes: Mapping[str, str]) -> str:
    """Canonical key of a segment: ``*`` for all, else ``dim=value`` pairs sorted and joined by ``|``."""
    if not attributes:
        return GLOBAL_SEGMENT
    return "|".join(f"{escape_part(k)}={escape_part(attributes[k])}" for k in sorted(attributes))


def parse_segment_key(key: str) -> dict[str, str]:
    """Inverse of :func:`segment_key`: ``channel=chat|store=paris-1`` -> attributes."""
    if key == GLOBAL_SEGMENT:
        return {}
    out: dict[str, str] = {}
    for part in key.split("|"):
        dim, sep, value = part.partition("=")
        if not sep or not dim:
            raise ValueError(f"segment key {key!r} must look like dim=value|dim=value")
        out[unescape_part(dim)] = unescape_part(value)
    return out


def parse_segment_params(params: Sequence[str]) -> dict[str, str]:
    """``["store:paris-1", "channel:chat"]`` -> ``{"store": "paris-1", "channel": "chat"}``."""
    out: dict[str, str] = {}
    for raw in params:
        dim, sep, value = raw.partition(":")
        if not sep or not dim or not value:
            raise ValueError(f"segment {raw!r} must look like dimension:value")
        if dim in out:
            raise ValueError(f"segment dimension {dim!r} given twice")
        out[dim] = value
    return out


def band(csat_percent: float | None) -> str | None:
    """The usual CSAT bands: >=85 world-class, >=80 excellent, >=70 good, >=50 fair, <50 critical."""
    if csat_percent is None:
        return None
    if csat_percent >= 85:
        return "world-class"
    if csat_percent >= 80:
        return "excellent"
    if csat_percent >= 70:
        return "good"
    if csat_percent >= 50:
        return "fair"
    return "critical"


@dataclass(frozen=True, slots=True)
class Summary:
    """One metric over one window and segment; ``score`` is CSAT %, NPS, or CES mean (1-7 ease)."""

    metric: Metric
    responses: int
    score: float | None
    positive: int
    negative: int
    neutral: int
    ci_low: float | None
    ci_high: float | None
    insufficient: bool
    mean: float | None
    distribution: dict[str, dict[str, int]] = field(default_factory=dict)
    promoters: int | None = None
    passives: int | None = None
    detractors: int | None = None
    positive_pct: float | None = None
    band: str | None = None


ScoreCounts = Mapping[tuple[str, int], int]


def _scale(metric: Metric, name: str) -> Scale:
    return SCALES[(metric, name)]


def ces_ease(scale: Scale, score: int) -> float:
    """A CES answer mapped onto the 1-7 'how easy' scale (higher = easier) so variants can be averaged."""
    return 1.0 + 6.0 * scale.normalized(score)


@dataclass(slots=True)
class _Tally:
    """Per-answer counts of a window, by sentiment and (NPS) class, and the sum the mean is taken of."""

    positive: int = 0
    negative: int = 0
    neutral: int = 0
    promoters: int = 0
    passives: int = 0
    detractors: int = 0
    weighted: float = 0.0
    distribution: dict[str, dict[str, int]] = field(default_factory=dict)


def _tally(metric: Metric, counts: ScoreCounts) -> _Tally:
    t = _Tally()
    for (scale_name, score), count in sorted(counts.items()):
        if count == 0:
            continue
        scale = _scale(metric, scale_name)
        t.distribution.setdefault(scale_name, {})[str(score)] = count
        sentiment = scale.sentiment(score)
        if sentiment is Sentiment.POSITIVE:
            t.positive += count
        elif sentiment is Sentiment.NEGATIVE:
            t.negative += count
        else:
            t.neutral += count
        t.weighted += (ces_ease(scale, score) if metric is Metric.CES else score) * count
        if metric is Metric.NPS:
            cls = nps_class(score)
            if cls is NpsClass.PROMOTER:
                t.promoters += count
            elif cls is NpsClass.PASSIVE:
                t.passives += count
            else:
                t.detractors += count
    return t


def summarize(metric: Metric, counts: ScoreCounts, *, min_sample: int = 30) -> Summary:
    """Compute a metric from per-(scale, score) counts; exact integers in, rounded figures out."""
    n = sum(counts.values())
    if n == 0:
        nps_zero = 0 if metric is Metric.NPS else None
        return Summary(
            metric=metric,
            responses=0,
            score=None,
            positive=0,
            negative=0,
            neutral=0,
            ci_low=None,
            ci_high=None,
            insufficient=True,
            mean=None,
            promoters=nps_zero,
            passives=nps_zero,
            detractors=nps_zero,
        )
    t = _tally(metric, counts)
    insufficient = n < min_sample
    if metric is Metric.NPS:
        return _nps_summary(t, n, insufficient=insufficient)
    mean = round(t.weighted / n, 4) if len(t.distribution) == 1 or metric is Metric.CES else None
    low, high = wilson_interval(t.positive, n)
    pct = 100.0 * t.positive / n
    return Summary(
        metric,
        n,
        mean if metric is Metric.CES else round(pct, 2),
        t.positive,
        t.negative,
        t.neutral,
        None if low is None else round(100 * low, 2),
        None if high is None else round(100 * high, 2),
        insufficient,
        mean,
        t.distribution,
        positive_pct=round(pct, 2),
        band=None if metric is Metric.CES else band(pct),
    )


def _nps_summary(t: _Tally, n: int, *, insufficient: bool) -> Summary:
    p_pro, p_det = t.promoters / n, t.detractors / n
    nps = 100.0 * (p_pro - p_det)
    # Variance of the difference of two proportions from one multinomial sample.
    variance = (p_pro + p_det - (p_pro - p_det) ** 2) / n
    half = Z_95 * math.sqrt(max(variance, 0.0)) * 100
    return Summary(
        Metric.NPS,
        n,
        round(nps, 2),
        t.positive,
        t.negative,
        t.neutral,
        round(max(-100.0, nps - half), 2),
        round(min(100.0, nps + half), 2),
        insufficient,
        round(t.weighted / n, 4),
        t.distribution,
        t.promoters,
        t.passives,
        t.detractors,
        positive_pct=round(100.0 * t.promoters / n, 2),
    )
