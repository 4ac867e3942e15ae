"""The Verbatims view's stack for tests: the scorer served by uvicorn on PostgreSQL and the broker, fed
known commented ratings, and the console in front of it.

The console signs people's access tokens with ``tests.credentials.SIGNING_KEY`` and the scorer trusts
its public half (``JWKS``), as ``make run`` wires them: ``GET /v1/verbatims`` gets the person's own
token and applies their scope and segment grants itself. ``RecordingTransport`` only records the
console's calls (and checks a person's token went out); it changes nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx

from services.console.bootstrap import create_app as console_app
from services.console.settings import ConsoleSettings
from services.scorer.bootstrap import create_app as scorer_app
from shared.envelope import OutgoingRecord
from shared.topics import Topics
from tests.credentials import ADMIN, JWKS, SIGNING_KEY
from tests.helpers import make_settings, produce, serving, wait_for
from tests.infra import Infra
from tests.integration.console_stack import CHEAP, people
from tests.integration.test_scorer_queries import rating, scorer_settings, stored

#: (id, score, days ago, store, comment): French and English, themes the default taxonomy finds.
COMMENTS: list[tuple[str, int, int, str, str]] = [
    ("v-p1", 1, 1, "paris-1", "Livraison en retard de trois jours et colis abîmé, très déçu"),
    ("v-p2", 2, 2, "paris-1", "Le vendeur était désagréable et personne ne répond au téléphone"),
    ("v-p3", 5, 3, "paris-1", "Super accueil, vendeuse très aimable, merci !"),
    ("v-p4", 2, 4, "paris-1", "The delivery was late and the parcel was damaged"),
    ("v-p5", 4, 5, "paris-1", "Good price, but the website checkout kept crashing"),
    ("v-p6", 1, 9, "paris-1", '=HYPERLINK("http://x") colis jamais livré'),
    ("v-p7", 3, 40, "paris-1", "Livraison lente, colis en retard"),  # the period before (30d window)
    ("v-l1", 1, 2, "lyon-2", "Lyon: delivery never arrived, terrible"),
    ("v-l2", 4, 6, "lyon-2", "Lyon: staff were friendly"),
]


def records(topic: str) -> list[OutgoingRecord]:
    out = [
        rating(rid, score, topic=topic, ago=timedelta(days=days, hours=2), comment=text, store=store)
        for rid, score, days, store, text in COMMENTS
    ]
    # ratings without a comment never appear
    out += [rating(f"v-quiet-{i}", 5, topic=topic, ago=timedelta(days=1), store="paris-1") for i in range(5)]
    return out


class RecordingTransport(httpx.AsyncBaseTransport):
    """The console's calls to the scorer, recorded; the person's access token goes through unchanged."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"].startswith("Bearer eyJ")  # the person's access token
        self.calls.append((request.url.path, dict(request.url.params.multi_items())))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class VerbatimsStack:
    console: str
    scorer: str
    transport: RecordingTransport

    async def api(self, **params: Any) -> Any:
        """The scorer's own answer (admin key): what the console's figures must equal."""
        async with httpx.AsyncClient(base_url=self.scorer, timeout=30) as client:
            answer = await client.get("/v1/verbatims", params=params, headers=ADMIN)
        assert answer.status_code == 200, answer.text
        return answer.json()


@asynccontextmanager
async def verbatims_stack(
    infra: Infra, database_url: str, topics: Topics, **console: Any
) -> AsyncIterator[VerbatimsStack]:
    await people(database_url)
    feed = records(topics.ratings)
    await produce(infra.bootstrap, feed)
    scorer_cfg = scorer_settings(infra, database_url, topics, environment="test", identity_public_keys=JWKS)
    async with serving(scorer_app(scorer_cfg)) as scorer_url:
        await wait_for(lambda: stored(database_url), until=lambda n: n == len(feed), timeout_s=90)
        transport = RecordingTransport()
        cfg = make_settings(
            ConsoleSettings,
            environment="test",
            database_url=database_url,
            cookie_secure=False,  # plain http on loopback
            scorer_url=scorer_url,
            live_enabled=False,
            identity_signing_key=SIGNING_KEY.private_jwk(),
            **console,
        )
        http = httpx.AsyncClient(transport=transport, timeout=30)
        app = console_app(cfg, passwords=CHEAP, http=http)
        port = console.get("port")
        async with serving(app, **({"port": port} if port else {})) as console_url:
            yield VerbatimsStack(console=console_url, scorer=scorer_url, transport=transport)
