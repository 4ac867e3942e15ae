"""A fake receiver of the notifier's generic webhook that behaves as the contract asks receivers to.

It verifies ``X-CSAT-Signature`` (recomputed here with ``hmac`` rather than the notifier's helper),
refuses stale timestamps, and applies each ``X-CSAT-Id`` once: ``effects`` is what a real receiver
would have done, ``accepted`` every delivery it acknowledged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from tests.fakes.base import FakeServer, Step


class FakeWebhookReceiver(FakeServer):
    name = "webhook"

    def __init__(self, secret: str = "whsec-test") -> None:
        super().__init__()
        self.secret = secret
        self.effects: dict[str, dict[str, Any]] = {}

    def routes_for(self) -> list[tuple[str, Iterable[str]]]:
        return [("/hooks/{name}", ["POST"])]

    def hook(self, name: str) -> str:
        return f"{self.url}/hooks/{name}"

    async def parse(self, request: Request) -> dict[str, Any]:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            body = {}
        return {"raw": raw, "json": body if isinstance(body, dict) else {}}

    def check(self, request: Request, payload: dict[str, Any]) -> Response | None:
        header = request.headers.get("x-csat-signature", "")
        parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
        try:
            timestamp = int(parts["t"])
        except (KeyError, ValueError):
            return PlainTextResponse("missing signature", status_code=401)
        if abs(time.time() - timestamp) > 300:
            return PlainTextResponse("stale signature", status_code=401)
        expected = hmac.new(
            self.secret.encode(), str(timestamp).encode() + b"." + payload["raw"], hashlib.sha256
        ).hexdigest()
        if not hmac.compare_digest(expected, parts.get("v1", "")):
            return PlainTextResponse("bad signature", status_code=401)
        event = payload["json"]
        if event.get("id") != request.headers.get("x-csat-id") or not event.get("data"):
            return PlainTextResponse("malformed event", status_code=400)
        return None

    def key(self, request: Request, payload: dict[str, Any]) -> str:
        return str(request.path_params["name"])

    def success(self, request: Request, payload: dict[str, Any]) -> Response:
        event_id = request.headers["x-csat-id"]
        duplicate = event_id in self.effects
        self.effects.setdefault(event_id, payload["json"])
        return JSONResponse({"received": True, "duplicate": duplicate})

    def error(self, step: Step, request: Request, payload: dict[str, Any]) -> Response:
        if step.accept:
            self.effects.setdefault(request.headers["x-csat-id"], payload["json"])
        headers = {"Retry-After": step.retry_after} if step.retry_after is not None else None
        return PlainTextResponse(f"scripted {step.status}", status_code=step.status, headers=headers)
