"""The committed contracts match the models, cover every topic and event type, and accept real events."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator

from services.cli.commands import main as csat
from shared import contracts
from shared import events as ev
from shared.topics import Topics

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = ROOT / "contracts"


def test_committed_contracts_are_up_to_date() -> None:
    for rel, text in contracts.render_files().items():
        assert (CONTRACTS / rel).read_text() == text, f"contracts/{rel} is stale: run `make contracts`"
    assert csat(["contracts", "--check"]) == 0


def test_the_check_fails_on_a_stale_file(tmp_path: Path) -> None:
    assert csat(["contracts", "--dir", str(tmp_path)]) == 0
    assert csat(["contracts", "--dir", str(tmp_path), "--check"]) == 0
    (tmp_path / "schemas" / "com.csat.rating.submitted.v1.json").write_text("{}")
    assert csat(["contracts", "--dir", str(tmp_path), "--check"]) == 1


def test_every_event_type_has_a_valid_schema() -> None:
    for event_type in ev.EVENT_MODELS:
        schema = json.loads((CONTRACTS / "schemas" / f"{event_type}.json").read_text())
        Draft202012Validator.check_schema(schema)
        assert schema["$id"].endswith(f"{event_type}.json")


def test_asyncapi_describes_every_topic_with_its_event_types() -> None:
    doc = yaml.safe_load((CONTRACTS / "asyncapi.yaml").read_text())
    assert doc["asyncapi"].startswith("3.")
    addresses = {c["address"] for c in doc["channels"].values()}
    assert addresses == set(Topics().all())
    types = {m["headers"]["properties"]["ce_type"]["const"] for m in doc["components"]["messages"].values()}
    assert types == set(ev.EVENT_MODELS)
    for channel in doc["channels"].values():
        for ref in channel["messages"].values():
            assert ref["$ref"].removeprefix("#/components/messages/") in doc["components"]["messages"]


def test_a_real_event_validates_and_a_broken_one_does_not() -> None:
    now = datetime.now(UTC)
    outcome = ev.NotificationOutcome(
        notification_id="n-1",
        status=ev.OutcomeStatus.SENT,
        channel=ev.Channel.EMAIL,
        provider="outbox",
        attempts=1,
        at=now,
    )
    schema = json.loads((CONTRACTS / "schemas" / f"{ev.NOTIFICATION_OUTCOME}.json").read_text())
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    payload = json.loads(outcome.model_dump_json())
    assert list(validator.iter_errors(payload)) == []
    assert list(validator.iter_errors({**payload, "status": "teleported"}))
    assert list(validator.iter_errors({k: v for k, v in payload.items() if k != "attempts"}))
