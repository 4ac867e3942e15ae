"""The fuzzing finds of the Trust issue, on the real stack: a NUL in a query parameter and an unpaired
surrogate in customer attributes answered 500 and logged the statement's parameters (addresses
included). Now every such input is a 422 naming the field, in the scorer, actions and notifier, and a
statement that fails anyway never shows its parameters."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from services.actions.bootstrap import create_app as create_actions
from services.actions.settings import ActionsSettings
from services.notifier.bootstrap import create_app as create_notifier
from services.notifier.settings import NotifierSettings
from services.scorer.bootstrap import create_app as create_scorer
from services.scorer.settings import ScorerSettings
from shared.db import make_engine
from shared.topics import Topics
from tests.credentials import ADMIN
from tests.helpers import make_settings, running
from tests.infra import Infra

pytestmark = pytest.mark.integration

JSON = {**ADMIN, "content-type": "application/json"}


def assert_names(answer: Any, field: str, words: str) -> None:
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["field"] == field and words in answer.json()["detail"], answer.json()


async def test_nul_and_lone_surrogates_are_422s_naming_the_field(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    common: dict[str, Any] = {
        "kafka_bootstrap": infra.bootstrap,
        "database_url": database_url,
        "topic_prefix": topics.prefix,
    }
    async with (
        running(create_actions(make_settings(ActionsSettings, **common))) as actions,
        running(create_scorer(make_settings(ScorerSettings, **common))) as scorer,
        running(create_notifier(make_settings(NotifierSettings, **common))) as notifier,
    ):
        # the two finds, as the fuzzer sent them
        nul = await actions.get("/v1/alerts?owner=ana%00@example.com", headers=ADMIN)
        assert_names(nul, "owner", "owner must not contain a NUL character (U+0000)")
        surrogate = '{"email": "ana@example.com", "attributes": {"plan": "pro\\ud800"}}'
        put = await actions.put("/v1/customers/cus-1", content=surrogate, headers=JSON)
        assert_names(put, "attributes.plan", "unpaired surrogate (U+D800)")
        assert (await actions.get("/v1/customers/cus-1", headers=ADMIN)).status_code == 404  # nothing stored
        # the same everywhere: paths, other query parameters, alert notes, rules, suppressions, previews
        assert_names(await actions.get("/v1/customers/cus%00-1", headers=ADMIN), "path", "NUL")
        assert_names(await actions.get("/v1/decisions?customer_id=%00", headers=ADMIN), "customer_id", "NUL")
        note = await actions.post("/v1/alerts/a-1/ack", content='{"note": "\\u0000"}', headers=JSON)
        assert_names(note, "note", "NUL")
        rules = 'rules:\n  - id: x\n    description: "bad \\0 byte"\n    actions: [{type: csm_alert}]\n'
        refused_rules = await actions.put(
            "/v1/rules", content=rules, headers={**ADMIN, "content-type": "application/yaml"}
        )
        assert_names(refused_rules, "rules[0].description", "NUL")
        assert_names(await scorer.get("/v1/scores?segment=store:paris%00", headers=ADMIN), "segment", "NUL")
        assert_names(await scorer.get("/v1/customers/c%00/history", headers=ADMIN), "path", "NUL")
        suppress = await notifier.post(
            "/v1/suppressions", content='{"email": "a\\udfff@x.com"}', headers=JSON
        )
        assert_names(suppress, "email", "unpaired surrogate (U+DFFF)")
        preview = '{"messages": [{"template": "thank_you", "context": {"customer": {"id": "\\ud800"}}}]}'
        answer = await notifier.post("/v1/templates/preview", content=preview, headers=JSON)
        assert_names(answer, "messages[0].context.customer.id", "unpaired surrogate")
        assert_names(await notifier.get("/v1/outbox?recipient=%00", headers=ADMIN), "recipient", "NUL")


async def test_a_failing_statement_never_shows_its_parameters(database_url: str) -> None:
    """The issue's case: PostgreSQL refuses a NUL in text; SQLAlchemy used to append the statement's
    parameters (the address) to the error, which the traceback in the log then carried."""
    engine = make_engine(database_url)
    try:
        async with engine.connect() as conn:
            with pytest.raises(DBAPIError) as failed:
                await conn.execute(text("SELECT CAST(:v AS text)"), {"v": "secret.address\x00@example.com"})
    finally:
        await engine.dispose()
    assert "secret.address" not in str(failed.value)
    assert "parameters hidden" in str(failed.value)
