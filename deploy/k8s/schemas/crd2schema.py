"""Turn a CustomResourceDefinition's OpenAPI v3 schema into a strict JSON Schema file.

Usage: ``python deploy/k8s/schemas/crd2schema.py CRD.yaml [OUT_DIR]`` writes one
``<group>/<version>/<kind>.json`` per served version. Descriptions are dropped (size); objects that
declare ``properties`` get ``additionalProperties: false`` unless the CRD preserves unknown fields,
which is what the API server's pruning does and what ``kubeconform -strict`` checks.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

DROP = {"description", "x-kubernetes-list-type", "x-kubernetes-list-map-keys", "x-kubernetes-map-type"}


def strict(node: Any) -> Any:
    if isinstance(node, list):
        return [strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in DROP or key.startswith("x-kubernetes-validations"):
            continue
        if key in ("properties", "patternProperties", "definitions"):
            out[key] = {k: strict(v) for k, v in value.items()}
        else:
            out[key] = strict(value)
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    preserve = out.pop("x-kubernetes-preserve-unknown-fields", False)
    if out.pop("x-kubernetes-embedded-resource", False):
        preserve = True
    if "properties" in out and "additionalProperties" not in out and not preserve:
        out["additionalProperties"] = False
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def convert(crd_path: Path, out_dir: Path) -> list[Path]:
    written = []
    for crd in yaml.safe_load_all(crd_path.read_text()):
        if not crd or crd.get("kind") != "CustomResourceDefinition":
            continue
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if not version.get("served", True):
                continue
            schema = strict(version["schema"]["openAPIV3Schema"])
            schema["properties"]["metadata"] = {"type": "object"}
            schema["$schema"] = "http://json-schema.org/draft-07/schema#"
            target = out_dir / group / version["name"] / f"{kind.lower()}.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
            written.append(target)
    return written


if __name__ == "__main__":
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).parent
    for path in convert(Path(sys.argv[1]), out):
        sys.stdout.write(f"{path}\n")
