"""A fake SendGrid v3 Mail Send endpoint on a real loopback port, checking the request as SendGrid would."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tests.fakes.base import FakeServer, Step


class FakeSendGrid(FakeServer):
    """202 with ``X-Message-Id``; errors ``{"errors": [{"message", "field"}]}``; 429 with Retry-After."""

    name = "sendgrid"

    def __init__(self, api_key: str = "SG.test-key") -> None:
        super().__init__()
        self.api_key = api_key

    def routes_for(self) -> list[tuple[str, Iterable[str]]]:
        return [("/v3/mail/send", ["POST"])]

    def _step_for_status(self, status: int) -> Step:
        return Step() if status == 202 else Step(status=status, retry_after="0" if status == 429 else None)

    async def parse(self, request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    def check(self, request: Request, payload: dict[str, Any]) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return JSONResponse(
                {"errors": [{"message": "The provided authorization grant is invalid, expired, or revoked"}]},
                status_code=401,
            )
        errors = _validate(payload)
        if errors:
            return JSONResponse({"errors": [{"message": e, "field": None} for e in errors]}, status_code=400)
        return None

    def key(self, request: Request, payload: dict[str, Any]) -> str:
        return str(payload["personalizations"][0]["to"][0]["email"])

    def success(self, request: Request, payload: dict[str, Any]) -> Response:
        return Response(status_code=202, headers={"X-Message-Id": uuid.uuid4().hex[:22]})

    def error(self, step: Step, request: Request, payload: dict[str, Any]) -> Response:
        headers = {"Retry-After": step.retry_after} if step.retry_after is not None else None
        message = "too many requests" if step.status == 429 else f"scripted {step.status}"
        if step.status == 400:
            message = "Does not contain a valid address."
        return JSONResponse({"errors": [{"message": message}]}, status_code=step.status, headers=headers)


def _validate(body: dict[str, Any]) -> list[str]:
    """The checks SendGrid's API applies to the fields we use."""
    errors = []
    personalizations = body.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        errors.append("The personalizations field is required and must have at least one personalization.")
    else:
        for p in personalizations:
            to = p.get("to")
            if not isinstance(to, list) or not to or not all("@" in str(t.get("email", "")) for t in to):
                errors.append("Each personalization must have a valid to email.")
    if "@" not in str((body.get("from") or {}).get("email", "")):
        errors.append("The from object must be provided for every email send.")
    if not body.get("subject"):
        errors.append("The subject is required.")
    content = body.get("content")
    if (
        not isinstance(content, list)
        or not content
        or not all(c.get("type") and c.get("value") for c in content)
    ):
        errors.append("Unless a valid template_id is provided, the content parameter is required.")
    headers = body.get("headers")
    if headers is not None and (
        not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values())
    ):
        errors.append("The headers parameter must be an object of string values.")
    return errors
