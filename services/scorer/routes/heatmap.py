"""A metric per pair of two dimensions (store x channel), for heat maps and drill-downs."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from services.scorer import access, domain, heatmap, queries
from services.scorer.deps import ScorerDeps
from services.scorer.ports import Counts, CountsKey, DriftRecord, KeyFilter, ScoreReader
from services.scorer.rankcache import RankCache
from services.scorer.routes.problems import invalid
from services.scorer.windows import Comparison, rolling
from shared.identity.principal import Principal
from shared.identity.scopes import Scope
from shared.scales import Metric

SegmentParam = Annotated[
    list[str] | None, Query(description="dimension:value on rows or columns, repeatable (store:paris-1)")
]


def router(deps: ScorerDeps) -> APIRouter:
    api = APIRouter()
    cfg = deps.settings
    year = timedelta(days=cfg.year_ago_days)
    reader_scope = Depends(deps.auth.require(Scope.SCORES_READ))
    busiest: RankCache[dict[str, int]] = RankCache(ttl_s=cfg.breakdown_cache_s)

    @api.get(
        "/v1/scores/heatmap",
        tags=["scores"],
        summary="Every pair of two dimensions of a counted combination (store x channel), with intervals",
    )
    async def get_heatmap(
        rows: Annotated[str, Query(description="the dimension of the rows (store)")],
        columns: Annotated[str, Query(description="the dimension of the columns (channel)")],
        metric: Metric = Metric.CSAT,
        window: str = "30d",
        segment: SegmentParam = None,
        min_responses: Annotated[int, Query(ge=0)] = 0,
        limit_rows: Annotated[int, Query(ge=1, le=1000)] = 100,
        limit_columns: Annotated[int, Query(ge=1, le=100)] = 30,
        principal: Principal = reader_scope,
    ) -> Any:
        try:
            span = domain.parse_window(window, max_window=cfg.max_window)
        except domain.WindowError as exc:
            return invalid("window", str(exc))
        try:
            filters = domain.parse_segment_params(segment or [])
        except ValueError as exc:
            return invalid("segment", str(exc))
        try:
            heat = heatmap.plan(rows_by=rows, columns_by=columns, filters=filters, combos=cfg.combos)
        except heatmap.HeatmapError as exc:
            return invalid(exc.field, str(exc))
        comp = rolling(span, now=deps.clock(), tiers=cfg.tiers, year=year)
        answers, pairs = await _answers(deps, busiest, metric=metric, window=window, heat=heat, comp=comp)
        # Only the pairs of the rows and columns shown are scored (and their drift read).
        kept = heatmap.keep(
            answers,
            heat,
            limit_rows=limit_rows,
            limit_columns=limit_columns,
            min_responses=min_responses,
            visible=principal.segment_allowed,
        )
        loaded, drift = await _kept_counts(deps, metric=metric, keys=sorted(kept.keys), comp=comp, read=pairs)
        found = queries.breakdown_rows(
            metric,
            heat.dimensions,
            loaded,
            min_responses=min_responses,
            min_sample=cfg.min_sample,
            alpha=cfg.alert_alpha,
            drift_records=drift,
        )
        # Cells a grant covers only; rows and columns are then those of the visible cells.
        found = [
            access.conceal(r, principal, min_group=cfg.min_group_size)
            for r in access.visible_rows(found, principal)
        ]
        return {
            "metric": metric.value,
            "window": window,
            "rows_by": heat.rows_by,
            "columns_by": heat.columns_by,
            "segment": filters or None,
            "from": comp.current.start.isoformat(),
            "to": comp.current.end.isoformat(),
            "previous_from": comp.previous.start.isoformat(),
            "previous_to": comp.previous.end.isoformat(),
            "min_sample": cfg.min_sample,
            **heatmap.grid(found, heat, limit_rows=limit_rows, limit_columns=limit_columns, kept=kept),
        }

    return api


async def _answers(
    deps: ScorerDeps,
    busiest: RankCache[dict[str, int]],
    *,
    metric: Metric,
    window: str,
    heat: heatmap.HeatmapPlan,
    comp: Comparison,
) -> tuple[dict[str, int], dict[CountsKey, Counts] | None]:
    """Every pair's answers over the current window, to choose the busiest rows and columns. Without a
    filter that is every pair (30,000 at 10,000 stores x 3 channels), read over the current window only
    and reused for ``breakdown_cache_s``, as a breakdown's ranking is; a drill-down reads its few pairs
    over both windows each time (and hands them on: nothing more to read)."""

    def current(loaded: dict[CountsKey, Counts]) -> dict[str, int]:
        return {k.segment_key: sum(c.values()) for k, c in loaded.items() if k.label == queries.CURRENT}

    async def read() -> dict[CountsKey, Counts]:
        async with deps.scores() as reader:
            return await _pairs(reader, metric=metric, heat=heat, comp=comp)

    if heat.fixed:
        pairs = await read()
        return current(pairs), pairs

    async def every() -> dict[str, int]:
        return current(await read())

    return await busiest.get((metric.value, window, heat.dimensions), every), None


async def _kept_counts(
    deps: ScorerDeps,
    *,
    metric: Metric,
    keys: list[str],
    comp: Comparison,
    read: dict[CountsKey, Counts] | None,
) -> tuple[dict[CountsKey, Counts], dict[str, DriftRecord]]:
    """Both windows' counters (already ``read``, or read now) and the drift states of the pairs kept
    (90 of 30,000 at 10,000 stores)."""
    both = queries.plan_spans({queries.CURRENT: comp.current, queries.PREVIOUS: comp.previous})
    kept = set(keys)
    async with deps.scores() as reader:
        if read is not None:
            loaded = {k: c for k, c in read.items() if k.segment_key in kept}
        elif keys:
            loaded = await reader.load_counts(metric=metric.value, where=KeyFilter(keys=keys), spans=both)
        else:
            loaded = {}
        drift = await reader.drift(metric=metric.value, keys=keys)
    return loaded, drift


async def _pairs(
    reader: ScoreReader, *, metric: Metric, heat: heatmap.HeatmapPlan, comp: Comparison
) -> dict[CountsKey, Counts]:
    """The pairs' counters: every pair over the current window alone (the caller reads both windows
    of the pairs it keeps), or (one dimension fixed) the free one's values first, then only those pairs
    over both windows, so a drill-down into one store never reads the other stores' pairs."""
    current = queries.plan_spans({queries.CURRENT: comp.current})
    spans = queries.plan_spans({queries.CURRENT: comp.current, queries.PREVIOUS: comp.previous})
    if not heat.fixed:
        return await reader.load_counts(
            metric=metric.value, where=KeyFilter(dimensions=heat.dimensions), spans=current
        )
    if len(heat.free) == 1:
        singles = await reader.load_counts(
            metric=metric.value, where=KeyFilter(dimensions=heat.free), spans=current
        )
        values = sorted({domain.parse_segment_key(k.segment_key)[heat.free[0]] for k in singles})
        keys = heat.keys_for(values)
    else:
        keys = [domain.segment_key(heat.fixed)]
    if not keys:
        return {}
    return await reader.load_counts(metric=metric.value, where=KeyFilter(keys=keys), spans=spans)
