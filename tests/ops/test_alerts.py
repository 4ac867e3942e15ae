"""Alert rules load in promtool, every alert has unit tests, and every alert has a runbook section."""

from __future__ import annotations

import re

import yaml

from tests.ops.tools import ROOT, run

RULES = ROOT / "deploy" / "k8s" / "base" / "monitoring" / "csat-alerts.rules.yaml"
TESTS = ROOT / "tests" / "ops" / "alerts.test.yaml"
RUNBOOK = ROOT / "docs" / "operations.md"


def _alerts() -> list[dict[str, object]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_rules_pass_promtool_check() -> None:
    out = run("promtool", "check", "rules", str(RULES))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in out.stdout


def test_alert_unit_tests_pass() -> None:
    out = run("promtool", "test", "rules", str(TESTS))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_a_wrong_expectation_fails_promtool(tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    broken = yaml.safe_load(TESTS.read_text())
    broken["rule_files"] = [str(RULES)]
    first = broken["tests"][0]["alert_rule_test"][1]
    first["exp_alerts"][0]["exp_labels"]["consumer"] = "actions"
    path = tmp_path / "broken.test.yaml"
    path.write_text(yaml.safe_dump(broken))
    out = run("promtool", "test", "rules", str(path))
    assert out.returncode != 0 and "FAILED" in out.stdout + out.stderr


def test_every_alert_fires_in_a_unit_test_and_has_a_runbook_section() -> None:
    tested = yaml.safe_load(TESTS.read_text())["tests"]
    fired = {case["alertname"] for t in tested for case in t["alert_rule_test"] if case.get("exp_alerts")}
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in RUNBOOK.read_text().splitlines()
        if line.startswith("#")
    }
    for alert in _alerts():
        name = str(alert["alert"])
        assert name in fired, f"{name} has no unit test where it fires"
        annotations = alert["annotations"]
        assert isinstance(annotations, dict)
        assert {"summary", "description", "runbook"} <= set(annotations), name
        labels = alert["labels"]
        assert isinstance(labels, dict) and labels["severity"] in ("warning", "critical"), name
        anchor = str(annotations["runbook"]).split("#", 1)[1]
        assert anchor in anchors, f"{name}: docs/operations.md has no section #{anchor}"
