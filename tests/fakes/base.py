"""What every fake provider server shares: a real loopback HTTP server with scripted behaviour.

A fake checks each request as the real provider would (auth, content type, required fields) and
answers in the provider's own format. Behaviour is scripted per recipient (an address, a phone
number or a webhook path) so one notifier run can exercise success, 500, 429 and a timeout after
acceptance side by side. ``accepted`` holds every message the provider would have delivered.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from devstack.ports import free_port


@dataclass(frozen=True)
class Step:
    """One scripted answer. ``status`` 0 is the provider's success answer.

    ``accept`` records the message as delivered even though the answer is an error or never comes in
    time (``delay_s``): the "timeout after accept" case. ``hold`` keeps the answer until released.
    """

    status: int = 0
    delay_s: float = 0.0
    accept: bool = False
    retry_after: str | None = None
    hold: bool = False


OK = Step()


def steps(*items: Step | int) -> list[Step]:
    return [i if isinstance(i, Step) else Step(status=i) for i in items]


@dataclass
class Call:
    at: float
    key: str
    status: int
    headers: dict[str, str]


@dataclass
class Accepted:
    at: float
    key: str
    payload: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class FakeServer:
    """Subclasses implement ``routes_for``, ``check``, ``key``, ``success`` and ``error``."""

    name = "fake"

    def __init__(self) -> None:
        self.port = free_port()
        self.behaviour: dict[str, deque[Step]] = {}
        #: Answers for recipients without their own behaviour (then success).
        self.script: deque[Step | int] = deque()
        self.requests: list[Call] = []
        self.accepted: list[Accepted] = []
        self.accepted_signal = threading.Event()
        self.release = threading.Event()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # ---- scripting -------------------------------------------------------------------------------
    def on(self, key: str, *answers: Step | int) -> None:
        self.behaviour[key] = deque(steps(*answers))

    def _next(self, key: str) -> Step:
        queue = self.behaviour.get(key)
        if queue:
            return queue.popleft()
        if self.script:
            item = self.script.popleft()
            return item if isinstance(item, Step) else self._step_for_status(item)
        return OK

    def _step_for_status(self, status: int) -> Step:
        return Step(status=status)

    # ---- what subclasses provide -----------------------------------------------------------------
    def routes_for(self) -> list[tuple[str, Iterable[str]]]:
        raise NotImplementedError

    async def parse(self, request: Request) -> dict[str, Any]:
        raise NotImplementedError

    def check(self, request: Request, payload: dict[str, Any]) -> Response | None:
        """Authentication and validation as the real provider does them; a Response refuses."""
        raise NotImplementedError

    def key(self, request: Request, payload: dict[str, Any]) -> str:
        raise NotImplementedError

    def success(self, request: Request, payload: dict[str, Any]) -> Response:
        raise NotImplementedError

    def error(self, step: Step, request: Request, payload: dict[str, Any]) -> Response:
        raise NotImplementedError

    def extra_routes(self) -> list[Route]:
        """Endpoints besides the sending one (e.g. SendGrid's Email Activity API); not counted as sends."""
        return []

    def refuse_recipient(self, request: Request, payload: dict[str, Any]) -> Response | None:
        """A provider-side opt-out (Twilio STOP, Postmark inactive); None to deliver."""
        return None

    # ---- helpers ---------------------------------------------------------------------------------
    @staticmethod
    async def form(request: Request) -> dict[str, Any]:
        """``application/x-www-form-urlencoded`` as the Mailgun and Twilio APIs take it."""
        if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return {"__content_type_error__": request.headers.get("content-type", "")}
        raw = (await request.body()).decode()
        return dict(parse_qsl(raw, keep_blank_values=True))

    def accepted_for(self, key: str) -> list[Accepted]:
        return [a for a in self.accepted if a.key == key]

    def requests_for(self, key: str) -> list[Call]:
        return [c for c in self.requests if c.key == key]

    # ---- the server --------------------------------------------------------------------------------
    async def _handle(self, request: Request) -> Response:
        payload = await self.parse(request)
        headers = {k.lower(): v for k, v in request.headers.items()}
        refusal = self.check(request, payload)
        key = self.key(request, payload) if refusal is None else "?"
        if refusal is not None:
            self.requests.append(Call(time.monotonic(), key, refusal.status_code, headers))
            return refusal
        refused = self.refuse_recipient(request, payload)
        if refused is not None:
            self.requests.append(Call(time.monotonic(), key, refused.status_code, headers))
            return refused
        step = self._next(key)
        delivered = step.status == 0 or step.accept
        if delivered:
            self.accepted.append(Accepted(time.monotonic(), key, payload, headers))
            self.accepted_signal.set()
        answer = self.success(request, payload) if step.status == 0 else self.error(step, request, payload)
        self.requests.append(Call(time.monotonic(), key, answer.status_code, headers))
        if step.hold:
            # A threading.Event: the test thread releases it (or the server's exit does).
            await asyncio.to_thread(self.release.wait, 120)
        if step.delay_s:
            await asyncio.sleep(step.delay_s)
        return answer

    def __enter__(self) -> Self:
        routes = [Route(path, self._handle, methods=list(methods)) for path, methods in self.routes_for()]
        routes += self.extra_routes()
        app = Starlette(routes=routes)
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True, name=f"fake-{self.name}")
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise TimeoutError(f"fake {self.name} did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self.release.set()
        self._server.should_exit = True
        self._thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def calls(self) -> int:
        return len(self.requests)

    @property
    def received(self) -> list[dict[str, Any]]:
        return [a.payload for a in self.accepted]


def lower_keys(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}
