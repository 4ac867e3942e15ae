"""The health model admin API: the model in force, its saved versions, and saving a new version, refused
at the component and field when it is wrong (the same checks as the file at start-up)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query

from services.actions.deps import ActionsDeps
from services.actions.health.model import HealthModelError, parse_health_model
from services.actions.yamlio import load_yaml
from shared.http import problem
from shared.identity.scopes import Scope


def router(deps: ActionsDeps) -> APIRouter:
    cfg, tx = deps.settings, deps.transactions
    api = APIRouter(tags=["health"])
    reader = [Depends(deps.auth.require(Scope.RULES_READ))]
    writer = [Depends(deps.auth.require(Scope.RULES_ADMIN))]

    def file_document() -> Any:
        return load_yaml(cfg.health_model_file.read_text(encoding="utf-8"))

    @api.get(
        "/v1/health/model",
        summary="The health model in force (the newest saved version, else the file)",
        dependencies=reader,
    )
    async def get_model() -> Any:
        async with tx.connect() as stores:
            latest = await stores.health.latest_model()
        if latest is None:
            return {"version": None, "origin": str(cfg.health_model_file), "document": file_document()}
        return {"version": latest[0], "document": latest[1]}

    @api.get(
        "/v1/health/models", summary="Saved versions of the health model, newest first", dependencies=reader
    )
    async def list_models(limit: Annotated[int, Query(ge=1, le=200)] = 50) -> Any:
        async with tx.connect() as stores:
            return {"versions": await stores.health.models(limit=limit)}

    @api.put(
        "/v1/health/model",
        status_code=201,
        summary="Save a new version of the health model (applies at each subject's next recomputation)",
        responses={422: {"description": "Refused; each error names the component and the field"}},
        dependencies=writer,
    )
    async def put_model(document: Annotated[dict[str, Any], Body()]) -> Any:
        try:
            parse_health_model(document, origin="health model")
        except HealthModelError as exc:
            return problem(
                422,
                "Invalid health model",
                detail=str(exc),
                type_="https://csat.dev/problems/validation",
                errors=[
                    {
                        "field": f"components.{e.component}.{e.field}" if e.component else e.field,
                        "message": e.message,
                    }
                    for e in exc.errors
                ],
            )
        async with tx.begin() as stores:
            version = await stores.health.save_model(document=document, origin="api", author=None)
        return {"version": version}

    return api
