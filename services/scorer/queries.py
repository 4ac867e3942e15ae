"""The read side: which counters answer a question, and the answer as the API shows it.

Reads go through ``ports.ScoreReader``; everything else here is pure (planning and rendering).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from services.scorer import domain, drift
from services.scorer.benchmarks import benchmark_for, benchmark_value
from services.scorer.ports import (
    Counts,
    CountsKey,
    DriftRecord,
    KeyFilter,
    LabelledRange,
    LabelledSpan,
    ScoreReader,
)
from services.scorer.signals import DropTest, drop_test, is_significant_drop
from services.scorer.windows import MINUTE, Comparison, SeriesPlan, Tier, WindowPlan
from shared.scales import Metric

CURRENT, PREVIOUS, YEAR_AGO = "current", "previous", "year_ago"
#: How the period-over-period test is meant to be read: one look by a person, not a monitor.
ONE_LOOK = "one_look"

# Ratings are kept for ever: a segment read from them has no tier limits.
RATINGS_TIER = (Tier("ratings", MINUTE, None),)

BreakdownSort = Literal["score", "ci_low", "ci_high", "responses", "delta"]


@dataclass(frozen=True, slots=True)
class Target:
    """A segment to read; ``counted`` when it has counters, otherwise it is read from the ratings."""

    attributes: dict[str, str]
    key: str
    counted: bool
    folded: bool = False  # a value the cap folded into "other": exact figures come from the ratings


async def resolve_target(
    reader: ScoreReader, *, attributes: dict[str, str], combos: Sequence[tuple[str, ...]]
) -> Target:
    key = domain.segment_key(attributes)
    if not attributes:
        return Target(attributes, key, True)
    dims = tuple(sorted(attributes))
    if len(dims) > 1 and dims not in combos:
        return Target(attributes, key, False)
    registered = await reader.registration(attributes=attributes)
    folded = False
    for dim, value in attributes.items():
        if dim not in registered.dimensions:
            # Never seen, or beyond the cap of dimensions: only the ratings can answer.
            return Target(attributes, key, False)
        if value != domain.OTHER and dim not in registered.valued:
            folded = True
    return Target(attributes, key, not folded, folded)


def plan_spans(plans: Mapping[str, WindowPlan]) -> list[LabelledSpan]:
    return [LabelledSpan(label, span) for label, plan in plans.items() for span in plan.spans]


async def counts_for(
    reader: ScoreReader, *, metric: Metric, target: Target, plans: dict[str, WindowPlan]
) -> dict[str, Counts]:
    """Counts per labelled window for one segment (counters, or the ratings for uncounted segments)."""
    if target.counted:
        loaded = await reader.load_counts(
            metric=metric.value, where=KeyFilter(keys=[target.key]), spans=plan_spans(plans)
        )
        return {k.label: counts for k, counts in loaded.items()}
    return await reader.load_rating_counts(
        metric=metric.value,
        attributes=target.attributes,
        ranges=[LabelledRange(label, plan.start, plan.end) for label, plan in plans.items()],
    )


def comparison_plans(comp: Comparison) -> dict[str, WindowPlan]:
    return {CURRENT: comp.current, PREVIOUS: comp.previous, YEAR_AGO: comp.year_ago}


def render(summary: domain.Summary) -> dict[str, Any]:
    """The fields every score carries, whatever the endpoint."""
    out: dict[str, Any] = {
        "score": summary.score,
        "responses": summary.responses,
        "positive": summary.positive,
        "neutral": summary.neutral,
        "negative": summary.negative,
        "positive_pct": summary.positive_pct,
        "ci_low": summary.ci_low,
        "ci_high": summary.ci_high,
        "insufficient": summary.insufficient,
        "mean": summary.mean,
        "distribution": summary.distribution,
    }
    if summary.metric is Metric.NPS:
        out.update(promoters=summary.promoters, passives=summary.passives, detractors=summary.detractors)
    if summary.metric is Metric.CSAT:
        out["band"] = summary.band
    return out


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 2)


def change(
    metric: Metric,
    current: Counts,
    previous: Counts,
    cur: domain.Summary,
    prev: domain.Summary,
    *,
    min_responses: int,
    alpha: float,
) -> dict[str, Any]:
    """The change against an earlier window, with one-sided tests that it is a real drop (or rise), for
    a person looking once (``comparison: one_look``): repeated, that test would raise false alarms, so
    alerts come from the drift detector instead (``drift``). The rise is the mirror test at the same
    level (``1 - p_value_drop < alpha``): a person reading a comparison wants to know both ways.
    """
    test: DropTest | None = drop_test(metric, current, previous, cur, prev)
    significant = is_significant_drop(
        test, current_n=cur.responses, previous_n=prev.responses, alpha=alpha, min_responses=min_responses
    )
    return {
        "delta": _delta(cur.score, prev.score),
        "comparison": ONE_LOOK,
        "z": None if test is None else round(test.z, 3),
        "p_value_drop": None if test is None else round(test.p_value, 5),
        "significant_drop": significant,
        "significant_rise": is_significant_drop(
            None if test is None else DropTest(-test.z, 1 - test.p_value),
            current_n=cur.responses,
            previous_n=prev.responses,
            alpha=alpha,
            min_responses=min_responses,
        ),
    }


def score_body(
    *,
    metric: Metric,
    window: str,
    target: Target,
    plans: dict[str, WindowPlan],
    counts: dict[str, Counts],
    min_sample: int,
    alpha: float,
    industry: str,
    drift_record: DriftRecord | None,
    drift_settings: drift.DriftSettings,
) -> dict[str, Any]:
    current, previous, year_ago = (counts.get(label, {}) for label in (CURRENT, PREVIOUS, YEAR_AGO))
    cur = domain.summarize(metric, current, min_sample=min_sample)
    prev = domain.summarize(metric, previous, min_sample=min_sample)
    year = domain.summarize(metric, year_ago, min_sample=min_sample)
    plan = plans[CURRENT]
    body: dict[str, Any] = {
        "metric": metric.value,
        "window": window,
        "segment": target.attributes or None,
        "segment_key": target.key,
        "from": plan.start.isoformat(),
        "to": plan.end.isoformat(),
        "precision": plan.precision,
        "source": "counters" if target.counted else "ratings",
        **render(cur),
        "min_sample": min_sample,
        "previous": prev.score,
        "previous_responses": prev.responses,
        "previous_from": plans[PREVIOUS].start.isoformat(),
        "previous_to": plans[PREVIOUS].end.isoformat(),
        **change(metric, current, previous, cur, prev, min_responses=min_sample, alpha=alpha),
        "year_ago": {
            "from": plans[YEAR_AGO].start.isoformat(),
            "to": plans[YEAR_AGO].end.isoformat(),
            "score": year.score,
            "responses": year.responses,
            "insufficient": year.insufficient,
            **change(metric, current, year_ago, cur, year, min_responses=min_sample, alpha=alpha),
        },
    }
    body["drift"] = drift_body(drift_record, metric=metric, counted=target.counted, settings=drift_settings)
    if target.folded:
        body["folded_into"] = domain.OTHER
    if metric is Metric.CSAT:
        body["benchmark"] = benchmark_for(industry)
        body["vs_benchmark"] = _delta(cur.score, benchmark_value(industry))
    return body


def breakdown_rows(
    metric: Metric,
    dims: Sequence[str],
    loaded: Mapping[CountsKey, Counts],
    *,
    min_responses: int,
    min_sample: int,
    alpha: float,
    drift_records: Mapping[str, DriftRecord],
) -> list[dict[str, Any]]:
    """One row per segment key of a breakdown with at least ``min_responses`` (and one) responses."""
    by_key: dict[str, dict[str, Counts]] = {}
    for k, counts in loaded.items():
        by_key.setdefault(k.segment_key, {})[k.label] = counts
    rows: list[dict[str, Any]] = []
    for key, per_label in by_key.items():
        current = per_label.get(CURRENT, {})
        previous = per_label.get(PREVIOUS, {})
        cur = domain.summarize(metric, current, min_sample=min_sample)
        if cur.responses < max(min_responses, 1):
            continue
        prev = domain.summarize(metric, previous, min_sample=min_sample)
        attrs = domain.parse_segment_key(key)
        rows.append(
            {
                "value": attrs[dims[0]] if len(dims) == 1 else ",".join(attrs[d] for d in dims),
                "segment": attrs,
                "segment_key": key,
                "folded": domain.OTHER in attrs.values(),
                **render(cur),
                "previous": prev.score,
                "previous_responses": prev.responses,
                **change(metric, current, previous, cur, prev, min_responses=min_sample, alpha=alpha),
                "drift_status": drift_status(drift_records.get(key)),
            }
        )
    return rows


def rank(rows: list[dict[str, Any]], *, sort: BreakdownSort, descending: bool) -> list[dict[str, Any]]:
    """Rows with a value to sort on first (ties: more responses first), then the others; numbered."""
    present = [r for r in rows if r[sort] is not None]
    missing = [r for r in rows if r[sort] is None]
    present.sort(
        key=lambda r: (r[sort], r["responses"] if descending else -r["responses"]), reverse=descending
    )
    missing.sort(key=lambda r: -r["responses"])
    ranked = present + missing
    for i, row in enumerate(ranked, start=1):
        row["rank"] = i
    return ranked


def default_step(span: timedelta) -> timedelta:
    """A series' step when none is asked for: at most a few hundred points."""
    if span <= timedelta(hours=2):
        return MINUTE
    if span <= timedelta(days=8):
        return timedelta(hours=1)
    return timedelta(days=1)


