"""A fake Mailgun Messages API: POST /v3/{domain}/messages, form-encoded, basic auth ``api:<key>``."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from tests.fakes.base import FakeServer, Step


class FakeMailgun(FakeServer):
    """200 ``{"id": "<...@domain>", "message": "Queued. Thank you."}``; 401 plain ``Forbidden``."""

    name = "mailgun"

    def __init__(self, api_key: str = "key-test", domain: str = "mg.example.com") -> None:
        super().__init__()
        self.api_key = api_key
        self.domain = domain

    def routes_for(self) -> list[tuple[str, Iterable[str]]]:
        return [("/v3/{domain}/messages", ["POST"])]

    async def parse(self, request: Request) -> dict[str, Any]:
        return await self.form(request)

    def check(self, request: Request, payload: dict[str, Any]) -> Response | None:
        expected = "Basic " + base64.b64encode(f"api:{self.api_key}".encode()).decode()
        if request.headers.get("authorization") != expected:
            return PlainTextResponse("Forbidden", status_code=401)
        if request.path_params["domain"] != self.domain:
            return JSONResponse({"message": "Domain not found"}, status_code=404)
        if "__content_type_error__" in payload:
            return JSONResponse({"message": "unsupported content type"}, status_code=400)
        for name in ("from", "to", "subject"):
            if not payload.get(name):
                return JSONResponse({"message": f"'{name}' parameter is missing"}, status_code=400)
        if "@" not in payload["to"]:
            return JSONResponse(
                {"message": "'to' parameter is not a valid address. please check documentation"},
                status_code=400,
            )
        if not (payload.get("text") or payload.get("html")):
            return JSONResponse(
                {"message": "Need at least one of 'text' or 'html' parameters specified"}, 400
            )
        return None

    def key(self, request: Request, payload: dict[str, Any]) -> str:
        return str(payload["to"])

    def success(self, request: Request, payload: dict[str, Any]) -> Response:
        return JSONResponse({"id": f"<{uuid.uuid4().hex}@{self.domain}>", "message": "Queued. Thank you."})

    def error(self, step: Step, request: Request, payload: dict[str, Any]) -> Response:
        headers = {"Retry-After": step.retry_after} if step.retry_after is not None else None
        if step.status == 400:
            return JSONResponse({"message": "'to' parameter is not a valid address"}, status_code=400)
        if step.status == 429:
            return JSONResponse({"message": "Too many requests"}, status_code=429, headers=headers)
        return PlainTextResponse("Internal Server Error", status_code=step.status, headers=headers)
