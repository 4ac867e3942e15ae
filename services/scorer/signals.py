"""When a segment's score is worth an event: movement and thresholds; and the one-look drop test (pure code).

Alerts on a drop come from :mod:`drift` (a sequential detector whose false-alarm rate holds however
often it is evaluated). The test here compares one window with the previous one *once*, as a person
reading the scores API does; repeated on overlapping windows many times a day it would raise false
alarms, so it alerts nobody. A drop is *significant* for that one look when a one-sided test says the
current window is worse than the previous one at level ``alpha``, both windows having at least
``min_responses`` answers:
- CSAT: two-proportion z-test on the share of positive answers (pooled standard error);
- NPS: z-test on the difference of two NPS values, each with its multinomial variance;
- CES: z-test (Welch) on the difference of the mean ease (1-7), variances from the distributions.
A raw difference is never enough: 70 % -> 60 % on 20 answers is noise, on 2,000 it is not.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from services.scorer.domain import GLOBAL_SEGMENT, ScoreCounts, Summary, ces_ease, parse_segment_key
from shared.scales import SCALES, Metric, NpsClass, nps_class

ALERT_NAMESPACE = uuid.UUID("6f1d2a8e-5b0c-4c1e-9f3a-2d7b8c4e1a90")

BELOW_THRESHOLD = "below_threshold"


def normal_cdf(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


@dataclass(frozen=True, slots=True)
class DropTest:
    """A one-sided test of "current is worse than previous": ``z`` < 0 when it is."""

    z: float
    p_value: float


def _proportion_drop(x1: int, n1: int, x2: int, n2: int) -> DropTest | None:
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return None
    z = (x1 / n1 - x2 / n2) / se
    return DropTest(z, normal_cdf(z))


def _moments(metric: Metric, counts: ScoreCounts) -> tuple[int, float, float]:
    """n, mean and variance of the per-answer value the metric averages (NPS: +1/0/-1, CES: ease)."""
    n = 0
    total = 0.0
    squares = 0.0
    for (scale_name, score), count in counts.items():
        if count <= 0:
            continue
        if metric is Metric.NPS:
            cls = nps_class(score)
            value = 1.0 if cls is NpsClass.PROMOTER else -1.0 if cls is NpsClass.DETRACTOR else 0.0
        else:
            value = ces_ease(SCALES[(metric, scale_name)], score)
        n += count
        total += value * count
        squares += value * value * count
    if n == 0:
        return 0, 0.0, 0.0
    mean = total / n
    return n, mean, max(0.0, squares / n - mean * mean)


def _mean_drop(metric: Metric, current: ScoreCounts, previous: ScoreCounts) -> DropTest | None:
    n1, m1, v1 = _moments(metric, current)
    n2, m2, v2 = _moments(metric, previous)
    se = math.sqrt(v1 / n1 + v2 / n2)
    if se == 0:
        return None
    z = (m1 - m2) / se
    return DropTest(z, normal_cdf(z))


def drop_test(
    metric: Metric, current: ScoreCounts, previous: ScoreCounts, cur: Summary, prev: Summary
) -> DropTest | None:
    """The metric's test of a drop; ``None`` when it cannot be computed (an empty or constant sample)."""
    if cur.responses == 0 or prev.responses == 0:
        return None
    if metric is Metric.CSAT:
        return _proportion_drop(cur.positive, cur.responses, prev.positive, prev.responses)
    return _mean_drop(metric, current, previous)


def is_significant_drop(
    test: DropTest | None, *, current_n: int, previous_n: int, alpha: float, min_responses: int
) -> bool:
    """The one-look verdict: worse at level ``alpha``, both windows with ``min_responses`` answers."""
    return (
        test is not None
        and current_n >= min_responses
        and previous_n >= min_responses
        and test.z < 0
        and test.p_value < alpha
    )


def threshold_for(
    thresholds: Mapping[str, Mapping[str, float]], metric: Metric, segment: str
) -> float | None:
    """Exact segment key first, then its dimension(s) (``store``, ``channel|store``), then ``default``."""
    table = thresholds.get(metric.value, {})
    if segment in table:
        return table[segment]
    if segment != GLOBAL_SEGMENT:
        dims = "|".join(sorted(parse_segment_key(segment)))
        if dims in table:
            return table[dims]
    return table.get("default")


@dataclass(frozen=True, slots=True)
class SegmentState:
    """What was last published for one (metric, segment, window), and which alerts are active."""

    score: float | None = None
    responses: int = 0
    insufficient: bool = True
    seq: int = 0
    below: bool = False
    alerts: int = 0
    published: bool = False


@dataclass(frozen=True, slots=True)
class Alert:
    alert_id: str
    reason: str
    threshold: float | None


@dataclass(frozen=True, slots=True)
class Decision:
    state: SegmentState
    changed: bool
    event_id: str | None
    alerts: tuple[Alert, ...]


def alert_id(metric: Metric, window: str, segment: str, reason: str, number: int) -> str:
    """Deterministic: the n-th alert of a (metric, window, segment) has one id however often it is sent."""
    return str(uuid.uuid5(ALERT_NAMESPACE, f"{metric.value}|{window}|{segment}|{reason}|{number}"))


def score_event_id(metric: Metric, window: str, segment: str, seq: int) -> str:
    return str(uuid.uuid5(ALERT_NAMESPACE, f"score|{metric.value}|{window}|{segment}|{seq}"))


def decide(
    *,
    metric: Metric,
    window: str,
    segment: str,
    current: Summary,
    state: SegmentState,
    threshold: float | None,
    min_delta: float,
) -> Decision:
    """Publish a score change when the score moved (or its sufficiency flipped); alert on entering the
    below-threshold condition, once per episode."""
    moved = (
        not state.published
        or (current.score is None) != (state.score is None)
        or current.insufficient != state.insufficient
        or (
            current.score is not None
            and state.score is not None
            and current.score != state.score
            and abs(current.score - state.score) >= min_delta
        )
    )
    if not state.published and current.responses == 0:
        moved = False
    below = (
        threshold is not None
        and current.score is not None
        and not current.insufficient
        and current.score < threshold
    )
    alerts: list[Alert] = []
    count = state.alerts
    if below and not state.below:
        count += 1
        alerts.append(
            Alert(alert_id(metric, window, segment, BELOW_THRESHOLD, count), BELOW_THRESHOLD, threshold)
        )
    seq = state.seq + 1 if moved else state.seq
    new_state = SegmentState(
        score=current.score if moved else state.score,
        responses=current.responses if moved else state.responses,
        insufficient=current.insufficient if moved else state.insufficient,
        seq=seq,
        below=below,
        alerts=count,
        published=state.published or moved,
    )
    event_id = score_event_id(metric, window, segment, seq) if moved else None
    return Decision(new_state, moved, event_id, tuple(alerts))
