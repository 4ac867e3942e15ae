"""A customer's history for CSMs and the tools they use (admin key)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from services.scorer import history
from services.scorer.deps import ScorerDeps
from services.scorer.routes.problems import invalid
from shared.auth import admin_guard
from shared.scales import Metric


def router(deps: ScorerDeps) -> APIRouter:
    api = APIRouter()
    guard = admin_guard(deps.settings.admin_api_key)

    @api.get(
        "/v1/customers/{customer_id}/history",
        tags=["customers"],
        summary="A customer's ratings, newest first, with their trend and lowest/highest (admin key)",
        dependencies=[Depends(guard)],
    )
    async def customer_history(
        customer_id: Annotated[str, Path(min_length=1, max_length=200)],
        metric: Metric | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: str | None = None,
        trend_ratings: Annotated[
            int, Query(ge=2, le=500, description="ratings the trend is computed on")
        ] = 50,
    ) -> Any:
        try:
            before = history.decode_cursor(cursor) if cursor else None
        except ValueError as exc:
            return invalid("cursor", str(exc))
        m = metric.value if metric else None
        async with deps.customers() as reader:
            page = await reader.customer_ratings(
                customer_id=customer_id, metric=m, before=before, limit=limit + 1
            )
            recent = await reader.customer_ratings(
                customer_id=customer_id, metric=m, before=None, limit=trend_ratings
            )
            groups = await reader.customer_score_groups(customer_id=customer_id, metric=m)
        return history.history_body(
            customer_id=customer_id,
            metric=m,
            page=page[:limit],
            more=len(page) > limit,
            recent=recent,
            groups=groups,
        )

    return api
