"""The Rules view's stack for tests: actions and notifier apps (real PostgreSQL and broker, their lifespans
running) and the console, whose API client reaches the two apps in-process by host name.

The console signs people's access tokens with ``tests.credentials.SIGNING_KEY`` and the actions and
notifier apps trust its public half (``JWKS``), as ``make run`` wires them: every call the console makes
reaches them with the person's own token, and they apply the person's role themselves.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from fastapi import FastAPI
from sqlalchemy import text

from services.actions.bootstrap import create_app as create_actions
from services.actions.settings import ActionsSettings
from services.collector.bootstrap import create_app as create_collector
from services.collector.settings import CollectorSettings
from services.console.bootstrap import create_app as create_console
from services.console.settings import ConsoleSettings
from services.notifier.bootstrap import create_app as create_notifier
from services.notifier.settings import NotifierSettings
from services.scorer.bootstrap import create_app as create_scorer
from shared.db import make_engine
from shared.identity.passwords import Passwords
from shared.identity.ports import NewUser, User
from shared.identity.repository import PgIdentityStore
from shared.identity.scopes import Role
from shared.topics import Topics
from tests.credentials import ADMIN, JWKS, SIGNING_KEY
from tests.helpers import make_settings
from tests.infra import Infra
from tests.integration.test_scorer_queries import scorer_settings

CHEAP = Passwords(time_cost=1, memory_cost=1024, parallelism=1)
PASSWORD = "a long local password"
ADMIN_KEY = ADMIN
ACTIONS_URL = "http://actions.internal"
NOTIFIER_URL = "http://notifier.internal"
SCORER_URL = "http://scorer.internal"
COLLECTOR_URL = "http://collector.internal"


class KeyBridge(httpx.AsyncBaseTransport):
    """Routes the console's calls to the in-process apps by host, recording them; the person's access
    token goes through unchanged."""

    def __init__(self, apps: Mapping[str, FastAPI]) -> None:
        self.routes = {host: httpx.ASGITransport(app=app) for host, app in apps.items()}
        self.calls: list[tuple[str, str, str]] = []  # (method, host, path): what the console asked

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls.append((request.method, request.url.host, request.url.path))
        assert request.headers["authorization"].startswith("Bearer eyJ")  # the person's access token
        return await self.routes[request.url.host].handle_async_request(request)


@dataclass
class RulesStack:
    actions: FastAPI
    notifier: FastAPI
    console: FastAPI
    identity: PgIdentityStore
    database_url: str
    topics: Topics
    bridge: KeyBridge

    def client(self, app: FastAPI, base_url: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)

    async def person(
        self, email: str, role: Role, name: str | None = None, accounts: frozenset[str] = frozenset()
    ) -> User:
        return await self.identity.create_user(
            user=NewUser(
                email=email,
                display_name=name or email.split("@")[0].title(),
                role=role,
                accounts=accounts,
                password_hash=CHEAP.hash(PASSWORD),
            )
        )

    async def counts(self) -> dict[str, int]:
        """Rows of every table of the actions and notifier schemas, and the consumers' stored offsets."""
        engine = make_engine(self.database_url)
        try:
            async with engine.connect() as conn:
                tables = (
                    await conn.execute(
                        text(
                            "SELECT schemaname || '.' || tablename FROM pg_tables "
                            "WHERE schemaname IN ('actions', 'notifier', 'ops') ORDER BY 1"
                        )
                    )
                ).scalars()
                out: dict[str, int] = {}
                for table in list(tables):
                    out[table] = int((await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())  # noqa: S608 - catalog names
                sums = await conn.execute(
                    text("SELECT coalesce(sum(next_offset), 0) FROM ops.consumer_offsets")
                )
                out["ops.consumer_offsets.sum"] = int(sums.scalar_one())
                return out
        finally:
            await engine.dispose()


async def topic_ends(bootstrap: str, topics: Topics) -> dict[str, int]:
    """Every topic's end offset summed over its partitions: a record published anywhere moves one."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        await consumer.topics()  # fetches the cluster's metadata: every topic and its partitions
        ends: dict[str, int] = {}
        for topic in topics.all():
            parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            offsets = await consumer.end_offsets(parts) if parts else {}
            ends[topic] = sum(offsets.values())
        return ends
    finally:
        await consumer.stop()


@asynccontextmanager
async def rules_stack(
    infra: Infra,
    database_url: str,
    topics: Topics,
    *,
    serve_console: bool = False,
    with_scorer: bool = False,
    with_collector: bool = False,
    **console: Any,
) -> AsyncIterator[RulesStack]:
    """``serve_console``: the caller serves the console (uvicorn runs its lifespan), else it runs here.
    ``with_scorer``: the scorer app too (it stores the ratings published; the Customer view reads it).
    ``with_collector``: the collector app too, and the console publishes on the test's topics: every
    service that holds customer data answers the GDPR export and runs its erasure consumer."""
    common: dict[str, Any] = {
        "kafka_bootstrap": infra.bootstrap,
        "database_url": database_url,
        "topic_prefix": topics.prefix,
        "identity_public_keys": JWKS,
    }
    actions = create_actions(make_settings(ActionsSettings, **common, scheduler_enabled=False))
    notifier = create_notifier(make_settings(NotifierSettings, **common))
    apps = {"actions.internal": actions, "notifier.internal": notifier}
    if with_scorer:
        apps["scorer.internal"] = create_scorer(
            scorer_settings(infra, database_url, topics, identity_public_keys=JWKS)
        )
        console = {"scorer_url": SCORER_URL, **console}
    if with_collector:
        apps["collector.internal"] = create_collector(make_settings(CollectorSettings, **common))
        console = {
            "collector_url": COLLECTOR_URL,
            "kafka_bootstrap": infra.bootstrap,
            "topic_prefix": topics.prefix,
            **console,
        }
    bridge = KeyBridge(apps)
    cfg = make_settings(
        ConsoleSettings,
        environment="test",
        database_url=database_url,
        actions_url=ACTIONS_URL,
        notifier_url=NOTIFIER_URL,
        identity_signing_key=SIGNING_KEY.private_jwk(),
        **console,
    )
    app = create_console(cfg, passwords=CHEAP, http=httpx.AsyncClient(transport=bridge, timeout=30))
    engine = make_engine(database_url)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(actions.router.lifespan_context(actions))
        await stack.enter_async_context(notifier.router.lifespan_context(notifier))
        if with_scorer:
            scorer = apps["scorer.internal"]
            await stack.enter_async_context(scorer.router.lifespan_context(scorer))
        if with_collector:
            collector = apps["collector.internal"]
            await stack.enter_async_context(collector.router.lifespan_context(collector))
        if not serve_console:
            await stack.enter_async_context(app.router.lifespan_context(app))
        stack.push_async_callback(engine.dispose)
        yield RulesStack(
            actions=actions,
            notifier=notifier,
            console=app,
            identity=PgIdentityStore(engine=engine, timeout_s=5),
            database_url=database_url,
            topics=topics,
            bridge=bridge,
        )