def series_points(
    metric: Metric,
    plan: SeriesPlan,
    data: Mapping[datetime, Counts],
    *,
    lead: timedelta,
    min_sample: int,
) -> list[dict[str, Any]]:
    """Each point over its step, or over the trailing ``lead + step`` when the series is rolling."""
    lookback = lead // plan.step + 1
    points = []
    for i in range(plan.points):
        t = plan.start + i * plan.step
        counts: Counts = {}
        for k in range(lookback):
            for key, n in data.get(t - k * plan.step, {}).items():
                counts[key] = counts.get(key, 0) + n
        s = domain.summarize(metric, counts, min_sample=min_sample)
        points.append(
            {
                "from": (t - lead).isoformat(),
                "to": (t + plan.step).isoformat(),
                "score": s.score,
                "responses": s.responses,
                "positive_pct": s.positive_pct,
                "ci_low": s.ci_low,
                "ci_high": s.ci_high,
                "insufficient": s.insufficient,
            }
        )
    return points


# ---- drift: what the detector says of a segment -------------------------------------------------------
NOT_EVALUATED = "not_evaluated"
NOT_MONITORED = "not_monitored"


def drift_status(record: DriftRecord | None) -> str:
    return NOT_EVALUATED if record is None else drift.status_of(record.state).value


