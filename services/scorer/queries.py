"""The read side: which counters answer a question, and the answer as the API and events show it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.scorer import domain, repository
from services.scorer.benchmarks import benchmark_for, benchmark_value
from services.scorer.signals import DropTest, drop_test
from services.scorer.windows import Comparison, Span, WindowPlan
from shared.scales import Metric

CURRENT, PREVIOUS, YEAR_AGO = "current", "previous", "year_ago"


@dataclass(frozen=True, slots=True)
class Target:
    """A segment to read; ``counted`` when it has counters, otherwise it is read from the ratings."""

    attributes: dict[str, str]
    key: str
    counted: bool
    folded: bool = False  # a value the cap folded into "other": exact figures come from the ratings


async def resolve_target(
    conn: AsyncConnection, *, attributes: dict[str, str], combos: Sequence[tuple[str, ...]]
) -> Target:
    key = domain.segment_key(attributes)
    if not attributes:
        return Target(attributes, key, True)
    dims = tuple(sorted(attributes))
    if len(dims) > 1 and dims not in combos:
        return Target(attributes, key, False)
    folded = False
    for dim, value in attributes.items():
        if not await repository.dimension_registered(conn, dimension=dim):
            # Never seen, or beyond the cap of dimensions: only the ratings can answer.
            return Target(attributes, key, False)
        if value != domain.OTHER and not await repository.is_registered(conn, dimension=dim, value=value):
            folded = True
    return Target(attributes, key, not folded, folded)


def plan_spans(plans: dict[str, WindowPlan]) -> list[tuple[str, Span]]:
    return [(label, span) for label, plan in plans.items() for span in plan.spans]


async def counts_for(
    conn: AsyncConnection, *, metric: Metric, target: Target, plans: dict[str, WindowPlan]
) -> dict[str, repository.Counts]:
    """Counts per labelled window for one segment (counters, or the ratings for uncounted segments)."""
    if target.counted:
        loaded = await repository.load_counts(
            conn,
            metric=metric.value,
            where=repository.KeyFilter(keys=[target.key]),
            spans=plan_spans(plans),
        )
        return {label: counts for (label, _key), counts in loaded.items()}
    return await repository.load_rating_counts(
        conn,
        metric=metric.value,
        attributes=target.attributes,
        ranges=[(label, plan.start, plan.end) for label, plan in plans.items()],
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
    current: repository.Counts,
    previous: repository.Counts,
    cur: domain.Summary,
    prev: domain.Summary,
    *,
    min_responses: int,
    alpha: float,
) -> dict[str, Any]:
    """The change against an earlier window, with a one-sided test that it is a real drop."""
    test: DropTest | None = drop_test(metric, current, previous, cur, prev)
    testable = test is not None and cur.responses >= min_responses and prev.responses >= min_responses
    return {
        "delta": _delta(cur.score, prev.score),
        "z": None if test is None else round(test.z, 3),
        "p_value_drop": None if test is None else round(test.p_value, 5),
        "significant_drop": bool(testable and test is not None and test.z < 0 and test.p_value < alpha),
    }


def score_body(
    *,
    metric: Metric,
    window: str,
    target: Target,
    plans: dict[str, WindowPlan],
    counts: dict[str, repository.Counts],
    min_sample: int,
    alpha: float,
    industry: str,
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
            "delta": _delta(cur.score, year.score),
        },
    }
    if target.folded:
        body["folded_into"] = domain.OTHER
    if metric is Metric.CSAT:
        body["benchmark"] = benchmark_for(industry)
        body["vs_benchmark"] = _delta(cur.score, benchmark_value(industry))
    return body
