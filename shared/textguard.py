"""Text no route may receive: NUL characters (PostgreSQL refuses them), unpaired surrogates and invalid
UTF-8 (not encodable), other control characters. Refused with a 422 problem naming the parameter or the
JSON field before any route runs, instead of a 500 with the statement's parameters in the log.

- ``QueryTextGuard`` (every service, through ``shared.http.install_common``): the path and every query
  parameter's name and value. Starlette would turn invalid percent-encoded UTF-8 into U+FFFD silently;
  it is refused here instead.
- ``JsonTextGuard`` (services whose JSON bodies reach the database): every key and string of a JSON
  request body, at any depth, named by its path (``attributes.plan``, ``rules[2].id``). A body that is
  not JSON is left to the route (its own 422).
"""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.security.text import json_text_field, text_problem

#: Bodies longer than this are not inspected here (the service's body-size limit answers first).
MAX_INSPECTED_BYTES = 1_048_576
_WITH_BODY = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _refuse(field: str, message: str) -> JSONResponse:
    """The same RFC 9457 problem as ``shared.http.validation_problem`` gives for a field."""
    body = {
        "type": "https://csat.dev/problems/validation",
        "title": "Invalid request",
        "status": 422,
        "detail": f"{field}: {message}",
        "errors": [{"field": field, "message": message}],
        "field": field,
    }
    return JSONResponse(body, status_code=422, media_type="application/problem+json")


def query_problem(scope: Scope) -> tuple[str, str] | None:
    """``(field, message)`` for the first refused part of the path or query string, or None."""
    why = text_problem(scope.get("path", ""))
    if why:
        return "path", f"the path {why}"
    raw: bytes = scope.get("query_string", b"")
    if not raw:
        return None
    # surrogateescape keeps bytes that are not UTF-8 as lone surrogates, which text_problem refuses.
    pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True, errors="surrogateescape")
    for name, value in pairs:
        why = text_problem(name, single_line=True)
        if why:
            field = name.encode("utf-8", "replace").decode("utf-8", "replace")
            return "query", f"a query parameter's name ({field!r}) {why}"
        why = text_problem(value)
        if why:
            return name, f"{name} {why}"
    return None


class QueryTextGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            found = query_problem(scope)
            if found is not None:
                await _refuse(*found)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return b"json" in value.lower()
    return False


class JsonTextGuard:
    def __init__(self, app: ASGIApp, *, max_bytes: int = MAX_INSPECTED_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _WITH_BODY or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        received: list[Message] = []
        size, more = 0, True
        while more and size <= self.max_bytes:
            message = await receive()
            received.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            more = bool(message.get("more_body", False))
        if not more and received and received[-1]["type"] == "http.request":
            body = b"".join(m.get("body", b"") for m in received)
            found = _body_problem(body)
            if found is not None:
                await _refuse(*found)(scope, receive, send)
                return

        async def replay() -> Message:
            if received:
                return received.pop(0)
            return await receive()

        await self.app(scope, replay, send)


def _body_problem(body: bytes) -> tuple[str, str] | None:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    found = json_text_field(document)
    if found is None:
        return None
    field, why, is_key = found
    return field, (f"a key of {field} {why}" if is_key else f"{field} {why}")
