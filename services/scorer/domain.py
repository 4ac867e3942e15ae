"""Score maths and segment/window logic: pure functions, tested with tables of worked examples."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared.scales import SCALES, Metric, NpsClass, Scale, Sentiment, nps_class

GLOBAL_SEGMENT = "*"
OTHER = "other"
Z_95 = 1.959963984540054

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


def bucket_start(ts: datetime, resolution: timedelta = timedelta(hours=1)) -> datetime:
    """Floor an aware timestamp to its bucket (aligned on the Unix epoch)."""
    seconds = int(resolution.total_seconds())
    epoch = int(ts.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=ts.tzinfo)


def aligned_window(
    now: datetime, window: timedelta, resolution: timedelta = timedelta(hours=1)
) -> tuple[datetime, datetime]:
    """[start, end) covering ``window`` of whole buckets and ending with the bucket holding ``now``."""
    end = bucket_start(now, resolution) + resolution
    return end - window, end


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


def segment_keys(attributes: Mapping[str, str], combinations: Iterable[Sequence[str]] = ()) -> list[str]:
    """Every counter a rating feeds: global, one per attribute, one per configured combination present."""
    keys = [GLOBAL_SEGMENT]
    keys.extend(segment_key({k: v}) for k, v in sorted(attributes.items()))
    for combo in combinations:
        if len(combo) > 1 and all(dim in attributes for dim in combo):
            keys.append(segment_key({dim: attributes[dim] for dim in combo}))
    return keys


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float] | tuple[None, None]:
    """Wilson score interval for a proportion, as fractions 0..1."""
    if n <= 0:
        return None, None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def band(csat_percent: float | None) -> str | None:
    """Bands from PRODUCT.md: >=85 world-class, >=80 excellent, >=70 good, <50 critical."""
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


def summarize(metric: Metric, counts: ScoreCounts, *, min_sample: int = 30) -> Summary:
    """Compute a metric from per-(scale, score) counts; exact integers in, rounded figures out."""
    n = sum(counts.values())
    positive = negative = neutral = 0
    distribution: dict[str, dict[str, int]] = {}
    weighted = 0.0
    promoters = passives = detractors = 0
    for (scale_name, score), count in sorted(counts.items()):
        if count == 0:
            continue
        scale = _scale(metric, scale_name)
        distribution.setdefault(scale_name, {})[str(score)] = count
        sentiment = scale.sentiment(score)
        if sentiment is Sentiment.POSITIVE:
            positive += count
        elif sentiment is Sentiment.NEGATIVE:
            negative += count
        else:
            neutral += count
        weighted += (ces_ease(scale, score) if metric is Metric.CES else score) * count
        if metric is Metric.NPS:
            cls = nps_class(score)
            if cls is NpsClass.PROMOTER:
                promoters += count
            elif cls is NpsClass.PASSIVE:
                passives += count
            else:
                detractors += count
    insufficient = n < min_sample
    if n == 0:
        return Summary(
            metric,
            0,
            None,
            0,
            0,
            0,
            None,
            None,
            True,
            None,
            {},
            promoters=0 if metric is Metric.NPS else None,
            passives=0 if metric is Metric.NPS else None,
            detractors=0 if metric is Metric.NPS else None,
        )
    mean = round(weighted / n, 4) if len(distribution) == 1 or metric is Metric.CES else None
    if metric is Metric.NPS:
        p_pro, p_det = promoters / n, detractors / n
        nps = 100.0 * (p_pro - p_det)
        # Variance of the difference of two proportions from one multinomial sample.
        variance = (p_pro + p_det - (p_pro - p_det) ** 2) / n
        half = Z_95 * math.sqrt(max(variance, 0.0)) * 100
        return Summary(
            metric,
            n,
            round(nps, 2),
            positive,
            negative,
            neutral,
            round(max(-100.0, nps - half), 2),
            round(min(100.0, nps + half), 2),
            insufficient,
            round(weighted / n, 4),
            distribution,
            promoters,
            passives,
            detractors,
            positive_pct=round(100.0 * promoters / n, 2),
        )
    low, high = wilson_interval(positive, n)
    pct = 100.0 * positive / n
    if metric is Metric.CES:
        return Summary(
            metric,
            n,
            mean,
            positive,
            negative,
            neutral,
            None if low is None else round(100 * low, 2),
            None if high is None else round(100 * high, 2),
            insufficient,
            mean,
            distribution,
            positive_pct=round(pct, 2),
        )
    return Summary(
        metric,
        n,
        round(pct, 2),
        positive,
        negative,
        neutral,
        None if low is None else round(100 * low, 2),
        None if high is None else round(100 * high, 2),
        insufficient,
        mean,
        distribution,
        positive_pct=round(pct, 2),
        band=band(pct),
    )


def bucket_increments(
    ratings: Iterable[tuple[Metric, str, int, datetime, Mapping[str, str]]],
    *,
    combinations: Iterable[Sequence[str]] = (),
    resolution: timedelta = timedelta(hours=1),
) -> Counter[tuple[str, str, datetime, str, int]]:
    """Fold new ratings into counter increments keyed (metric, segment, bucket, scale, score)."""
    combos = [tuple(c) for c in combinations]
    out: Counter[tuple[str, str, datetime, str, int]] = Counter()
    for metric, scale, score, occurred_at, segment in ratings:
        bucket = bucket_start(occurred_at, resolution)
        for key in segment_keys(segment, combos):
            out[(metric.value, key, bucket, scale, score)] += 1
    return out
