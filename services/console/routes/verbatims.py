"""The Verbatims view: the comments behind the scores, filtered by segment, score, theme, sentiment,
language, dates and text, with theme counts and their trend; ``/verbatims.csv`` is the page shown.

A person limited to some segments reads only comments within them: the address without a segment
takes them to their first grant, another segment answers 404 (page and CSV alike), before the scorer
is asked.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response

from services.console import scoreview, verbatimview
from services.console.apiclient import ApiError, PersonApi
from services.console.deps import ConsoleDeps
from services.console.guard import SignedIn
from services.console.routes.scores import METRIC_NAMES, no_segment
from services.console.verbatimview import FilterError, VerbatimsQuery
from services.console.web import PageError, not_found
from shared.identity.scopes import Scope

SegmentQuery = Annotated[list[str] | None, Query()]
_FILE_PART = re.compile(r"[^A-Za-z0-9_.-]+")


def bad_filter(field: str) -> PageError:
    return PageError(400, "verbatims.bad_filter_title", f"verbatims.bad_filter.{field}")


def api_failure(exc: ApiError) -> PageError:
    if exc.status in (401, 403, 404):
        return not_found()
    if exc.status in (400, 422):
        field = str(((exc.problem.get("errors") or [{}])[0]).get("field") or "")
        return bad_filter(field if field in verbatimview.FIELDS else "other")
    return PageError(503, "error.unavailable_title", "error.unavailable")


async def load(api: PersonApi, q: VerbatimsQuery) -> Any:
    try:
        return await api.get_json("scorer", "/v1/verbatims", params=q.api_params())
    except ApiError as exc:
        raise api_failure(exc) from None


def file_name(q: VerbatimsQuery) -> str:
    parts = ["verbatims", *(f"{d}-{v}" for d, v in q.segment)]
    if q.theme:
        parts.append(q.theme)
    parts.append(f"p{q.page}")
    return _FILE_PART.sub("_", "-".join(parts))[:150] + ".csv"


def router(deps: ConsoleDeps) -> APIRouter:
    r = APIRouter(include_in_schema=False)
    reader = Depends(deps.gate.person(Scope.VERBATIMS_READ))

    def parse(
        request: Request, person: SignedIn, segment: list[str] | None
    ) -> VerbatimsQuery | RedirectResponse:
        p = request.query_params
        try:
            q = verbatimview.parse_query(
                segment=segment,
                metric=p.get("metric"),
                window=p.get("window"),
                since=p.get("from"),
                until=p.get("to"),
                score_min=p.get("score_min"),
                score_max=p.get("score_max"),
                theme=p.get("theme"),
                sentiment=p.get("sentiment"),
                language=p.get("language"),
                q=p.get("q"),
                page=p.get("page"),
            )
        except FilterError as exc:
            raise bad_filter(exc.field) from None
        principal = person.principal
        if not q.segment and not principal.segment_allowed({}):
            pairs = scoreview.default_segment(principal)
            if pairs is None:
                raise no_segment()
            granted = replace(q, segment=pairs)
            return RedirectResponse(f"{request.url.path}?{granted.query()}", status_code=303)
        if not principal.segment_allowed(q.attributes):
            raise not_found()
        return q

    @r.get("/verbatims")
    async def verbatims(
        request: Request, segment: SegmentQuery = None, person: SignedIn = reader
    ) -> Response:
        q = parse(request, person, segment)
        if isinstance(q, RedirectResponse):
            return q
        body = await load(deps.api.on_behalf_of(person), q)
        themes = body.get("themes") or []
        return deps.pages.render(
            request,
            "verbatims.html",
            q=q,
            body=body,
            items=body.get("items") or [],
            themes=themes,
            sparks={t["theme"]: verbatimview.spark(t.get("series") or []) for t in themes},
            vv=verbatimview,
            metric_names=METRIC_NAMES,
            windows=verbatimview.window_choices(q.window),
            can_customers=person.principal.can(Scope.CUSTOMERS_READ),
            suggested_segments=[str(g) for g in sorted(person.principal.segments or ()) if len(g.pairs) == 1],
        )

    @r.get("/verbatims.csv")
    async def verbatims_csv(
        request: Request, segment: SegmentQuery = None, person: SignedIn = reader
    ) -> Response:
        q = parse(request, person, segment)
        if isinstance(q, RedirectResponse):
            return q
        body = await load(deps.api.on_behalf_of(person), q)
        return Response(
            verbatimview.csv_file(body.get("items") or []).encode("utf-8"),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{file_name(q)}"'},
        )

    return r
