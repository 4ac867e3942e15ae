"""YAML loading with YAML 1.2 booleans: only true/false are booleans, so ``on:`` and ``no`` stay strings."""

from __future__ import annotations

import re
from typing import Any

import yaml

_BOOL = "tag:yaml.org,2002:bool"


class StrictBoolLoader(yaml.SafeLoader):
    """PyYAML's safe loader, minus YAML 1.1's yes/no/on/off booleans (``on: segment_alert`` is a key)."""


StrictBoolLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
StrictBoolLoader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=StrictBoolLoader)  # noqa: S506 - a SafeLoader subclass
