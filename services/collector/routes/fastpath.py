"""Serve well-formed posts without FastAPI's per-request dependency solving (ratings, interactions)."""

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute, request_response
from pydantic import TypeAdapter, ValidationError

#: A fast handler: the request, its JSON object body and its ``Idempotency-Key``; None hands the
#: request to FastAPI's own handler.
FastHandler = Callable[[Request, dict[str, Any], str | None], Awaitable[Response | None]]


def fast_path(routes: APIRouter, path: str, fast: FastHandler, *, key: TypeAdapter[Any]) -> None:
    """Serve a well-formed request of ``path`` without FastAPI's per-request dependency solving.

    The route stays declared as usual (OpenAPI, and the answer to anything unusual): a JSON object body
    that validates, with an ``Idempotency-Key`` that ``key`` accepts if any, goes straight to the same
    endpoint with the same guard; everything else (another content type, unreadable JSON, an invalid
    field or header) is handed to FastAPI's own handler, which words the problem exactly as before.
    Solving the guard, the two credential headers, the key header and the body was about a fifth of the
    collector's CPU per request (the ``no-fast-path`` variant in docs/benchmarks.md). ``routes`` must be
    the router the app dispatches with (``app.router``): an included router's routes are copies.
    """
    route = next(
        r
        for r in routes.routes
        if isinstance(r, APIRoute) and r.path == path and "POST" in (r.methods or set())
    )
    standard = route.get_route_handler()

    async def handler(request: Request) -> Response:
        content_type = request.headers.get("content-type", "")
        header = request.headers.get("idempotency-key")
        if content_type.startswith("application/json"):
            try:
                parsed = orjson.loads(await request.body())
                if header is not None:
                    key.validate_python(header)
            except (orjson.JSONDecodeError, ValidationError):
                parsed = None
            if isinstance(parsed, dict):
                answer = await fast(request, parsed, header)
                if answer is not None:
                    return answer
        return await standard(request)

    route.app = request_response(handler)
