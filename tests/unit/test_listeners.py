"""Health, readiness, metrics and the API documents on the internal port only; the API on the public
port only; documents public in dev and test, never in prod."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from shared.http import install_common

PUBLIC, INTERNAL = 8001, 9000


def app(*, internal_port: int | None, documents_public: bool) -> FastAPI:
    api = FastAPI()
    install_common(
        api, service="t", checks={}, internal_port=internal_port, documents_public=documents_public
    )

    @api.get("/v1/scores")
    async def scores() -> dict[str, str]:
        return {"ok": "yes"}

    return api


async def status(api: FastAPI, port: int, path: str) -> int:
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url=f"http://svc:{port}") as client:
        return (await client.get(path)).status_code


@pytest.mark.parametrize(
    ("path", "public", "internal"),
    [
        ("/healthz", 404, 200),
        ("/readyz", 404, 200),
        ("/metrics", 404, 200),
        ("/openapi.json", 404, 200),
        ("/docs", 404, 200),
        ("/v1/scores", 200, 404),
        ("/nothing", 404, 404),
    ],
)
async def test_prod_split_serves_operations_internally_and_the_api_publicly(
    path: str, public: int, internal: int
) -> None:
    api = app(internal_port=INTERNAL, documents_public=False)
    assert (await status(api, PUBLIC, path), await status(api, INTERNAL, path)) == (public, internal)


async def test_dev_keeps_the_documents_public_and_one_port_serves_everything_but_prod_documents() -> None:
    dev = app(internal_port=INTERNAL, documents_public=True)
    assert await status(dev, PUBLIC, "/openapi.json") == 200 and await status(dev, PUBLIC, "/healthz") == 404
    single_prod = app(internal_port=None, documents_public=False)
    assert await status(single_prod, PUBLIC, "/healthz") == 200
    assert (
        await status(single_prod, PUBLIC, "/docs") == 404
        and await status(single_prod, PUBLIC, "/v1/scores") == 200
    )
    single_dev = app(internal_port=None, documents_public=True)
    assert await status(single_dev, PUBLIC, "/openapi.json") == 200
