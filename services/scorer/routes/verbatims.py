"""Verbatims: the comments behind the scores, filtered and paged, with theme counts and their trend.

``verbatims:read`` with the caller's segment grants, as the scores routes: a ``segment`` filter the
grants do not cover (the whole platform included, for a caller with grants) answers 404, no hint of
its data; and only comments whose segment a grant covers are counted and trended.
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

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


# Whole on purpose: one route, its 14 query parameters are the declaration; validate, read, answer.
def router(deps: ScorerDeps) -> APIRouter:
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
        if score_min is not None and score_max is not None and score_min > score_max:
            return invalid("score_min", "score_min must not exceed score_max")
        filters = comments.TextFilters(
            theme=theme or None, sentiment=sentiment or None, language=language or None
        )
        try:
            r = comments.date_range(window=span, since=since, until=until, now=deps.clock())
            comments.check_text_filters(filters, taxonomy)
        except comments.VerbatimFilterError as exc:
            return invalid(exc.field, str(exc))
        text = " ".join((q or "").split()) or None

        def query(at: comments.Range) -> CommentQuery:
            return CommentQuery(
                start=at.start,
                end=at.end,
                metric=metric.value if metric else None,
                segment=attrs,
                score_min=score_min,
                score_max=score_max,
                text=text,
                limit=cfg.verbatims_scan_limit,
            )

        async with deps.customers() as reader:
            current = visible(await reader.comments(query=query(r)), principal)
            previous = visible(await reader.comments(query=query(r.previous)), principal)
        return comments.body(
            current=current,
            previous=previous,
            taxonomy=taxonomy,
            filters=filters,
            r=r,
            page=page,
            per_page=per_page,
            scan_limit=cfg.verbatims_scan_limit,
            echo={
                "metric": metric.value if metric else None,
                "window": window if since is None and until is None else None,
                "segment": [f"{k}:{v}" for k, v in sorted(attrs.items())],
                "score_min": score_min,
                "score_max": score_max,
                "theme": filters.theme,
                "sentiment": filters.sentiment,
                "language": filters.language,
                "q": text,
            },
        )

    return api
