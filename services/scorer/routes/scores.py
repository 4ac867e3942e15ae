"""Scores for dashboards and other tools: one segment, a ranked breakdown, a series for charts."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from services.scorer import access, domain, queries, responses
from services.scorer.deps import ScorerDeps
from services.scorer.ports import KeyFilter
from services.scorer.rankcache import RankCache
from services.scorer.routes.problems import invalid, outside_grants
from services.scorer.windows import Comparison, plan_series, rolling
from shared.identity.principal import Principal
from shared.identity.scopes import Scope
from shared.scales import Metric

SegmentParam = Annotated[list[str] | None, Query(description="dimension:value, repeatable (store:paris-1)")]


class ResponseRateOut(BaseModel):
    """A segment's survey response rate: of the invitations sent in ``[from, to)`` (whole hours), the
    share answered, with its 95 % Wilson interval (docs/scores.md, "Survey response rate")."""

    model_config = ConfigDict(populate_by_name=True)

    rate: float = Field(description="answered / invited, a ratio (0.083 = 8.3 %)")
    ci_low: float
    ci_high: float
    invited: int
    answered: int = Field(description="Invitations whose first answer came (a re-click counts once)")
    low: bool = Field(description="rate below threshold on at least min_invited invitations")
    threshold: float = Field(description="CSAT_LOW_RESPONSE_RATE (0.10)")
    min_invited: int = Field(description="CSAT_LOW_RESPONSE_MIN_INVITED (30)")
    from_: str = Field(alias="from")
    to: str


class CompletionRateOut(BaseModel):
    """Of the answers counted in the response rate, the share that came with a comment."""

    rate: float
    ci_low: float
    ci_high: float
    answered: int
    commented: int


class BreakdownRowOut(BaseModel):
    """One value of the dimension: its score fields (as ``GET /v1/scores``), its rank and change, and
    its survey response rate. Other score fields (distribution, z, p values...) come too."""

    model_config = ConfigDict(extra="allow")

    rank: int
    value: str = Field(description="The dimension's value (paris-1), or a combination's values joined by ','")
    segment: dict[str, str]
    segment_key: str
    folded: bool = Field(description="the 'other' value the cap folds new values into")
    score: float | None
    responses: int
    ci_low: float | None
    ci_high: float | None
    insufficient: bool
    previous: float | None
    previous_responses: int
    delta: float | None
    significant_drop: bool
    drift_status: str
    response_rate: ResponseRateOut | None = Field(
        description="None: no survey invitation for this segment in the window"
    )
    completion_rate: CompletionRateOut | None = Field(description="None: no answer to an invitation")
    low_response: bool = Field(description="response_rate.low, or false without invitations")


class BreakdownOut(BaseModel):
    """``GET /v1/scores/breakdown``: the rows of a dimension, ranked."""

    model_config = ConfigDict(populate_by_name=True)

    metric: Metric
    window: str
    by: str
    from_: str = Field(alias="from")
    to: str
    previous_from: str
    previous_to: str
    sort: str
    order: Literal["desc", "asc"]
    total: int = Field(description="Rows before the limit")
    segments: list[BreakdownRowOut]


def router(deps: ScorerDeps) -> APIRouter:
    """One route per function below, each a closure over ``deps``; every one needs ``scores:read``."""
    api = APIRouter()
    _scores(api, deps)
    _breakdown(api, deps)
    _series(api, deps)
    return api


def _scores(api: APIRouter, deps: ScorerDeps) -> None:
    cfg = deps.settings
    year = timedelta(days=cfg.year_ago_days)
    reader_scope = Depends(deps.auth.require(Scope.SCORES_READ))

    @api.get(
        "/v1/scores", tags=["scores"], summary="A metric over a rolling window, optionally for a segment"
    )
    async def get_scores(
        metric: Metric = Metric.CSAT,
        window: str = "30d",
        segment: SegmentParam = None,
        principal: Principal = reader_scope,
    ) -> Any:
        try:
            span = domain.parse_window(window, max_window=cfg.max_window)
        except domain.WindowError as exc:
            return invalid("window", str(exc))
        try:
            attrs = domain.parse_segment_params(segment or [])
        except ValueError as exc:
            return invalid("segment", str(exc))
        if not principal.segment_allowed(attrs):
            return outside_grants()
        comp = rolling(span, now=deps.clock(), tiers=cfg.tiers, year=year)
        plans = queries.comparison_plans(comp)
        async with deps.scores() as reader:
            target = await queries.resolve_target(reader, attributes=attrs, combos=cfg.combos)
            counts = await queries.counts_for(reader, metric=metric, target=target, plans=plans)
            drift = await reader.drift(metric=metric.value, keys=[target.key]) if target.counted else {}
            rr_start, rr_end = responses.window(comp.current.start, comp.current.end)
            survey_counts = await reader.response_counts(
                metric=metric.value,
                key=target.key if target.counted else None,
                attributes=target.attributes,
                start=rr_start,
                end=rr_end,
            )
        body = queries.score_body(
            metric=metric,
            window=window,
            target=target,
            plans=plans,
            counts=counts,
            min_sample=cfg.min_sample,
            alpha=cfg.alert_alpha,
            industry=cfg.industry,
            drift_record=drift.get(target.key),
            drift_settings=cfg.drift,
        )
        body.update(responses.body(survey_counts, start=rr_start, end=rr_end, settings=cfg.response_settings))
        return access.conceal(body, principal, min_group=cfg.min_group_size)


async def _add_response_rates(
    deps: ScorerDeps, metric: Metric, comp: Comparison, page: list[dict[str, Any]]
) -> None:
    """Survey response rates of the rows shown, as GET /v1/scores gives them per segment (never cached)."""
    rr_start, rr_end = responses.window(comp.current.start, comp.current.end)
    async with deps.scores() as reader:
        survey_counts = await reader.response_counts_by_key(
            metric=metric.value, keys=[r["segment_key"] for r in page], start=rr_start, end=rr_end
        )
    for row in page:
        counts = survey_counts.get(row["segment_key"], responses.ResponseCounts())
        row.update(
            responses.body(counts, start=rr_start, end=rr_end, settings=deps.settings.response_settings)
        )


def _breakdown(api: APIRouter, deps: ScorerDeps) -> None:
    cfg = deps.settings
    year = timedelta(days=cfg.year_ago_days)
    rankings: RankCache[tuple[Comparison, list[dict[str, Any]]]] = RankCache(ttl_s=cfg.breakdown_cache_s)
    reader_scope = Depends(deps.auth.require(Scope.SCORES_READ))

    @api.get(
        "/v1/scores/breakdown",
        tags=["scores"],
        summary="Every value of a dimension (or configured combination), ranked, with intervals",
        responses={
            200: {"model": BreakdownOut, "description": "The rows, ranked, each with its response rate"}
        },
    )
    async def get_breakdown(
        by: Annotated[
            str, Query(description="a dimension (store) or a configured combination (channel,store)")
        ],
        metric: Metric = Metric.CSAT,
        window: str = "30d",
        sort: queries.BreakdownSort = "score",
        order: Literal["desc", "asc"] = "desc",
        min_responses: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, description="rows of the ranking to skip (paging)")] = 0,
        principal: Principal = reader_scope,
    ) -> Any:
        try:
            span = domain.parse_window(window, max_window=cfg.max_window)
        except domain.WindowError as exc:
            return invalid("window", str(exc))
        dims = tuple(sorted({d.strip() for d in by.split(",") if d.strip()}))
        if not dims or (len(dims) > 1 and dims not in cfg.combos):
            combos = ", ".join(",".join(c) for c in cfg.combos) or "none"
            return invalid("by", f"by must be one dimension or a configured combination ({combos})")

        async def compute() -> tuple[Comparison, list[dict[str, Any]]]:
            comp = rolling(span, now=deps.clock(), tiers=cfg.tiers, year=year)
            spans = queries.plan_spans({queries.CURRENT: comp.current, queries.PREVIOUS: comp.previous})
            async with deps.scores() as reader:
                loaded = await reader.load_counts(
                    metric=metric.value, where=KeyFilter(dimensions=dims), spans=spans
                )
                drift = await reader.drift(metric=metric.value, keys=sorted({k.segment_key for k in loaded}))
            rows = queries.breakdown_rows(
                metric,
                dims,
                loaded,
                min_responses=min_responses,
                min_sample=cfg.min_sample,
                alpha=cfg.alert_alpha,
                drift_records=drift,
            )
            return comp, rows

        # Every row is scored (the ranking needs them all) at most once per ``breakdown_cache_s``; each
        # request keeps what its caller may see, ranks copies, and conceals the page it answers.
        comp, every = await rankings.get((metric.value, window, dims, min_responses), compute)
        visible = [dict(r) for r in access.visible_rows(every, principal)]
        ranked = queries.rank(visible, sort=sort, descending=order == "desc")
        page = [
            access.conceal(r, principal, min_group=cfg.min_group_size)
            for r in ranked[offset : offset + limit]
        ]
        await _add_response_rates(deps, metric, comp, page)
        return {
            "metric": metric.value,
            "window": window,
            "by": ",".join(dims),
            "from": comp.current.start.isoformat(),
            "to": comp.current.end.isoformat(),
            "previous_from": comp.previous.start.isoformat(),
            "previous_to": comp.previous.end.isoformat(),
            "sort": sort,
            "order": order,
            "total": len(ranked),
            "offset": offset,
            "segments": page,
        }


def _series(api: APIRouter, deps: ScorerDeps) -> None:
    cfg = deps.settings
    reader_scope = Depends(deps.auth.require(Scope.SCORES_READ))

    @api.get("/v1/scores/series", tags=["scores"], summary="A metric per time step, for charts")
    async def get_series(
        metric: Metric = Metric.CSAT,
        window: str = "30d",
        step: Annotated[
            str | None, Query(description="bucket per point: 1m, 1h, 1d, 1w... (default by window)")
        ] = None,
        rolling_window: Annotated[
            str | None, Query(alias="rolling", description="each point over this trailing window (e.g. 7d)")
        ] = None,
        segment: SegmentParam = None,
        principal: Principal = reader_scope,
    ) -> Any:
        try:
            span = domain.parse_window(window, max_window=cfg.max_window)
        except domain.WindowError as exc:
            return invalid("window", str(exc))
        try:
            step_td = domain.parse_window(step) if step else queries.default_step(span)
        except domain.WindowError as exc:
            return invalid("step", str(exc))
        lead = timedelta(0)
        if rolling_window is not None:
            try:
                roll = domain.parse_window(rolling_window, max_window=cfg.max_window)
            except domain.WindowError as exc:
                return invalid("rolling", str(exc))
            if roll < step_td or roll % step_td or roll // step_td > 400:
                return invalid("rolling", "rolling must be 1 to 400 whole steps")
            lead = roll - step_td
        try:
            attrs = domain.parse_segment_params(segment or [])
        except ValueError as exc:
            return invalid("segment", str(exc))
        if not principal.segment_allowed(attrs):
            return outside_grants()
        now = deps.clock()
        async with deps.scores() as reader:
            target = await queries.resolve_target(reader, attributes=attrs, combos=cfg.combos)
            tiers = cfg.tiers if target.counted else queries.RATINGS_TIER
            try:
                plan = plan_series(span, step_td, now=now, tiers=tiers, lead=lead)
            except ValueError as exc:
                return invalid("step", str(exc))
            data = await reader.load_series(
                metric=metric.value,
                key=target.key if target.counted else None,
                attributes=attrs,
                tier=plan.tier,
                start=plan.start - lead,
                end=plan.end,
                step=plan.step,
            )
        return {
            "metric": metric.value,
            "window": window,
            "step": step or f"{int(plan.step.total_seconds() // 60)}m",
            "rolling": rolling_window,
            "segment": attrs or None,
            "segment_key": target.key,
            "source": "counters" if target.counted else "ratings",
            "tier": plan.tier,
            "from": plan.start.isoformat(),
            "to": plan.end.isoformat(),
            "points": queries.series_points(metric, plan, data, lead=lead, min_sample=cfg.min_sample),
        }
