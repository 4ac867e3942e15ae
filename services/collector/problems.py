"""The collector's RFC 9457 problems: the error routes raise, the handlers answering it, its schema."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, Field

from services.collector import metrics
from shared.http import field_path, problem, validation_problem


class ProblemError(Exception):
    """Raised anywhere in a request; answered as RFC 9457 problem+json by ``install_handlers``."""

    def __init__(
        self,
        status: int,
        title: str,
        *,
        detail: str,
        type_: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        message: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.message = message or detail
        self.status = status
        self.title = title
        self.detail = detail
        self.type_ = type_
        self.field = field
        self.headers = headers


class ProblemModel(BaseModel):
    """RFC 9457 problem details, as every error of this API is answered."""

    type: str = Field(examples=["https://csat.dev/problems/validation"])
    title: str
    status: int
    detail: str | None = None
    field: str | None = Field(default=None, description="The input at fault (first of `errors`)")
    errors: list[dict[str, str]] | None = None


def problem_example(status: int, title: str, type_: str, detail: str, field: str | None) -> dict[str, Any]:
    """An OpenAPI ``content`` entry: the Problem schema with one example body."""
    body: dict[str, Any] = {
        "type": f"https://csat.dev/problems/{type_}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if field:
        body["field"] = field
        body["errors"] = [{"field": field, "message": detail}]
    return {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}, "example": body}}


def invalid_rating(field: str, message: str, source: str) -> ProblemError:
    """422 for a rating refused by validation, counted by the kind of field at fault."""
    metrics.reject(metrics.reason_for_field(field), source)
    return ProblemError(
        422,
        "Invalid rating",
        detail=f"{field}: {message}",
        type_="https://csat.dev/problems/validation",
        field=field,
        message=message,
    )


def unavailable(what: Literal["broker", "database"], *, retry_after_s: int) -> ProblemError:
    """503 with Retry-After: the broker or the database could not take the rating."""
    return ProblemError(
        503,
        "Service Unavailable",
        detail=f"the {what} is unavailable; nothing was recorded, retry later",
        type_=f"https://csat.dev/problems/{what}-unavailable",
        headers={"Retry-After": str(retry_after_s)},
    )


def install_handlers(app: FastAPI, *, rating_paths: Collection[str]) -> None:
    """Answer ``ProblemError`` as problem+json; count invalid rating bodies by the field at fault."""

    async def on_problem(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ProblemError)
        errors = [{"field": exc.field, "message": exc.message}] if exc.field else None
        return problem(
            exc.status, exc.title, detail=exc.detail, type_=exc.type_, errors=errors, headers=exc.headers
        )

    async def on_invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        answer = validation_problem(exc)
        if request.url.path in rating_paths:
            errors = exc.errors()
            field = field_path(errors[0].get("loc", ())) if errors else "body"
            metrics.reject(metrics.reason_for_field(field), getattr(request.state, "source_id", None))
        return answer

    app.add_exception_handler(ProblemError, on_problem)
    app.add_exception_handler(RequestValidationError, on_invalid)


def add_problem_schema(app: FastAPI) -> None:
    """Register the Problem schema that every error response refers to."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas["Problem"] = ProblemModel.model_json_schema(ref_template="#/components/schemas/{model}")
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign] # FastAPI's documented way to extend the schema
