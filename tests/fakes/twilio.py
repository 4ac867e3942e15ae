"""A fake Twilio Messages API: POST /2010-04-01/Accounts/{sid}/Messages.json, form-encoded, basic auth."""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tests.fakes.base import FakeServer, Step

E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def _error(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status_code=status,
        headers=headers,
    )


class FakeTwilio(FakeServer):
    """``stopped`` numbers replied STOP: Twilio answers 400 with error 21610 for them."""

    name = "twilio"

    def __init__(self, account_sid: str = "AC" + "0" * 32, auth_token: str = "twilio-token") -> None:
        super().__init__()
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.stopped: set[str] = set()

    def routes_for(self) -> list[tuple[str, Iterable[str]]]:
        return [("/2010-04-01/Accounts/{sid}/Messages.json", ["POST"])]

    async def parse(self, request: Request) -> dict[str, Any]:
        return await self.form(request)

    def check(self, request: Request, payload: dict[str, Any]) -> Response | None:
        expected = "Basic " + base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if request.headers.get("authorization") != expected or request.path_params["sid"] != self.account_sid:
            return _error(401, 20003, "Authenticate")
        if "__content_type_error__" in payload:
            return _error(400, 20001, "Unsupported content type")
        if not E164.match(str(payload.get("To", ""))):
            return _error(400, 21211, f"Invalid 'To' Phone Number: {payload.get('To', '')}")
        if not (payload.get("From") or payload.get("MessagingServiceSid")):
            return _error(400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required")
        if not payload.get("Body"):
            return _error(400, 21602, "Message body is required.")
        if len(payload["Body"]) > 1600:
            return _error(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
        return None

    def key(self, request: Request, payload: dict[str, Any]) -> str:
        return str(payload["To"])

    def refuse_recipient(self, request: Request, payload: dict[str, Any]) -> Response | None:
        if payload["To"] in self.stopped:
            return _error(400, 21610, "Attempt to send to unsubscribed recipient")
        return None

    def success(self, request: Request, payload: dict[str, Any]) -> Response:
        now = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
        sid = "SM" + uuid.uuid4().hex
        return JSONResponse(
            {
                "sid": sid,
                "account_sid": self.account_sid,
                "to": payload["To"],
                "from": payload.get("From"),
                "messaging_service_sid": payload.get("MessagingServiceSid"),
                "body": payload["Body"],
                "status": "queued",
                "num_segments": "1",
                "direction": "outbound-api",
                "api_version": "2010-04-01",
                "date_created": now,
                "date_updated": now,
                "date_sent": None,
                "error_code": None,
                "error_message": None,
                "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
            },
            status_code=201,
        )

    def error(self, step: Step, request: Request, payload: dict[str, Any]) -> Response:
        headers = {"Retry-After": step.retry_after} if step.retry_after is not None else None
        if step.status == 400:
            return _error(400, 21211, "Invalid 'To' Phone Number", headers)
        if step.status == 429:
            return _error(429, 20429, "Too Many Requests", headers)
        return _error(step.status, 20500, "Internal Server Error", headers)
