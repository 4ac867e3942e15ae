"""A customer's history for CSMs and the tools they use (``customers:read``, owned customers only)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from services.scorer import history
from services.scorer.deps import ScorerDeps
from services.scorer.routes.problems import invalid
from shared.http import problem
from shared.identity.principal import Principal
from shared.identity.scopes import Scope
from shared.scales import Metric

NOT_OWNED = "no such customer among this credential's accounts"


def router(deps: ScorerDeps) -> APIRouter:
    api = APIRouter()
    customers_reader = Depends(deps.auth.require(Scope.CUSTOMERS_READ))

    @api.get(
        "/v1/customers/{customer_id}/history",
        tags=["customers"],
        summary="A customer's ratings, newest first, with their trend and lowest/highest "
        "(customers:read; a CSM's own accounts only)",
    )
    async def customer_history(
        customer_id: Annotated[str, Path(min_length=1, max_length=200)],
        metric: Metric | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: str | None = None,
        trend_ratings: Annotated[
            int, Query(ge=2, le=500, description="ratings the trend is computed on")
        ] = 50,
        principal: Principal = customers_reader,
    ) -> Any:
        try:
            before = history.decode_cursor(cursor) if cursor else None
        except ValueError as exc:
            return invalid("cursor", str(exc))
        m = metric.value if metric else None
        async with deps.customers() as reader:
            if not principal.sees_all_accounts:
                accounts = await reader.customer_accounts(customer_id=customer_id)
                if not any(principal.owns(account_id=a) for a in accounts):
                    return problem(404, "Not Found", detail=NOT_OWNED)
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