def _points(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 2)


def drift_body(
    record: DriftRecord | None, *, metric: Metric, counted: bool, settings: drift.DriftSettings
) -> dict[str, Any]:
    """The detector's view of a segment: status, the drop it watches and how long that takes to confirm,
    the evidence against its threshold, and the last drop detected (since when, how much, interval)."""
    if not counted:
        return {
            "status": NOT_MONITORED,
            "message": "only segments with counters of their own (not folded into other) are monitored",
        }
    if record is None or record.state.day is None:
        return {
            "status": NOT_EVALUATED,
            "message": "not evaluated yet: the drift detector judges each UTC day once it has closed",
        }
    v = drift.verdict_of(record.state, metric=metric, settings=settings)
    d = v.drop
    # The last drop's change point, or where the evidence now accumulating started (its CUSUM excursion).
    since = d.since if d is not None else record.state.since
    return {
        "status": v.status.value,
        "day": v.day.isoformat(),
        "evaluated_at": record.evaluated_at.isoformat(),
        "min_drop": v.min_drop,
        "watched_drop": _points(v.watched_drop),
        "days_to_confirm": _points(v.delay_min_drop),
        "answers_per_day": round(v.rate, 2),
        "evidence": _points(v.evidence),
        "threshold": round(v.threshold, 3),
        "months_per_false_alarm": settings.months_per_false_alarm,
        "since": None if since is None else since.isoformat(),
        "drop": None
        if d is None
        else {
            "size": round(d.size, 2),
            "ci_low": round(d.ci_low, 2),
            "ci_high": round(d.ci_high, 2),
            "before": round(d.before, 2),
            "after": round(d.after, 2),
            "answers_before": d.answers_before,
            "answers_after": d.answers_after,
        },
        "message": drift.describe(v, metric=metric, settings=settings),
    }
