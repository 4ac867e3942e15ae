"""NUL characters, unpaired surrogates, invalid UTF-8 and control characters in a path, a query string or
a JSON body answer 422 naming the field, before any route runs; clean requests pass untouched."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from shared.http import install_common
from shared.textguard import JsonTextGuard


def app() -> FastAPI:
    api = FastAPI()
    install_common(api, service="t", checks={})
    api.add_middleware(JsonTextGuard, max_bytes=4096)

    @api.get("/v1/things/{thing_id}")
    async def get_thing(thing_id: str, owner: str | None = None) -> dict[str, Any]:
        return {"thing_id": thing_id, "owner": owner}

    @api.post("/v1/things")
    async def post_thing(request: Request) -> dict[str, Any]:
        return {"got": (await request.body()).decode("utf-8", "replace")}

    return api


async def call(method: str, url: str, **kw: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.request(method, url, **kw)


def refused(answer: httpx.Response, field: str, words: str) -> None:
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body = answer.json()
    assert body["field"] == field and body["errors"][0]["field"] == field, body
    assert words in body["detail"], body


@pytest.mark.parametrize(
    ("query", "field", "words"),
    [
        ("owner=ana%00%40example.com", "owner", "owner must not contain a NUL character (U+0000)"),
        ("owner=%ED%A0%80", "owner", "owner must not contain an unpaired surrogate"),  # U+D800 as bytes
        ("owner=%FF", "owner", "unpaired surrogate"),  # not UTF-8 at all
        ("owner=a%1Bb", "owner", "control character U+001B"),
        ("own%00er=x", "query", "a query parameter's name"),
    ],
)
async def test_query_parameters_that_cannot_be_stored_are_refused_by_name(
    query: str, field: str, words: str
) -> None:
    refused(await call("GET", f"/v1/things/t1?{query}"), field, words)


async def test_a_nul_in_the_path_is_refused_and_clean_requests_pass() -> None:
    refused(await call("GET", "/v1/things/t%001"), "path", "NUL character")
    ok = await call("GET", "/v1/things/t-1?owner=Zo%C3%AB%20%F0%9F%98%80%09tab")  # é, emoji, a tab
    assert ok.status_code == 200 and ok.json() == {"thing_id": "t-1", "owner": "Zoë 😀\ttab"}


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ('{"attributes": {"plan": "pro\\u0000"}}', "attributes.plan", "NUL character"),
        ('{"attributes": {"plan": "\\ud800x"}}', "attributes.plan", "unpaired surrogate (U+D800)"),
        ('{"items": ["ok", "\\udc00"]}', "items[1]", "unpaired surrogate (U+DC00)"),
        ('{"attributes": {"a\\u0000b": 1}}', "attributes", "a key of attributes"),
        ('"\\u0000"', "value", "NUL"),
    ],
)
async def test_json_bodies_are_refused_at_the_first_bad_string_by_its_path(
    body: str, field: str, words: str
) -> None:
    answer = await call("POST", "/v1/things", content=body, headers={"content-type": "application/json"})
    refused(answer, field, words)


async def test_bodies_that_are_fine_not_json_or_too_long_to_inspect_reach_the_route() -> None:
    headers = {"content-type": "application/json"}
    emoji = '{"comment": "tr\\u00e8s bien \\ud83d\\ude00"}'  # a surrogate *pair* is one character
    assert (await call("POST", "/v1/things", content=emoji, headers=headers)).status_code == 200
    assert (await call("POST", "/v1/things", content="not json \\u0000", headers=headers)).status_code == 200
    assert (
        await call("POST", "/v1/things", content='"\\u0000"', headers={"content-type": "text/plain"})
    ).status_code == 200
    long = '{"x": "' + "a" * 5000 + '\\u0000"}'  # beyond max_bytes: left to the size limit and the route
    assert (await call("POST", "/v1/things", content=long, headers=headers)).status_code == 200
