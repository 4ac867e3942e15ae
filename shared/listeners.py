"""The internal listener: with ``CSAT_INTERNAL_PORT`` set, health, readiness, metrics and the API
documents are served on that port only (probes and Prometheus reach it; no Service or ingress does), and
every other route on the public port only. Without it (``make run``, tests) one port serves both.

In prod the OpenAPI documents (``/openapi.json``, ``/docs``, ``/redoc``) are internal too (and, without
an internal port, not served at all); in dev and test they stay on the public port as well, for people
trying the API.
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

#: Served on the internal port when there is one, never on the public one.
OPERATIONS_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
DOCUMENT_PATHS = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})


def _not_here() -> JSONResponse:
    body = {"type": "about:blank", "title": "Not Found", "status": 404}
    return JSONResponse(body, status_code=404, media_type="application/problem+json")


class ListenerSplit:
    def __init__(self, app: ASGIApp, *, internal_port: int | None, documents_public: bool) -> None:
        self.app = app
        self.internal_port = internal_port
        self.documents_public = documents_public

    def allowed(self, path: str, port: int | None) -> bool:
        """Whether ``path`` is served on the listener of ``port``."""
        operations = path in OPERATIONS_PATHS
        document = path in DOCUMENT_PATHS
        if self.internal_port is None:  # one listener: everything but documents kept private
            return not document or self.documents_public
        if port == self.internal_port:
            return operations or document
        return not operations and (not document or self.documents_public)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            server = scope.get("server")
            port = server[1] if server else None
            if not self.allowed(scope["path"], port):
                if scope["type"] == "http":
                    await _not_here()(scope, receive, send)
                return
        await self.app(scope, receive, send)
