"""The baseline the collector is measured against: a bare FastAPI endpoint that validates the same body.

Same pydantic models (``RatingIn``, ``InteractionIn``), same uvicorn settings (uvloop, httptools, one
process), answers 202 without normalising, publishing or metrics: the difference to the collector is
what our work costs.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from services.collector.domain import RatingIn
from services.collector.interactions import InteractionIn

app = FastAPI(title="bare baseline")


class BatchIn(BaseModel):
    ratings: list[RatingIn] = Field(min_length=1, max_length=500)


@app.post("/v1/ratings", status_code=202)
async def post_rating(body: RatingIn) -> Any:
    return JSONResponse({"rating_id": body.rating_id or "-", "status": "accepted"}, status_code=202)


@app.post("/v1/ratings/batch", status_code=202)
async def post_batch(body: BatchIn) -> Any:
    return JSONResponse({"accepted": len(body.ratings), "rejected": 0}, status_code=202)


class InteractionBatchIn(BaseModel):
    interactions: list[InteractionIn] = Field(min_length=1, max_length=500)


@app.post("/v1/interactions", status_code=202)
async def post_interaction(body: InteractionIn) -> Any:
    return JSONResponse({"interaction_id": body.interaction_id or "-", "status": "accepted"}, status_code=202)


@app.post("/v1/interactions/batch", status_code=202)
async def post_interaction_batch(body: InteractionBatchIn) -> Any:
    return JSONResponse({"accepted": len(body.interactions), "rejected": 0}, status_code=202)


@app.get("/readyz")
async def readyz() -> dict[str, str]:
    return {"status": "ready"}
