"""The Segments view: a ranking by any dimension against the whole, drill-down, a heat map, CSV export.

``/segments?by=store`` ranks the stores; ``/segments?by=channel&segment=store:paris-1`` drills into one
store (its channels, compared with the store); ``/segments.csv`` with the same query is the ranking
shown, as a file. The rows a person sees are those their grants open, here and at the scorer.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from services.console import scoreview, segmentview
from services.console.apiclient import ApiError, PersonApi
from services.console.deps import ConsoleDeps
from services.console.guard import SignedIn
from services.console.routes.scores import METRIC_NAMES, SegmentQuery, api_failure, bad_filter
from services.console.scoreview import FilterError
from services.console.segmentview import SegmentsPage, SegmentsQuery
from services.console.web import not_found
from shared.identity.principal import Principal
from shared.identity.scopes import Scope

# Module level: under ``from __future__ import annotations`` FastAPI resolves them by name.
Limit = Annotated[int | None, Query()]
PageNumber = Annotated[int | None, Query()]
_FILE_PART = re.compile(r"[^A-Za-z0-9_.-]+")


def parse(
    person: SignedIn,
    *,
    by: str | None,
    metric: str | None,
    window: str | None,
    segment: list[str] | None,
    sort: str | None,
    order: str | None,
    across: str | None,
    limit: int | None,
    page: int | None = None,
) -> SegmentsQuery:
    """The address, if this person may read it: a drill-down only within a granted segment."""
    try:
        filters = scoreview.parse_filters(metric=metric, window=window, segment=segment)
        query = segmentview.parse_query(
            filters, by=by, across=across, sort=sort, order=order, limit=limit, page=page
        )
    except FilterError:
        raise bad_filter() from None
    if query.drilled and not person.principal.segment_allowed(filters.attributes):
        raise not_found()
    return query


async def _optional(call: Any) -> Any:
    """A part of the page the scorer may not answer (not a counted combination): None instead."""
    try:
        return await call
    except ApiError as exc:
        if exc.status in (400, 422):
            return None
        raise


async def load(api: PersonApi, principal: Principal, q: SegmentsQuery) -> SegmentsPage:
    """The whole (if the person may read it), the rows and the heat map, asked in parallel."""
    f = q.filters
    base = {"metric": f.metric.value, "window": f.window}
    whole_call = (
        api.get_json("scorer", "/v1/scores", params={**base, "segment": f.segment_params})
        if principal.segment_allowed(f.attributes)
        else _none()
    )
    if q.drilled:
        dim = f.segment[0][0] if len(f.segment) == 1 else None
        rows_call = (
            _optional(
                api.get_json(
                    "scorer",
                    "/v1/scores/heatmap",
                    params={
                        **base,
                        "rows": dim,
                        "columns": q.by,
                        "segment": f.segment_params,
                        "limit_columns": 100,
                    },
                )
            )
            if dim is not None
            else _none()
        )
        heat_call = _none()
    else:
        rows_call = api.get_json(
            "scorer",
            "/v1/scores/breakdown",
            params={
                **base,
                "by": q.by,
                "sort": q.sort,
                "order": "desc" if q.descending else "asc",
                # One page of the ranking: the scorer ranks every value and answers this slice only.
                "limit": q.limit,
                "offset": q.offset,
            },
        )
        heat_call = _optional(
            api.get_json(
                "scorer",
                "/v1/scores/heatmap",
                params={**base, "rows": q.by, "columns": q.across, "limit_rows": segmentview.HEATMAP_ROWS},
            )
        )
    try:
        whole_body, rows_body, heat_body = await asyncio.gather(whole_call, rows_call, heat_call)
    except ApiError as exc:
        raise api_failure(exc) from None
    return page(principal, q, whole_body=whole_body, rows_body=rows_body, heat_body=heat_body)


async def _none() -> None:
    return None


def page(
    principal: Principal,
    q: SegmentsQuery,
    *,
    whole_body: Any,
    rows_body: Any,
    heat_body: Any,
) -> SegmentsPage:
    metric = q.filters.metric
    min_sample = (
        scoreview.as_int((whole_body or {}).get("min_sample") or (rows_body or {}).get("min_sample")) or 30
    )
    whole = segmentview.whole_of(metric, q.filters.segment, whole_body)
    found = (rows_body or {}).get("cells" if q.drilled else "segments") or []
    rows = segmentview.rows_from(metric, found, dimension=q.by, whole=whole, min_sample=min_sample)
    shown = segmentview.visible(rows, principal, dimension=q.by, drilled=q.drilled)
    total, offset = len(shown), 0
    if q.drilled:
        ranked = segmentview.rank(shown, sort=q.sort, descending=q.descending, limit=q.limit)
    else:
        # The scorer ranked every value this person may see and sent one page, in order.
        total = scoreview.as_int((rows_body or {}).get("total")) or len(shown)
        offset = q.offset
        ranked = [replace(r, rank=offset + i) for i, r in enumerate(shown, start=1)]
    heat = None
    if heat_body is not None and q.across != q.by:
        heat = segmentview.heatmap(metric, heat_body, principal)
    return SegmentsPage(
        query=q,
        rows=tuple(ranked),
        total=total,
        whole=whole,
        min_sample=min_sample,
        heatmap=heat,
        drill_unavailable=q.drilled and rows_body is None,
        heatmap_unavailable=not q.drilled and heat_body is None,
        offset=offset,
    )


def router(deps: ConsoleDeps) -> APIRouter:
    r = APIRouter(include_in_schema=False)
    reader = Depends(deps.gate.person(Scope.SCORES_READ))

    @r.get("/segments")
    async def segments(
        request: Request,
        by: str | None = None,
        metric: str | None = None,
        window: str | None = None,
        segment: SegmentQuery = None,
        sort: str | None = None,
        order: str | None = None,
        across: str | None = None,
        limit: Limit = None,
        page: PageNumber = None,
        person: SignedIn = reader,
    ) -> Response:
        q = parse(
            person,
            by=by,
            metric=metric,
            window=window,
            segment=segment,
            sort=sort,
            order=order,
            across=across,
            limit=limit,
            page=page,
        )
        view = await load(deps.api.on_behalf_of(person), person.principal, q)
        return deps.pages.render(
            request,
            "segments.html",
            view=view,
            q=q,
            filters=q.filters,
            sv=scoreview,
            metric_names=METRIC_NAMES,
            windows=scoreview.window_choices(q.filters.window),
            sorts=segmentview.SORTS,
            dimensions=[d for d in deps.settings.dimensions if d not in q.filters.attributes],
        )

    @r.get("/segments.csv")
    async def segments_csv(
        by: str | None = None,
        metric: str | None = None,
        window: str | None = None,
        segment: SegmentQuery = None,
        sort: str | None = None,
        order: str | None = None,
        across: str | None = None,
        limit: Limit = None,
        page: PageNumber = None,
        person: SignedIn = reader,
    ) -> Response:
        q = parse(
            person,
            by=by,
            metric=metric,
            window=window,
            segment=segment,
            sort=sort,
            order=order,
            across=across,
            limit=limit,
            page=page,
        )
        view = await load(deps.api.on_behalf_of(person), person.principal, q)
        lines = segmentview.csv_rows(view.rows, dimension=q.by, filters=q.filters, whole=view.whole)
        return Response(
            segmentview.csv_text(lines).encode("utf-8"),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{file_name(q)}"'},
        )

    return r


def file_name(q: SegmentsQuery) -> str:
    """``segments-store-csat-30d.csv`` (a drill-down adds its filter); only safe characters."""
    parts = ["segments", q.by, q.filters.metric.value, q.filters.window]
    parts += [f"{d}-{v}" for d, v in q.filters.segment]
    return _FILE_PART.sub("_", "-".join(parts))[:150] + ".csv"
