"""A fake SendGrid on a real loopback port: v3 Mail Send, checking the request as SendGrid would, and the
Email Activity API's message filter (``GET /v3/messages``) served from the messages it really accepted."""

from __future__ import annotations

import hashlib
import re
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.base import FakeServer, Step

#: The one filter the notifier uses: a custom (unique) argument equal to a quoted value.
_UNIQUE_ARG = re.compile(r"""^unique_args\['([A-Za-z0-9_]+)'\]\s*=\s*"([^"\\]*)"$""")


@dataclass
class Lookup:
    at: float
    query: str
    status: int
    found: int


class FakeSendGrid(FakeServer):
    """202 with ``X-Message-Id``; errors ``{"errors": [{"message", "field"}]}``; 429 with Retry-After."""

    name = "sendgrid"

    def __init__(
        self, api_key: str = "SG.test-key", *, activity: bool = True, indexing_delay_s: float = 0.0
    ) -> None:
        super().__init__()
        self.api_key = api_key
        #: False: the account has no Email Activity history add-on (the API answers 403).
        self.activity = activity
        #: A message shows in the activity API only this long after it was accepted.
        self.indexing_delay_s = indexing_delay_s
        #: Every activity query answered, in order.
        self.lookups: list[Lookup] = []
        self._lookups_lock = threading.Lock()

    def routes_for(self) -> list[tuple[str, Iterable[str]]]:
        return [("/v3/mail/send", ["POST"])]

    def extra_routes(self) -> list[Route]:
        return [Route("/v3/messages", self._messages, methods=["GET"])]

    @staticmethod
    def msg_id(at: float, payload: dict[str, Any]) -> str:
        """SendGrid's message id of an accepted message: stable, derived from when and what."""
        nid = str(payload.get("custom_args", {}).get("notification_id"))
        return hashlib.sha256(f"{at}:{nid}".encode()).hexdigest()[:22] + ".filterdrecv-1-0"

    async def _messages(self, request: Request) -> Response:
        """``GET /v3/messages?query=...&limit=...`` as SendGrid's Email Activity API answers it."""
        query = request.query_params.get("query", "")

        def answer(status: int, body: dict[str, Any], found: int = 0) -> Response:
            with self._lookups_lock:
                self.lookups.append(Lookup(time.monotonic(), query, status, found))
            return JSONResponse(body, status_code=status)

        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return answer(401, {"errors": [{"field": None, "message": "authorization required"}]})
        if not self.activity:
            return answer(403, {"errors": [{"field": None, "message": "access forbidden"}]})
        try:
            limit = int(request.query_params.get("limit", ""))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 1000:
            return answer(400, {"errors": [{"field": "limit", "message": "limit must be 1 to 1000"}]})
        match = _UNIQUE_ARG.match(query)
        if match is None:
            return answer(400, {"errors": [{"field": "query", "message": "invalid query"}]})
        name, value = match.groups()
        visible_before = time.monotonic() - self.indexing_delay_s
        messages = [
            {
                "from_email": str(a.payload.get("from", {}).get("email", "")),
                "msg_id": self.msg_id(a.at, a.payload),
                "subject": str(a.payload.get("subject", "")),
                "to_email": a.key,
                "status": "delivered",
                "opens_count": 0,
                "clicks_count": 0,
                "last_event_time": "2026-12-05T10:00:00Z",
            }
            for a in list(self.accepted)
            if a.at <= visible_before and str(a.payload.get("custom_args", {}).get(name)) == value
        ][:limit]
        return answer(200, {"messages": messages}, found=len(messages))

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
