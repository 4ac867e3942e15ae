"""The bench's lean load generator against the real collector (uvicorn, broker, PostgreSQL): its
requests are answered and published exactly like httpx's, the generator the benchmarks used before."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from bench import loadgen
from services.collector.bootstrap import create_app
from services.collector.settings import CollectorSettings
from shared.events import RatingSubmitted
from shared.topics import Topics
from tests.helpers import make_settings, read_events, serving
from tests.infra import Infra

pytestmark = pytest.mark.integration


def _app(infra: Infra, topics: Topics, database_url: str) -> Any:
    settings = make_settings(
        CollectorSettings,
        kafka_bootstrap=infra.bootstrap,
        topic_prefix=topics.prefix,
        database_url=database_url,
        environment="dev",  # as the bench stack runs it
    )
    return create_app(settings)


async def _raw_post(url: str, payload: bytes) -> tuple[loadgen.Head, bytes]:
    """One pre-encoded request on its own connection, read with the lean client's parser."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(payload)
        buf = bytearray()
        head, end = None, None
        while end is None:
            chunk = await asyncio.wait_for(reader.read(65536), 10)
            assert chunk, f"connection closed after {bytes(buf)!r}"
            buf += chunk
            head = head or loadgen.parse_head(buf)
            end = loadgen.message_end(buf, head) if head else None
        assert head is not None and end == len(buf)
        return head, bytes(buf[head.end : end])
    finally:
        writer.close()


async def test_a_pre_encoded_post_gets_the_answer_httpx_gets(
    infra: Infra, topics: Topics, database_url: str
) -> None:
    async with serving(_app(infra, topics, database_url)) as url:
        rid, body = loadgen.rating("same", 0)
        payload = loadgen.encode_post(url.removeprefix("http://"), loadgen.PATH, loadgen.json_bytes(body))
        head, answer = await _raw_post(url, payload)
        async with httpx.AsyncClient(base_url=url) as client:
            ref = await client.post(loadgen.PATH, json=loadgen.rating("same", 1)[1])
            again = await client.post(loadgen.PATH, json=body)  # the lean one's rating, retried
    assert head.status == ref.status_code == 202
    assert json.loads(answer).keys() == ref.json().keys()
    assert json.loads(answer)["rating_id"] == rid
    assert again.status_code == 202 and again.json() == json.loads(answer)  # the same rating to the collector


async def test_the_lean_and_httpx_loads_are_accepted_and_published_alike(
    infra: Infra, topics: Topics, database_url: str
) -> None:
    async with serving(_app(infra, topics, database_url)) as url:
        lean = await loadgen.load(url, run="lean", rate=50, seconds=0.4, which="lean")
        ref = await loadgen.load(url, run="ref", rate=50, seconds=0.4, which="httpx")
    assert lean.statuses == ref.statuses == {"202": 20}
    assert sorted(lean.sent) == sorted(f"lean-{i}" for i in range(20))
    assert lean.connections >= 1 and len(lean.answers) == 20
    events = await read_events(infra.bootstrap, topics.ratings, count=40)
    published: dict[str, dict[str, Any]] = {}
    for e in events:
        assert isinstance(e.data, RatingSubmitted)
        data = e.data.model_dump(mode="json", exclude={"rating_id", "customer", "occurred_at", "received_at"})
        published[e.id] = data
    assert sorted(published) == sorted([*lean.sent, *ref.sent])
    for i in range(20):
        assert published[f"lean-{i}"] == published[f"ref-{i}"]
