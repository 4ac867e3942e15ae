"""A fake SendGrid v3 Mail Send endpoint on a real loopback port, checking the request as SendGrid would."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import deque
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from devstack.ports import free_port


class FakeSendGrid:
    """``script`` holds the status codes to answer next (then 202); ``received`` the accepted payloads."""

    def __init__(self, api_key: str = "SG.test-key") -> None:
        self.api_key = api_key
        self.port = free_port()
        self.script: deque[int | tuple[int, float]] = deque()
        self.received: list[dict[str, Any]] = []
        self.calls = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _send(self, request: Request) -> Response:
        self.calls += 1
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return JSONResponse({"errors": [{"message": "authorization required"}]}, status_code=401)
        body = await request.json()
        errors = _validate(body)
        if errors:
            return JSONResponse({"errors": [{"message": e} for e in errors]}, status_code=400)
        if self.script:
            step = self.script.popleft()
            status, delay = (step, 0.0) if isinstance(step, int) else step
            if delay:
                await asyncio.sleep(delay)
            if status == 429:
                return JSONResponse(
                    {"errors": [{"message": "too many requests"}]},
                    status_code=429,
                    headers={"Retry-After": "0"},
                )
            if status != 202:
                return JSONResponse({"errors": [{"message": f"scripted {status}"}]}, status_code=status)
        self.received.append(body)
        return Response(status_code=202, headers={"X-Message-Id": uuid.uuid4().hex})

    def __enter__(self) -> FakeSendGrid:
        app = Starlette(routes=[Route("/v3/mail/send", self._send, methods=["POST"])])
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise TimeoutError("fake SendGrid did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.should_exit = True
        self._thread.join(10)


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
    return errors
