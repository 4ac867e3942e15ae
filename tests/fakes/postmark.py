"""A fake Postmark Email API: POST /email, JSON, ``X-Postmark-Server-Token``, Postmark ErrorCodes."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tests.fakes.base import FakeServer, Step


def _error(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"ErrorCode": code, "Message": message}, status_code=status, headers=headers)


class FakePostmark(FakeServer):
    """``inactive`` addresses answer 422 ErrorCode 406 (hard bounce / spam complaint)."""

    name = "postmark"

    def __init__(self, token: str = "pm-server-token") -> None:
        super().__init__()
        self.token = token
        self.inactive: set[str] = set()

    def routes_for(self) -> list[tuple[str, Iterable[str]]]:
        return [("/email", ["POST"])]

    async def parse(self, request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    def check(self, request: Request, payload: dict[str, Any]) -> Response | None:
        if request.headers.get("x-postmark-server-token") != self.token:
            return _error(401, 10, "Request does not contain a valid Server token.")
        if "application/json" not in request.headers.get("accept", ""):
            return _error(415, 409, "JSON data required")
        if not payload:
            return _error(422, 402, "Received invalid JSON input.")
        if not payload.get("From"):
            return _error(422, 300, "Invalid 'From' address: ''.")
        if "@" not in str(payload.get("To", "")):
            return _error(422, 300, "Error parsing 'To': Illegal email address.")
        if not (payload.get("TextBody") or payload.get("HtmlBody")):
            return _error(422, 300, "Provide either email TextBody or HtmlBody or both.")
        headers = payload.get("Headers", [])
        if not isinstance(headers, list) or not all(set(h) == {"Name", "Value"} for h in headers):
            return _error(422, 300, "Headers must be a list of {Name, Value}.")
        metadata = payload.get("Metadata", {})
        if not isinstance(metadata, dict) or any(len(str(v)) > 80 for v in metadata.values()):
            return _error(422, 300, "Metadata values must be 80 characters or less.")
        return None

    def key(self, request: Request, payload: dict[str, Any]) -> str:
        return str(payload["To"])

    def refuse_recipient(self, request: Request, payload: dict[str, Any]) -> Response | None:
        if payload["To"] in self.inactive:
            return _error(
                422,
                406,
                "You tried to send to recipient(s) that have been marked as inactive. Found inactive "
                f"addresses: {payload['To']}. Inactive recipients are ones that have generated a hard "
                "bounce, a spam complaint, or a manual suppression.",
            )
        return None

    def success(self, request: Request, payload: dict[str, Any]) -> Response:
        return JSONResponse(
            {
                "To": payload["To"],
                "SubmittedAt": datetime.now(UTC).isoformat(),
                "MessageID": str(uuid.uuid4()),
                "ErrorCode": 0,
                "Message": "OK",
            }
        )

    def error(self, step: Step, request: Request, payload: dict[str, Any]) -> Response:
        headers = {"Retry-After": step.retry_after} if step.retry_after is not None else None
        if step.status == 422:
            return _error(422, 300, "Invalid email request", headers)
        if step.status == 429:
            return _error(429, 429, "Rate limit exceeded", headers)
        return _error(step.status, 0, "Internal server error", headers)
