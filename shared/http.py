"""HTTP pieces every service mounts: RFC 9457 problem responses, health, readiness and metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import tracing
from shared.listeners import ListenerSplit
from shared.textguard import QueryTextGuard

log = structlog.get_logger(__name__)

PROBLEM_JSON = "application/problem+json"

HTTP_REQUESTS = Counter(
    "csat_http_requests_total",
    "HTTP requests answered, by service, route template, method and status code",
    ["service", "route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "csat_http_request_duration_seconds",
    "HTTP request duration by service and route template",
    ["service", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


def problem(
    status: int,
    title: str,
    *,
    detail: str | None = None,
    type_: str = "about:blank",
    errors: Sequence[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """An ``application/problem+json`` response; ``errors`` lists ``{field, message}`` items."""
    body: dict[str, Any] = {"type": type_, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if errors:
        body["errors"] = list(errors)
        body["field"] = errors[0].get("field")
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def field_path(loc: Sequence[str | int]) -> str:
    """``("body", "ratings", 3, "score")`` -> ``ratings[3].score``."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += f".{p}" if out else str(p)
    return out or "body"


async def _validation_handler(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return validation_problem(exc)


def validation_problem(exc: RequestValidationError) -> JSONResponse:
    """The 422 problem for a request that failed pydantic validation, one error per field."""
    errors = []
    for err in exc.errors():
        msg = str(err.get("msg", "invalid"))
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        errors.append({"field": field_path(err.get("loc", ())), "message": msg})
    first = errors[0] if errors else {"field": "body", "message": "invalid request"}
    return problem(
        422,
        "Invalid request",
        detail=f"{first['field']}: {first['message']}",
        type_="https://csat.dev/problems/validation",
        errors=errors,
    )


async def _http_handler(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers) if exc.headers else None
    detail = exc.detail if isinstance(exc.detail, str) else None
    return problem(exc.status_code, _title(exc.status_code), detail=detail, headers=headers)


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class RequestMetricsMiddleware:
    """Counts requests by route template (bounded cardinality) and logs them without query strings."""

    def __init__(self, app: ASGIApp, *, service: str) -> None:
        self.app = app
        self.service = service
        # Labelled children, looked up once each: ``labels()`` (a lock and its checks) ran twice a request.
        self._counted: dict[tuple[str, str, int], Any] = {}
        self._timed: dict[str, Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_holder = {"status": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            status = status_holder["status"]
            elapsed = time.perf_counter() - started
            method = scope["method"]
            counted = self._counted.get((template, method, status))
            if counted is None:
                counted = HTTP_REQUESTS.labels(self.service, template, method, str(status))
                self._counted[template, method, status] = counted
            counted.inc()
            timed = self._timed.get(template)
            if timed is None:
                timed = self._timed[template] = HTTP_DURATION.labels(self.service, template)
            timed.observe(elapsed)
            if status >= 500:
                log.warning(
                    "http_request",
                    route=template,
                    method=scope["method"],
                    status=status,
                    duration_ms=round(elapsed * 1000, 2),
                )


class TraceContextMiddleware:
    """Continue the caller's W3C ``traceparent`` (or start a trace) for the whole request.

    Records encoded while handling the request carry it as ``ce_traceparent``; the response says which
    span served it in a ``traceresponse`` header (W3C Trace Context level 2) so a client can find it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope.get("headers", ()):
            if name == b"traceparent":
                incoming = value
                break
        ctx = tracing.continue_from(incoming)

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                headers.append((b"traceresponse", ctx.traceparent.encode()))
                message = {**message, "headers": headers}
            await send(message)

        with tracing.span(ctx):
            await self.app(scope, receive, send_wrapper)


ReadinessCheck = Callable[[], Awaitable[None]]


def install_common(
    app: FastAPI,
    *,
    service: str,
    checks: dict[str, ReadinessCheck],
    soft_checks: dict[str, ReadinessCheck] | None = None,
    internal_port: int | None = None,
    documents_public: bool = True,
    admin_prefixes: tuple[str, ...] = (),
) -> None:
    """Problem handlers, request metrics, ``/healthz``, ``/readyz`` and ``/metrics``.

    ``soft_checks`` are reported by ``/readyz`` but do not take the service out of rotation (a
    dependency the service can work without for a while). ``internal_port``: serve those (and the
    OpenAPI documents) on that listener only (``shared.listeners``); ``documents_public``: the OpenAPI
    documents also on the public one (dev and test); ``admin_prefixes``: routes under these paths are
    served on the internal listener only too (the public one answers 404).
    """
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_handler)
    app.add_middleware(QueryTextGuard)  # inside the metrics: its 422s are counted like the others
    if internal_port is not None or not documents_public:
        app.add_middleware(
            ListenerSplit,
            internal_port=internal_port,
            documents_public=documents_public,
            admin_prefixes=admin_prefixes,
        )
    app.add_middleware(RequestMetricsMiddleware, service=service)
    app.add_middleware(TraceContextMiddleware)

    @app.get("/healthz", tags=["operations"], summary="Liveness: the process answers and its loops run")
    async def healthz(request: Request) -> Response:
        # A consumer service whose loop died for good must be restarted: say so to the liveness probe.
        runtime = getattr(request.app.state, "runtime", None)
        alive = getattr(runtime, "alive", None)
        if callable(alive) and not alive():
            return JSONResponse({"status": "dead", "service": service}, status_code=503)
        return JSONResponse({"status": "ok", "service": service})

    @app.get("/readyz", tags=["operations"], summary="Readiness: every dependency is reachable")
    async def readyz() -> Response:
        results: dict[str, str] = {}
        ok = True
        degraded = False
        for name, check in [*checks.items(), *(soft_checks or {}).items()]:
            try:
                await asyncio.wait_for(check(), 3)
                results[name] = "ok"
            except Exception as exc:  # noqa: BLE001 - any failure means not ready; the type is reported
                results[name] = f"failed: {type(exc).__name__}"
                if name in checks:
                    ok = False
                else:
                    degraded = True
        status = 200 if ok else 503
        label = ("degraded" if degraded else "ready") if ok else "not ready"
        return JSONResponse({"status": label, "checks": results}, status_code=status)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
