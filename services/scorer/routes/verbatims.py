"""Verbatims: the comments behind the scores, filtered and paged, with theme counts and their trend.

``verbatims:read`` with the caller's segment grants, as the scores routes: a ``segment`` filter the
grants do not cover (the whole platform included, for a caller with grants) answers 404, no hint of
its data; and only comments whose segment a grant covers are counted and trended.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from services.scorer import comments, domain
from services.scorer.deps import ScorerDeps
from services.scorer.ports import CommentQuery, CommentRow
from services.scorer.routes.problems import invalid, outside_grants
from shared.identity.principal import Principal
from shared.identity.scopes import Scope
from shared.scales import Metric
from shared.verbatims import Taxonomy, load_taxonomy_file

SegmentParam = Annotated[list[str] | None, Query(description="dimension:value, repeatable (store:paris-1)")]


@lru_cache(maxsize=4)
def _taxonomy(path: Path) -> Taxonomy:
    return load_taxonomy_file(path)


def visible(rows: list[CommentRow], principal: Principal) -> list[CommentRow]:
    """The comments whose segment one of the caller's grants covers (all of them without grants)."""
    if principal.sees_all_segments:
        return rows
    return [row for row in rows if principal.segment_allowed(row.segment)]


def router(deps: ScorerDeps) -> APIRouter:
    """``GET /v1/verbatims``: its query parameters are its declaration; the body reads validate, read,
    answer."""
    api = APIRouter()
    cfg = deps.settings
    reader_scope = Depends(deps.auth.require(Scope.VERBATIMS_READ))
    taxonomy = deps.taxonomy or _taxonomy(cfg.themes_file)

    @api.get(
        "/v1/verbatims",
        tags=["verbatims"],
        summary="Comments filtered by segment, score, theme, sentiment, language, dates and text "
        "(verbatims:read, within the caller's segment grants)",
    )
    async def get_verbatims(
        metric: Metric | None = None,
        window: str = "30d",
        since: Annotated[
            date | None, Query(alias="from", description="first day (UTC), instead of window")
        ] = None,
        until: Annotated[date | None, Query(alias="to", description="last day included (UTC)")] = None,
        segment: SegmentParam = None,
        score_min: Annotated[int | None, Query(ge=0, le=10)] = None,
        score_max: Annotated[int | None, Query(ge=0, le=10)] = None,
        theme: Annotated[str | None, Query(max_length=64)] = None,
        sentiment: Annotated[str | None, Query(max_length=16, description="the comment's tone")] = None,
        language: Annotated[str | None, Query(max_length=8)] = None,
        q: Annotated[str | None, Query(max_length=200, description="text the comment contains")] = None,
        page: Annotated[int, Query(ge=1, le=10_000)] = 1,
        per_page: Annotated[int, Query(ge=1, le=200)] = 50,
        principal: Principal = reader_scope,
    ) -> Any:
        asked = _validate(
            deps,
            taxonomy,
            principal,
            metric=metric,
            window=window,
            since=since,
            until=until,
            segment=segment,
            score_min=score_min,
            score_max=score_max,
            text=comments.TextFilters(
                theme=theme or None, sentiment=sentiment or None, language=language or None
            ),
            q=q,
        )
        if isinstance(asked, JSONResponse):
            return asked
        limit = cfg.verbatims_scan_limit
        async with deps.customers() as reader:
            current = visible(await reader.comments(query=asked.query(asked.r, limit=limit)), principal)
            previous = visible(
                await reader.comments(query=asked.query(asked.r.previous, limit=limit)), principal
            )
        return comments.body(
            current=current,
            previous=previous,
            taxonomy=taxonomy,
            filters=asked.filters,
            r=asked.r,
            page=page,
            per_page=per_page,
            scan_limit=limit,
            echo=asked.echo(),
        )

    return api


@dataclass(frozen=True, slots=True)
class _Asked:
    """One call's filters, validated: the date range, what SQL filters on, what is read from the text."""

    metric: Metric | None
    window: str | None  # echoed only when no from/to replaced it
    r: comments.Range
    attrs: dict[str, str]
    score_min: int | None
    score_max: int | None
    filters: comments.TextFilters
    text: str | None

    def query(self, at: comments.Range, *, limit: int) -> CommentQuery:
        """The comments to read over ``at`` (the range itself, or the previous one for the trend)."""
        return CommentQuery(
            start=at.start,
            end=at.end,
            metric=self.metric.value if self.metric else None,
            segment=self.attrs,
            score_min=self.score_min,
            score_max=self.score_max,
            text=self.text,
            limit=limit,
        )

    def echo(self) -> dict[str, Any]:
        """The filters as applied, returned with the answer."""
        return {
            "metric": self.metric.value if self.metric else None,
            "window": self.window,
            "segment": [f"{k}:{v}" for k, v in sorted(self.attrs.items())],
            "score_min": self.score_min,
            "score_max": self.score_max,
            "theme": self.filters.theme,
            "sentiment": self.filters.sentiment,
            "language": self.filters.language,
            "q": self.text,
        }


def _validate(
    deps: ScorerDeps,
    taxonomy: Taxonomy,
    principal: Principal,
    *,
    metric: Metric | None,
    window: str,
    since: date | None,
    until: date | None,
    segment: list[str] | None,
    score_min: int | None,
    score_max: int | None,
    text: comments.TextFilters,
    q: str | None,
) -> _Asked | JSONResponse:
    """The call's filters, or the problem naming the first one at fault (404 outside the grants)."""
    try:
        span = domain.parse_window(window, max_window=deps.settings.max_window)
    except domain.WindowError as exc:
        return invalid("window", str(exc))
    try:
        attrs = domain.parse_segment_params(segment or [])
    except ValueError as exc:
        return invalid("segment", str(exc))
    if not principal.segment_allowed(attrs):
        return outside_grants()
    if score_min is not None and score_max is not None and score_min > score_max:
        return invalid("score_min", "score_min must not exceed score_max")
    try:
        r = comments.date_range(window=span, since=since, until=until, now=deps.clock())
        comments.check_text_filters(text, taxonomy)
    except comments.VerbatimFilterError as exc:
        return invalid(exc.field, str(exc))
    return _Asked(
        metric=metric,
        window=window if since is None and until is None else None,
        r=r,
        attrs=attrs,
        score_min=score_min,
        score_max=score_max,
        filters=text,
        text=" ".join((q or "").split()) or None,
    )
