"""The Scores view: CSAT, NPS and CES tiles for a window and a segment, the distribution and the trend.

``/scores`` is the page, ``/scores/panel`` the part a live update swaps in (same checks, same data).
Every address is checked against the person's grants here and again by the scorer with their token.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response

from services.console import scoreview
from services.console.apiclient import ApiError, PersonApi
from services.console.deps import ConsoleDeps
from services.console.guard import SignedIn
from services.console.i18n import Translator
from services.console.scoreview import FilterError, Filters
from services.console.web import PageError, not_found
from shared.identity.scopes import Scope
from shared.scales import Metric

SegmentQuery = Annotated[list[str] | None, Query()]


def bad_filter() -> PageError:
    return PageError(400, "scores.bad_filter_title", "scores.bad_filter")


def no_segment() -> PageError:
    return PageError(403, "scores.no_segment_title", "scores.no_segment")


def granted_filters(
    person: SignedIn, *, metric: str | None, window: str | None, segment: list[str] | None
) -> Filters:
    """The address's filters, if this person may read them (404 as if absent when not granted)."""
    try:
        filters = scoreview.parse_filters(metric=metric, window=window, segment=segment)
    except FilterError:
        raise bad_filter() from None
    if not person.principal.segment_allowed(filters.attributes):
        raise not_found()
    return filters


def api_failure(exc: ApiError) -> PageError:
    """The scorer's refusal as a page: a segment it does not grant is absent, a filter it cannot use is
    the address's fault, anything else is the service being unavailable."""
    if exc.status in (401, 403, 404):
        return not_found()
    if exc.status in (400, 422):
        return bad_filter()
    return PageError(503, "error.unavailable_title", "error.unavailable")


async def load_panel(api: PersonApi, filters: Filters, tr: Translator) -> scoreview.Panel:
    """The three scores and the focused metric's series, asked in parallel."""
    segment = filters.segment_params

    async def score(metric: Metric) -> Any:
        params = {"metric": metric.value, "window": filters.window, "segment": segment}
        return await api.get_json("scorer", "/v1/scores", params=params)

    series_params = {"metric": filters.metric.value, "window": filters.window, "segment": segment}
    try:
        *bodies, series = await asyncio.gather(
            *(score(m) for m in scoreview.METRICS),
            api.get_json("scorer", "/v1/scores/series", params=series_params),
        )
    except ApiError as exc:
        raise api_failure(exc) from None
    name = tr.t(METRIC_NAMES[filters.metric])
    return scoreview.panel(
        filters,
        dict(zip(scoreview.METRICS, bodies, strict=True)),
        series,
        chart_label=tr.t("scores.chart_value", metric=name),
        band_label=tr.t("scores.chart_band"),
        time_label=tr.t("scores.chart_time"),
    )


METRIC_NAMES = {
    Metric.CSAT: "scores.metric.csat",
    Metric.NPS: "scores.metric.nps",
    Metric.CES: "scores.metric.ces",
}


def router(deps: ConsoleDeps) -> APIRouter:
    r = APIRouter(include_in_schema=False)
    reader = Depends(deps.gate.person(Scope.SCORES_READ))

    @r.get("/scores")
    async def scores(
        request: Request,
        metric: str | None = None,
        window: str | None = None,
        segment: SegmentQuery = None,
        person: SignedIn = reader,
    ) -> Response:
        if not segment and not person.principal.segment_allowed({}):
            # A store manager sees their store, not the whole: the address without a segment is theirs.
            pairs = scoreview.default_segment(person.principal)
            if pairs is None:
                raise no_segment()
            try:
                granted = [f"{d}:{v}" for d, v in pairs]
                filters = scoreview.parse_filters(metric=metric, window=window, segment=granted)
            except FilterError:
                raise bad_filter() from None
            return RedirectResponse(f"/scores?{filters.query()}", status_code=303)
        filters = granted_filters(person, metric=metric, window=window, segment=segment)
        tr = deps.pages.translator(request)
        panel = await load_panel(deps.api.on_behalf_of(person), filters, tr)
        return deps.pages.render(request, "scores.html", **_context(person, panel))

    @r.get("/scores/panel")
    async def scores_panel(
        request: Request,
        metric: str | None = None,
        window: str | None = None,
        segment: SegmentQuery = None,
        person: SignedIn = reader,
    ) -> Response:
        filters = granted_filters(person, metric=metric, window=window, segment=segment)
        tr = deps.pages.translator(request)
        panel = await load_panel(deps.api.on_behalf_of(person), filters, tr)
        return deps.pages.render(request, "_scores_panel.html", **_context(person, panel))

    return r


def _context(person: SignedIn, panel: scoreview.Panel) -> dict[str, Any]:
    grants = person.principal.segments
    return {
        "panel": panel,
        "filters": panel.filters,
        "sv": scoreview,
        "metric_names": METRIC_NAMES,
        "windows": scoreview.window_choices(panel.filters.window),
        "suggested_segments": [str(g) for g in sorted(grants or ()) if len(g.pairs) == 1],
    }
