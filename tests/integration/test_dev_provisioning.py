"""``make run``'s dev provisioning: each start gives the dev admin a new API token (printed in the banner)
that every service accepts, and revokes the previous start's."""

from __future__ import annotations

import pytest

from services.console.provision import ensure_dev_admin
from services.scorer.bootstrap import create_app
from shared.topics import Topics
from tests.helpers import running
from tests.infra import Infra
from tests.integration.test_scorer_queries import scorer_settings

pytestmark = pytest.mark.integration


async def test_each_start_prints_a_working_admin_token_and_revokes_the_last(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    first = await ensure_dev_admin(database_url, console_url="http://127.0.0.1:8004")
    second = await ensure_dev_admin(database_url, console_url="http://127.0.0.1:8004")
    assert first.api_token.startswith("csat_") and first.api_token != second.api_token
    async with running(create_app(scorer_settings(infra, database_url, topics, environment="dev"))) as client:
        asked = {"metric": "csat", "window": "30d"}
        now = await client.get(
            "/v1/scores", params=asked, headers={"Authorization": f"Bearer {second.api_token}"}
        )
        assert now.status_code == 200, now.text
        old = await client.get(
            "/v1/scores", params=asked, headers={"Authorization": f"Bearer {first.api_token}"}
        )
        assert old.status_code == 401
