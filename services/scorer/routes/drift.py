"""Drift alerts' side of the scores: every monitored segment's detector, filtered by status."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from services.scorer import domain, queries
from services.scorer.deps import ScorerDeps
from services.scorer.ports import DriftKey
from services.scorer.routes.problems import invalid
from shared.identity.principal import Principal
from shared.identity.scopes import Scope
from shared.scales import Metric

DriftStatus = Literal["warming_up", "too_small", "monitoring", "drop_detected"]


def router(deps: ScorerDeps) -> APIRouter:
    api = APIRouter()
    cfg = deps.settings
    reader_scope = Depends(deps.auth.require(Scope.SCORES_READ))

    @api.get(
        "/v1/drift",
        tags=["scores"],
        summary="Each segment's drift detector: status, watched drop, evidence, the last drop detected",
    )
    async def list_drift(
        status: DriftStatus | None = None,
        metric: Metric | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
        principal: Principal = reader_scope,
    ) -> Any:
        after = None
        if cursor:
            name, sep, key = cursor.partition(":")
            if not sep or name not in {m.value for m in Metric}:
                return invalid("cursor", "cursor must be a next_cursor this endpoint gave")
            after = DriftKey(name, key)
        async with deps.scores() as reader:
            page = await reader.drift_list(
                metric=metric.value if metric else None, status=status, after=after, limit=limit + 1
            )
        more = len(page) > limit
        page = page[:limit]
        return {
            "status": status,
            "metric": metric.value if metric else None,
            "segments": [
                {
                    "metric": r.metric,
                    "segment_key": r.segment_key,
                    "segment": domain.parse_segment_key(r.segment_key) or None,
                    **queries.drift_body(r, metric=Metric(r.metric), counted=True, settings=cfg.drift),
                }
                for r in page
                # Segments a grant covers only; the cursor still walks the whole list.
                if principal.segment_allowed(domain.parse_segment_key(r.segment_key))
            ],
            "next_cursor": f"{page[-1].metric}:{page[-1].segment_key}" if more else None,
        }

    return api
