"""The problem answer both route modules give for a query parameter they cannot use."""

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
