"""The rules' dry run: what the rules in force (or a proposed set) would do with a rating, nothing sent.

``POST /v1/rules/dry-run`` reads through a READ ONLY transaction (PostgreSQL refuses any write in it),
publishes nothing and counts nothing; ``GET /v1/rules/dry-run/ratings`` lists the ratings actions
stored, to pick one. Both need ``rules:read``; customer addresses are shown to admins only.
"""

from __future__ import annotations

from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Query

from services.actions.deps import ActionsDeps
from services.actions.dryrun import DryRunRequest, DryRunResult, PickableRating
from services.actions.rules import RuleFileError
from shared.http import problem
from shared.identity.principal import Principal
from shared.identity.scopes import Role, Scope
from shared.scales import ScaleError

log = structlog.get_logger(__name__)

RULES_PROBLEM = "https://csat.dev/problems/invalid-rules"


def router(deps: ActionsDeps) -> APIRouter:
    api = APIRouter(tags=["rules"])
    runner, tx = deps.dry_run, deps.transactions
    reader = Depends(deps.auth.require(Scope.RULES_READ))

    @api.post(
        "/v1/rules/dry-run",
        summary="Which rules fire on a rating and what they would send; nothing is sent or stored",
        response_model=DryRunResult,
    )
    async def dry_run(body: DryRunRequest, principal: Principal = reader) -> Any:
        try:
            async with tx.read_only() as stores:
                result = await runner.run(stores, body, reveal=principal.role is Role.ADMIN)
        except RuleFileError as exc:
            first = exc.errors[0]
            return problem(
                422,
                "Invalid rules",
                detail=str(first),
                type_=RULES_PROBLEM,
                errors=[{"field": e.field, "rule": e.rule, "message": e.message} for e in exc.errors],
                rule=first.rule,
            )
        except ScaleError as exc:
            field = f"rating.{exc.field}"
            return problem(
                422,
                "Invalid rating",
                detail=f"{field}: {exc}",
                errors=[{"field": field, "message": str(exc)}],
            )
        except LookupError:
            return problem(404, "Not Found", detail="no stored rating with this rating_id")
        fired = sum(1 for r in result.rules if r.status == "fired")
        log.info("rules_dry_run", fired=fired, messages=len(result.messages), proposed=result.proposed)
        return result

    @api.get(
        "/v1/rules/dry-run/ratings",
        summary="The newest ratings actions decided on, as a dry run would use them",
        response_model=list[PickableRating],
    )
    async def dry_run_ratings(
        limit: Annotated[int, Query(ge=1, le=100)] = 20, principal: Principal = reader
    ) -> Any:
        async with tx.read_only() as stores:
            return await runner.recent(stores, limit=limit)

    return api
