"""``CSAT_ENVIRONMENT=prod`` with the secrets ``python -m shared.identity.keygen`` prints (one set for all
five services, as the prod overlay's Secret gives them): every service starts on the real broker and
PostgreSQL, and the smoke test passes: the bootstrap key issues a token and does nothing else, the
token's holder creates a source, a rating goes in through its secret key and comes out as a score."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest

from services.actions.bootstrap import create_app as create_actions
from services.actions.settings import ActionsSettings
from services.collector.bootstrap import create_app as create_collector
from services.collector.settings import CollectorSettings
from services.console.bootstrap import create_app as create_console
from services.console.settings import ConsoleSettings
from services.notifier.bootstrap import create_app as create_notifier
from services.notifier.settings import NotifierSettings
from services.scorer.bootstrap import create_app as create_scorer
from services.scorer.settings import ScorerSettings
from shared.topics import Topics
from tests.helpers import make_settings, running, wait_for
from tests.infra import Infra
from tests.unit.test_prod_settings import keygen_env_file

pytestmark = pytest.mark.integration


@asynccontextmanager
async def prod_stack(
    infra: Infra, database_url: str, topics: Topics
) -> AsyncIterator[tuple[str, dict[str, httpx.AsyncClient]]]:
    """The five apps in prod, their lifespans running; yields the bootstrap key and a client for each."""
    secrets = keygen_env_file()
    common: dict[str, Any] = {
        "environment": "prod",
        "kafka_bootstrap": infra.bootstrap,
        "kafka_idempotence": False,  # the embedded broker (Tansu) has no idempotent producers
        "database_url": database_url,
        "topic_prefix": topics.prefix,
        **secrets,
    }
    apps = {
        "collector": create_collector(make_settings(CollectorSettings, **common)),
        "scorer": create_scorer(make_settings(ScorerSettings, **common)),
        "actions": create_actions(
            make_settings(ActionsSettings, **common, survey_link_base_url="https://collect.example.com")
        ),
        "notifier": create_notifier(
            make_settings(NotifierSettings, **common, public_base_url="https://notify.example.com")
        ),
        "console": create_console(
            make_settings(
                ConsoleSettings, **common, public_url="https://console.example.com", live_enabled=False
            )
        ),
    }
    async with AsyncExitStack() as stack:
        clients = {name: await stack.enter_async_context(running(app)) for name, app in apps.items()}
        yield secrets["bootstrap_admin_key"], clients


async def ready(client: httpx.AsyncClient) -> int:
    return (await client.get("/readyz")).status_code


async def test_prod_starts_with_the_generated_secrets_and_passes_the_smoke_test(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    async with prod_stack(infra, database_url, topics) as (key, s):
        for client in s.values():
            await wait_for(lambda c=client: ready(c), until=lambda status: status == 200)  # type: ignore[misc]
        scorer, collector, console = s["scorer"], s["collector"], s["console"]
        bootstrap = {"Authorization": f"Bearer {key}"}
        scores = {"metric": "csat", "window": "30d", "segment": "store:prod-1"}
        assert (await scorer.get("/v1/scores", params=scores)).status_code == 401
        # In prod the bootstrap key creates people and tokens and reads nothing; the dev key is nothing.
        assert (await scorer.get("/v1/scores", params=scores, headers=bootstrap)).status_code == 403
        assert (await collector.get("/v1/sources", headers=bootstrap)).status_code == 403
        dev = {"Authorization": "Bearer dev-admin-key"}
        assert (await scorer.get("/v1/scores", params=scores, headers=dev)).status_code == 401
        made = await console.post(
            "/v1/tokens",
            json={"name": "ops", "role": "admin", "scopes": ["sources:admin", "scores:read"]},
            headers=bootstrap,
        )
        assert made.status_code in (200, 201), made.text
        ops = {"Authorization": f"Bearer {made.json()['secret']}"}
        source = await collector.post("/v1/sources", json={"source_id": "shop", "name": "Shop"}, headers=ops)
        assert source.status_code == 201, source.text
        secret_key = await collector.post("/v1/sources/shop/keys", json={"kind": "secret"}, headers=ops)
        sk = {"X-API-Key": secret_key.json()["key"]}
        rating = {
            "metric": "csat",
            "scale": "1-5",
            "score": 5,
            "customer": {"id": "c-1"},
            "segment": {"store": "prod-1"},
        }
        assert (await collector.post("/v1/ratings", json=rating)).status_code == 401  # keys required
        posted = await collector.post("/v1/ratings", json=rating, headers=sk)
        assert posted.status_code == 202, posted.text

        async def counted() -> Any:
            return (await scorer.get("/v1/scores", params=scores, headers=ops)).json()

        body = await wait_for(counted, until=lambda b: b.get("responses") == 1, timeout_s=60)
        assert body["score"] == 100.0
