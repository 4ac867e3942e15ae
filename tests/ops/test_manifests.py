"""Every overlay renders and passes kubernetes-validate --strict, the vendored CRD schemas and checkov;
plus the operational promises the manifests make (probes, limits, PDBs, replication, autoscaling)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator

from shared.topics import Topics
from tests.ops.tools import ROOT, render, run

OVERLAYS = ("dev", "prod")
SCHEMAS = ROOT / "deploy" / "k8s" / "schemas"
BUILTIN_GROUPS = {"v1", "apps/v1", "batch/v1", "policy/v1", "networking.k8s.io/v1", "autoscaling/v2"}
K8S_VERSION = "1.32.0"
CONSUMERS = {"csat-scorer": "csat-scorer", "csat-actions": "csat-actions", "csat-notifier": "csat-notifier"}


def docs(overlay: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(render(overlay)) if d]


def of_kind(items: list[dict[str, Any]], kind: str) -> Iterator[dict[str, Any]]:
    return (d for d in items if d["kind"] == kind)


def crd_schema(doc: dict[str, Any]) -> dict[str, Any]:
    group_version, kind = doc["apiVersion"], doc["kind"].lower()
    path = SCHEMAS / group_version / f"{kind}.json"
    assert path.is_file(), f"no vendored schema for {group_version} {doc['kind']} ({path})"
    schema: dict[str, Any] = json.loads(path.read_text())
    return schema


def crd_errors(doc: dict[str, Any]) -> list[str]:
    validator = Draft7Validator(crd_schema(doc))
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_builtin_kinds_pass_kubernetes_validate_strict(overlay: str, tmp_path: Path) -> None:
    builtins = [d for d in docs(overlay) if d["apiVersion"] in BUILTIN_GROUPS]
    path = tmp_path / f"{overlay}.yaml"
    path.write_text(yaml.safe_dump_all(builtins))
    out = run("kubernetes-validate", "--strict", "-k", K8S_VERSION, str(path))
    assert out.returncode == 0, out.stdout + out.stderr
    passed = [line for line in out.stdout.splitlines() if line.startswith("INFO") and " passed " in line]
    assert len(passed) == len(builtins), out.stdout


def test_kubernetes_validate_rejects_an_unknown_field(tmp_path: Path) -> None:
    deployment = next(of_kind(docs("dev"), "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(deployment))
    out = run("kubernetes-validate", "--strict", "-k", K8S_VERSION, str(path))
    assert out.returncode != 0 and "livenesProbe" in out.stdout + out.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_match_the_operators_crd_schemas(overlay: str) -> None:
    custom = [d for d in docs(overlay) if d["apiVersion"] not in BUILTIN_GROUPS]
    kinds = {(d["apiVersion"], d["kind"]) for d in custom}
    assert ("kafka.strimzi.io/v1", "Kafka") in kinds and ("keda.sh/v1alpha1", "ScaledObject") in kinds
    for doc in custom:
        assert crd_errors(doc) == [], f"{doc['kind']}/{doc['metadata']['name']}"


def test_crd_schemas_reject_unknown_and_removed_fields() -> None:
    kafka = next(of_kind(docs("prod"), "Kafka"))
    kafka["spec"]["kafka"]["replicas"] = 3  # removed in kafka.strimzi.io/v1: node pools own replicas
    assert any("replicas" in e for e in crd_errors(kafka))
    scaled = next(of_kind(docs("prod"), "ScaledObject"))
    scaled["spec"]["triggers"][0]["lagTreshold"] = "5"
    assert crd_errors(scaled)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_checkov_passes_with_every_exception_justified(overlay: str, tmp_path: Path) -> None:
    (tmp_path / f"{overlay}.yaml").write_text(render(overlay))
    out = run(
        "checkov",
        "-d",
        str(tmp_path),
        "--framework",
        "kubernetes",
        "--compact",
        "--skip-download",
        "-o",
        "json",
    )
    report = json.loads(out.stdout)
    summary = report["summary"]
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert summary["failed"] == 0 and summary["parsing_errors"] == 0, failed
    assert summary["passed"] > 100
    for skipped in report["results"]["skipped_checks"]:
        reason = skipped["check_result"].get("suppress_comment") or ""
        assert len(reason) > 30, f"{skipped['check_id']} on {skipped['resource']} has no real justification"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_deployments_follow_the_operating_rules(overlay: str) -> None:
    items = docs(overlay)
    deployments = list(of_kind(items, "Deployment"))
    assert {d["metadata"]["name"] for d in deployments} == {"csat-collector", "csat-console", *CONSUMERS}
    pdbs = {
        p["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]: p
        for p in of_kind(items, "PodDisruptionBudget")
    }
    for d in deployments:
        name, spec = d["metadata"]["name"], d["spec"]
        assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0, name
        pod = spec["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        (container,) = pod["containers"]
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        # Health, readiness and metrics on the internal listener only (shared.listeners).
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert set(ports) == {"http", "internal"} and ports["internal"] == 9000, name
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "internal"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "internal"}
        assert container["startupProbe"]["httpGet"]["port"] == "internal"
        assert spec["template"]["metadata"]["annotations"]["prometheus.io/port"] == "9000"
        assert {e["name"]: e.get("value") for e in container["env"]}["CSAT_INTERNAL_PORT"] == "9000"
        assert (
            set(container["resources"]["requests"])
            == set(container["resources"]["limits"])
            == {"cpu", "memory"}
        )
        # Every value the shared template leaves as a placeholder is set to this service's own.
        service, port = name.removeprefix("csat-"), str(container["ports"][0]["containerPort"])
        assert container["args"] == ["serve", service] and container["name"] == service
        assert d["metadata"]["labels"]["app.kubernetes.io/component"] == service
        assert spec["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == service
        assert {e["name"]: e.get("value") for e in container["env"]}["CSAT_PORT"] == port
        if spec["replicas"] > 1:
            assert name in pdbs, f"{name} runs {spec['replicas']} replicas without a PodDisruptionBudget"
        else:
            assert name not in pdbs, f"{name} has one replica: a PDB would block node drains"
    (job,) = of_kind(items, "Job")
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]
    policies = {p["metadata"]["name"]: p for p in of_kind(items, "NetworkPolicy")}
    assert len(policies) >= 5
    # Only the monitoring namespace reaches the internal port, and the console the collector's (its
    # admin routes); the API's policies name port `http` only.
    internal_rules = [
        (policy["spec"]["podSelector"], rule["from"])
        for policy in policies.values()
        for rule in policy["spec"].get("ingress", [])
        if any(p.get("port") == "internal" for p in rule.get("ports", []))
    ]
    monitoring = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    console = [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "csat-console"}}}]
    collector = {"matchLabels": {"app.kubernetes.io/name": "csat-collector"}}
    assert [f for _, f in internal_rules if f != console] == [monitoring]
    assert [s for s, f in internal_rules if f == console] == [collector]
    for policy in policies.values():
        for rule in policy["spec"].get("ingress", []):
            named = {p.get("port") for p in rule.get("ports", [])}
            assert named <= {"http"} or named == {"internal"}, policy["metadata"]["name"]
    for service in of_kind(items, "Service"):
        name = service["metadata"]["name"]
        internal = ["internal"] if name == "csat-collector" else []  # its admin routes, for the console
        assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http", *internal], name
    console_env = {
        e["name"]: e.get("value")
        for d in deployments
        if d["metadata"]["name"] == "csat-console"
        for e in d["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert console_env["CSAT_COLLECTOR_URL"] == "http://csat-collector:9000"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kafka_is_strimzi_v1_and_topics_match_the_code(overlay: str) -> None:
    items = docs(overlay)
    topics = list(of_kind(items, "KafkaTopic"))
    assert {t["spec"]["topicName"] for t in topics} == set(Topics().all())
    pools = list(of_kind(items, "KafkaNodePool"))
    roles = {role for p in pools for role in p["spec"]["roles"]}
    assert roles == {"controller", "broker"}
    for doc in [*topics, *pools, *of_kind(items, "Kafka")]:
        assert doc["apiVersion"] == "kafka.strimzi.io/v1"
    (kafka,) = of_kind(items, "Kafka")
    expected = (3, 2) if overlay == "prod" else (1, 1)
    for topic in topics:
        assert (topic["spec"]["replicas"], topic["spec"]["config"]["min.insync.replicas"]) == expected
    assert kafka["spec"]["kafka"]["config"]["min.insync.replicas"] == expected[1]
    if overlay == "prod":
        assert all(p["spec"]["replicas"] == 3 for p in pools)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_consumers_scale_on_their_groups_lag(overlay: str) -> None:
    items = docs(overlay)
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in of_kind(items, "ScaledObject")}
    assert set(scaled) == set(CONSUMERS)
    namespace = next(of_kind(items, "Namespace"))["metadata"]["name"]
    for target, group in CONSUMERS.items():
        (trigger,) = scaled[target]["spec"]["triggers"]
        meta = trigger["metadata"]
        assert trigger["type"] == "kafka" and meta["consumerGroup"] == group
        assert int(meta["lagThreshold"]) > 0
        assert meta["bootstrapServers"] == f"csat-kafka-kafka-bootstrap.{namespace}.svc:9092"
        assert scaled[target]["spec"]["maxReplicaCount"] <= 6  # partitions per topic
        if overlay == "prod":
            assert scaled[target]["spec"]["minReplicaCount"] >= 2


def test_prod_settings() -> None:
    items = docs("prod")
    config = next(c for c in of_kind(items, "ConfigMap") if c["metadata"]["name"] == "csat-config")["data"]
    assert config["CSAT_ENVIRONMENT"] == "prod" and config["CSAT_KAFKA_IDEMPOTENCE"] == "true"
    # Every secret a service refuses to start without in prod comes from the Secret csat-secrets, and
    # only the console gets the private signing key.
    needs = {
        "collector": {"CSAT_SIGNING_SECRET", "CSAT_SOURCE_IDENTITY_KEY"},
        "scorer": set(),
        "actions": {"CSAT_SIGNING_SECRET"},
        "notifier": {"CSAT_UNSUBSCRIBE_SECRET"},
        "console": {"CSAT_SESSION_SECRET", "CSAT_IDENTITY_SIGNING_KEY"},
    }
    for deployment in of_kind(items, "Deployment"):
        service = deployment["metadata"]["name"].removeprefix("csat-")
        if service not in needs:
            continue
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        from_secret = {
            e["name"]: e["valueFrom"]["secretKeyRef"]
            for e in container["env"]
            if "secretKeyRef" in e.get("valueFrom", {})
            and e["valueFrom"]["secretKeyRef"]["name"] == "csat-secrets"
        }
        required = {n for n, ref in from_secret.items() if not ref.get("optional")}
        assert required >= {"CSAT_ADDRESS_HASH_KEY", "CSAT_IDENTITY_PUBLIC_KEYS"} | needs[service], service
        assert all(ref["key"] == name for name, ref in from_secret.items()), service
        assert ("CSAT_IDENTITY_SIGNING_KEY" in from_secret) is (service == "console")
        assert from_secret["CSAT_BOOTSTRAP_ADMIN_KEY"].get("optional") is True
    (db,) = of_kind(items, "Cluster")
    assert db["spec"]["instances"] == 3 and "backup" in db["spec"]
    assert next(of_kind(items, "ScheduledBackup"))["spec"]["cluster"]["name"] == db["metadata"]["name"]


def effective_env(items: list[dict[str, Any]], service: str) -> dict[str, str]:
    """The plain values a service's container sees: the ConfigMaps it loads, then its own ``env``
    (which wins), ``configMapKeyRef`` resolved; secrets left out."""
    maps = {c["metadata"]["name"]: c.get("data", {}) for c in of_kind(items, "ConfigMap")}
    deployment = next(d for d in of_kind(items, "Deployment") if d["metadata"]["name"] == f"csat-{service}")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    out: dict[str, str] = {}
    for source in container.get("envFrom", []):
        out.update(maps[source["configMapRef"]["name"]])
    for e in container.get("env", []):
        if "value" in e:
            out[e["name"]] = e["value"]
        elif "configMapKeyRef" in e.get("valueFrom", {}):
            ref = e["valueFrom"]["configMapKeyRef"]
            out[e["name"]] = maps[ref["name"]][ref["key"]]
    return out


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_public_addresses_reach_the_services_that_build_links(overlay: str) -> None:
    items = docs(overlay)
    actions, collector = effective_env(items, "actions"), effective_env(items, "collector")
    notifier, console = effective_env(items, "notifier"), effective_env(items, "console")
    # Survey emails link to the collector: actions signs them on the address the collector says is its own.
    assert actions["CSAT_SURVEY_LINK_BASE_URL"] == collector["CSAT_PUBLIC_URL"]
    assert collector["CSAT_PUBLIC_URL"] != console["CSAT_PUBLIC_URL"]  # not the console's address
    links = (
        actions["CSAT_SURVEY_LINK_BASE_URL"],
        notifier["CSAT_PUBLIC_BASE_URL"],
        console["CSAT_PUBLIC_URL"],
    )
    if overlay == "prod":  # the services refuse to start on http ones there
        assert all(url.startswith("https://") for url in links), links
    else:
        assert all(url.startswith(("http://", "https://")) for url in links), links


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_alert_rules_and_dashboard_ship_as_configmaps(overlay: str) -> None:
    maps = {c["metadata"]["name"]: c for c in of_kind(docs(overlay), "ConfigMap")}
    rules = maps["csat-prometheus-rules"]["data"]["csat-alerts.rules.yaml"]
    assert rules == (ROOT / "deploy/k8s/base/monitoring/csat-alerts.rules.yaml").read_text()
    dashboard = maps["csat-grafana-dashboard"]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["csat-dashboard.json"])["uid"] == "csat-platform"
