"""Calls to the other services on a signed-in person's behalf, with their short-lived access token.

A view does ``api = deps.api.on_behalf_of(person)`` then ``await api.get_json("scorer", "/v1/scores",
params={...})``. The token (``services.console.tokens``) carries the person's role, scopes, segment
grants and accounts, so the called service applies the same rules as the console: the console's own
checks are a courtesy and a first line, never the only one. Ids in paths go through ``{placeholders}``
(percent-encoded whole); errors come back as ``ApiError`` with the service's RFC 9457 problem.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol

import httpx

from services.console.settings import ServiceUrls
from services.console.tokens import AccessTokens
from shared.identity.principal import Principal
from shared.security.urls import fill_url_template

Service = Literal["collector", "scorer", "actions", "notifier"]
Params = Mapping[str, str | int | float | bool | Sequence[str]]


class Caller(Protocol):
    """What a call needs of the signed-in person (``web.SignedIn`` is one)."""

    @property
    def session_key(self) -> bytes: ...
    @property
    def principal(self) -> Principal: ...


class ApiError(Exception):
    """The service answered an error (``status``, its problem document) or could not be reached (503)."""

    def __init__(self, *, service: Service, status: int, problem: Mapping[str, Any] | None = None) -> None:
        detail = (problem or {}).get("detail") or (problem or {}).get("title") or "error"
        super().__init__(f"{service} answered {status}: {detail}")
        self.service = service
        self.status = status
        self.problem = dict(problem or {})


class ApiClient:
    """One connection pool for every service the console reads; built once by ``bootstrap``."""

    def __init__(self, *, http: httpx.AsyncClient, urls: ServiceUrls, tokens: AccessTokens) -> None:
        self.http = http
        self.urls = urls
        self.tokens = tokens

    def base(self, service: Service) -> str:
        return str(getattr(self.urls, service))

    def on_behalf_of(self, caller: Caller) -> PersonApi:
        return PersonApi(client=self, caller=caller)


class PersonApi:
    """The calls of one request: each gets a token valid at least a minute longer."""

    def __init__(self, *, client: ApiClient, caller: Caller) -> None:
        self._client = client
        self._caller = caller

    def _headers(self) -> dict[str, str]:
        token = self._client.tokens.current(self._caller.session_key, self._caller.principal)
        return {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    async def request(
        self,
        method: str,
        service: Service,
        path: str,
        *,
        path_params: Mapping[str, str] | None = None,
        params: Params | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """The raw answer, whatever its status; unreachable or timed out -> ``ApiError`` 503.
        ``headers`` adds request headers (``If-Match``); the credential is always the person's."""
        url = self._client.base(service) + fill_url_template(path, path_params or {})
        try:
            return await self._client.http.request(
                method, url, params=params, json=json, headers={**(headers or {}), **self._headers()}
            )
        except httpx.HTTPError:
            raise ApiError(service=service, status=503) from None

    async def get_json(
        self,
        service: Service,
        path: str,
        *,
        path_params: Mapping[str, str] | None = None,
        params: Params | None = None,
    ) -> Any:
        answer = await self.request("GET", service, path, path_params=path_params, params=params)
        return _json_or_raise(service, answer)

    async def send_json(
        self,
        method: Literal["POST", "PUT", "PATCH", "DELETE"],
        service: Service,
        path: str,
        *,
        path_params: Mapping[str, str] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        answer = await self.request(
            method, service, path, path_params=path_params, json=json, headers=headers
        )
        return _json_or_raise(service, answer)


def _json_or_raise(service: Service, answer: httpx.Response) -> Any:
    if answer.status_code >= 400:
        try:
            problem = answer.json()
        except ValueError:
            problem = None
        raise ApiError(
            service=service,
            status=answer.status_code,
            problem=problem if isinstance(problem, dict) else None,
        )
    if answer.status_code == 204 or not answer.content:
        return None
    return answer.json()
