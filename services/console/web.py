"""The console's HTTP plumbing: pages rendered with the person's language, security headers, errors.

- ``SecurityHeaders``: a Content-Security-Policy without inline script or style (``'self'`` only),
  ``frame-ancestors 'none'``, ``nosniff``, a same-origin referrer, ``no-store`` on pages.
- ``LocaleMiddleware``: ``?lang=`` (and sets the ``csat_lang`` cookie), the cookie, ``Accept-Language``.
- ``Pages``: Jinja2 templates with ``t``/``tr`` (texts and Babel formats), the CSRF token, the views the
  person may open, and links to switch language.
- ``PageError`` / ``SignInRequired`` and their handlers; the JSON API keeps RFC 9457 problems.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.console.i18n import Translator, negotiate, supported
from services.console.navigation import views_for
from services.console.sessions import CookieNames
from shared.http import problem
from shared.identity.ports import StoreUnavailable
from shared.identity.principal import Principal
from shared.vocabulary import LOCALES

log = structlog.get_logger(__name__)

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
LANG_COOKIE_DAYS = 365

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


class SecurityHeaders:
    """Headers on every answer; pages are never cached (they show a person's data)."""

    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", CSP)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("Referrer-Policy", "same-origin")
                headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
                headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
                if not static:
                    headers.setdefault("Cache-Control", "no-store")
                if self.hsts:
                    headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
            await send(message)

        await self.app(scope, receive, with_headers)


class LocaleMiddleware:
    """Puts the request's language in ``scope["state"]["locale"]``; ``?lang=`` also sets the cookie."""

    def __init__(self, app: ASGIApp, *, cookies: CookieNames, secure: bool) -> None:
        self.app = app
        self.cookies = cookies
        self.secure = secure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        asked = supported(request.query_params.get("lang"))
        locale = negotiate(
            query=asked,
            cookie=request.cookies.get(self.cookies.lang),
            accept_language=request.headers.get("accept-language"),
        )
        scope.setdefault("state", {})["locale"] = locale

        async def with_language(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Language", locale)
                headers.append("Vary", "Accept-Language, Cookie")
                if asked:
                    secure = "; Secure" if self.secure else ""
                    headers.append(
                        "Set-Cookie",
                        f"{self.cookies.lang}={asked}; Path=/; Max-Age={LANG_COOKIE_DAYS * 86400}; "
                        f"SameSite=Lax; HttpOnly{secure}",
                    )
            await send(message)

        await self.app(scope, receive, with_language)


def route_of(request: Request) -> str:
    """The route's template (``/auth/link/{secret}``), never the path: paths carry secrets and ids."""
    route = request.scope.get("route")
    return str(getattr(route, "path", None) or "unmatched")


def request_locale(request: Request) -> str:
    found = getattr(request.state, "locale", None)
    return found if isinstance(found, str) else LOCALES[0]


def client_ip(request: Request, trusted: list[IPv4Network | IPv6Network]) -> str | None:
    """The peer, or the nearest untrusted hop of X-Forwarded-For when the peer is our own proxy."""
    peer = request.client.host if request.client else None
    if peer is None or not trusted or not _is_trusted(peer, trusted):
        return peer
    hops = [h.strip() for h in ",".join(request.headers.getlist("x-forwarded-for")).split(",") if h.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop
    return peer


def _is_trusted(addr: str, trusted: list[IPv4Network | IPv6Network]) -> bool:
    try:
        ip: IPv4Address | IPv6Address = ip_address(addr)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


# ---- errors ----------------------------------------------------------------------------------------
class PageError(Exception):
    """An HTML error page: ``title`` and ``body`` are text keys, rendered in the person's language."""

    def __init__(self, status: int, title: str, body: str) -> None:
        super().__init__(title)
        self.status = status
        self.title = title
        self.body = body


def forbidden() -> PageError:
    return PageError(403, "error.forbidden_title", "error.forbidden")


def not_found() -> PageError:
    return PageError(404, "error.not_found_title", "error.not_found")


class SignInRequired(Exception):
    """No usable session: browsers go to the sign-in page and come back to ``next_path`` after."""

    def __init__(self, next_path: str, *, notice: str | None = None) -> None:
        super().__init__(next_path)
        self.next_path = next_path
        self.notice = notice


def _wants_json(request: Request) -> bool:
    path = request.url.path
    accept = request.headers.get("accept", "")
    return path.startswith(("/v1/", "/.well-known/")) or ("text/html" not in accept and "*/*" not in accept)


# ---- pages -----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LanguageLink:
    code: str
    href: str
    current: bool


#: Gives the CSRF token of a request (and notes the pre-session cookie to set, if it needs one).
CsrfSource = Callable[[Request], str]
#: Sets any cookie the request's handling decided on (the pre-session cookie) on the response.
CookieFinisher = Callable[[Request, Response], None]


class Pages:
    """Renders the console's templates; every page gets the layout's context from ``context``."""

    def __init__(
        self, *, time_zone: ZoneInfo, csrf: CsrfSource, finish: CookieFinisher, templates: Path | None = None
    ) -> None:
        self.env = Environment(
            loader=FileSystemLoader(templates or HERE / "templates"),
            autoescape=select_autoescape(["html"]),
            auto_reload=False,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.globals["static"] = static_url
        self.time_zone = time_zone
        self._csrf = csrf
        self._finish = finish

    def translator(self, request: Request) -> Translator:
        return Translator(request_locale(request), time_zone=self.time_zone)

    def render(
        self,
        request: Request,
        template: str,
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        **values: Any,
    ) -> HTMLResponse:
        tr = self.translator(request)
        # The session gate leaves the signed-in person on the request (``guard.SessionGate``).
        person = getattr(request.state, "person", None)
        principal = getattr(person, "principal", None)
        context: dict[str, Any] = {
            "person": person,
            "tr": tr,
            "t": tr.t,
            "lang": tr.locale,
            "csrf": self._csrf(request),
            "nav": views_for(principal) if isinstance(principal, Principal) else (),
            "path": request.url.path,
            "languages": language_links(request, tr.locale),
            **values,
        }
        html = self.env.get_template(template).render(context)
        response = HTMLResponse(html, status_code=status, headers=dict(headers or {}))
        self._finish(request, response)
        return response


def language_links(request: Request, current: str) -> list[LanguageLink]:
    """The same page in each language (its query kept, ``lang`` replaced)."""
    out = []
    for code in LOCALES:
        query = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"] + [("lang", code)]
        out.append(
            LanguageLink(code=code, href=f"{request.url.path}?{urlencode(query)}", current=code == current)
        )
    return out


_STATIC_VERSIONS: dict[str, str] = {}


def static_url(name: str) -> str:
    """``/static/<name>?v=<content hash>``: cached for a year, and a new file gets a new URL."""
    version = _STATIC_VERSIONS.get(name)
    if version is None:
        version = hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:12]
        _STATIC_VERSIONS[name] = version
    return f"/static/{name}?v={version}"


def install_page_handlers(app: FastAPI, pages: Pages) -> None:
    """HTML error pages for browsers; RFC 9457 problems for the API and non-HTML clients."""

    async def on_page_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PageError)
        return pages.render(request, "error.html", status=exc.status, title_key=exc.title, body_key=exc.body)

    async def on_sign_in_required(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SignInRequired)
        query = {"next": exc.next_path, **({"notice": exc.notice} if exc.notice else {})}
        target = f"/signin?{urlencode(query)}"
        if request.headers.get("hx-request") == "true":
            return Response(status_code=401, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        headers = dict(exc.headers) if exc.headers else None
        if _wants_json(request):
            detail = exc.detail if isinstance(exc.detail, str) else None
            return problem(exc.status_code, _title(exc.status_code), detail=detail, headers=headers)
        keys = {
            403: ("error.forbidden_title", "error.forbidden"),
            404: ("error.not_found_title", "error.not_found"),
            503: ("error.unavailable_title", "error.unavailable"),
        }
        title, body = keys.get(exc.status_code, ("error.title", "error.unavailable"))
        return pages.render(
            request, "error.html", status=exc.status_code, headers=headers, title_key=title, body_key=body
        )

    async def on_store_unavailable(request: Request, exc: Exception) -> Response:
        log.warning("store_unavailable", error=str(exc), route=route_of(request))
        if _wants_json(request):
            return problem(503, "Service Unavailable", detail="retry shortly", headers={"Retry-After": "5"})
        return pages.render(
            request,
            "error.html",
            status=503,
            headers={"Retry-After": "5"},
            title_key="error.unavailable_title",
            body_key="error.unavailable",
        )

    app.add_exception_handler(PageError, on_page_error)
    app.add_exception_handler(StoreUnavailable, on_store_unavailable)
    app.add_exception_handler(SignInRequired, on_sign_in_required)
    app.add_exception_handler(StarletteHTTPException, on_http_error)


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
