"""The AsyncAPI document passes the AsyncAPI CLI's validation; the dashboard is well-formed and uses
contract metrics."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from tests.ops.tools import NODE_MODULES, ROOT, run

CONTRACTS = ROOT / "contracts"
DASHBOARD = ROOT / "deploy" / "k8s" / "base" / "monitoring" / "csat-dashboard.json"
VALIDATE = ROOT / "deploy" / "tools" / "asyncapi" / "validate.cjs"
ENV = {**os.environ, "NODE_PATH": str(NODE_MODULES), "NODE_NO_WARNINGS": "1"}

#: The metric names of the cross-branch contract (prefix csat_, base units, _total counters).
CONTRACT_METRICS = {
    "csat_http_requests_total",
    "csat_http_request_duration_seconds",
    "csat_consumer_records_total",
    "csat_consumer_batch_duration_seconds",
    "csat_consumer_batch_records",
    "csat_consumer_lag_records",
    "csat_consumer_errors_total",
    "csat_dlq_records_total",
    "csat_event_processing_latency_seconds",
    "csat_ratings_accepted_total",
    "csat_ratings_rejected_total",
    "csat_collector_publish_duration_seconds",
    "csat_collector_broker_errors_total",
    "csat_rule_hits_total",
    "csat_notifications_total",
    "csat_provider_attempts_total",
    "csat_segment_score",
    "csat_segment_responses",
    "csat_segment_values_folded_total",
}


def validate(document: Path) -> subprocess.CompletedProcess[str]:
    """`asyncapi validate --fail-severity warn` as the CLI runs it: its parser and ruleset (validate.cjs)."""
    return run("node", str(VALIDATE), str(document), env=ENV)


def test_asyncapi_validation_passes_the_document() -> None:
    out = validate(CONTRACTS / "asyncapi.yaml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "is valid" in out.stdout


def test_asyncapi_validation_rejects_a_broken_payload_schema(tmp_path: Path) -> None:
    copy = tmp_path / "contracts"
    shutil.copytree(CONTRACTS, copy)
    schema_path = copy / "schemas" / "com.csat.notification.outcome.v1.json"
    schema = json.loads(schema_path.read_text())
    schema["properties"]["attempts"]["type"] = "integr"
    schema_path.write_text(json.dumps(schema))
    out = validate(copy / "asyncapi.yaml")
    assert out.returncode == 1, out.stdout + out.stderr  # 2 would be a crash (e.g. the parser missing)
    assert "properties.attempts.type" in out.stdout and "is invalid" in out.stdout


def test_dashboard_is_well_formed_and_queries_only_contract_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    used: set[str] = set()
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["title"] and panel["targets"], panel["id"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            used |= {
                re.sub(r"_(bucket|sum|count)$", "", n)
                for n in re.findall(r"\bcsat_[a-z0-9_]+", target["expr"])
            }
    assert used <= CONTRACT_METRICS, used - CONTRACT_METRICS
    # ingestion, lag, latency, rule hits, notifications, DLQ and the score gauges are all on it
    assert {
        "csat_ratings_accepted_total",
        "csat_consumer_lag_records",
        "csat_event_processing_latency_seconds",
        "csat_rule_hits_total",
        "csat_notifications_total",
        "csat_dlq_records_total",
        "csat_segment_score",
    } <= used
