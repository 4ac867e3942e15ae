"""A fake Slack incoming webhook: POST JSON ``{text, blocks}`` to /services/...; answers ``ok``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from tests.fakes.base import FakeServer, Step


class FakeSlack(FakeServer):
    """Validates block kit limits as Slack does; errors are plain-text codes."""

    name = "slack"

    def routes_for(self) -> list[tuple[str, Iterable[str]]]:
        return [("/services/{path:path}", ["POST"])]

    def hook(self, name: str) -> str:
        return f"{self.url}/services/T000/B000/{name}"

    async def parse(self, request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    def check(self, request: Request, payload: dict[str, Any]) -> Response | None:
        if not request.headers.get("content-type", "").startswith("application/json"):
            return PlainTextResponse("invalid_payload", status_code=400)
        if not payload.get("text") and not payload.get("blocks"):
            return PlainTextResponse("no_text", status_code=400)
        for block in payload.get("blocks", []):
            text = block.get("text", {})
            if block.get("type") == "header" and (
                text.get("type") != "plain_text" or len(text["text"]) > 150
            ):
                return PlainTextResponse("invalid_blocks", status_code=400)
            if block.get("type") == "section" and (
                text.get("type") not in ("mrkdwn", "plain_text") or len(text.get("text", "")) > 3000
            ):
                return PlainTextResponse("invalid_blocks", status_code=400)
        return None

    def key(self, request: Request, payload: dict[str, Any]) -> str:
        return str(request.path_params["path"]).rsplit("/", 1)[-1]

    def success(self, request: Request, payload: dict[str, Any]) -> Response:
        return PlainTextResponse("ok")

    def error(self, step: Step, request: Request, payload: dict[str, Any]) -> Response:
        headers = {"Retry-After": step.retry_after} if step.retry_after is not None else None
        codes = {
            400: "invalid_payload",
            403: "action_prohibited",
            404: "no_service",
            410: "channel_is_archived",
        }
        code = codes.get(step.status, "rate_limited" if step.status == 429 else "rollup_error")
        return PlainTextResponse(code, status_code=step.status, headers=headers)
