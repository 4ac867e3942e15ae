"""The problem answers the route modules share: a query parameter they cannot use, a segment outside the
caller's grants."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from shared.http import problem


def invalid(field: str, message: str) -> JSONResponse:
    return problem(
        422,
        "Invalid query",
        detail=f"{field}: {message}",
        type_="https://csat.dev/problems/validation",
        errors=[{"field": field, "message": message}],
    )


def outside_grants() -> JSONResponse:
    """A segment the caller's grants do not cover answers as if it did not exist (no hint of its data)."""
    return problem(404, "Not Found", detail="no such segment within this credential's grants")
