"""YAML 1.2 booleans for the rules, playbooks and survey files: ``shared.yamlio``, re-exported here so the
actions modules keep their import (the scorer reads the theme taxonomy with the same loader)."""

from __future__ import annotations

from shared.yamlio import StrictBoolLoader, load_yaml

__all__ = ["StrictBoolLoader", "load_yaml"]
