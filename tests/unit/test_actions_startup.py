"""A broken rules or taxonomy file stops the actions service at start, naming what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.actions.bootstrap import create_app
from services.actions.rules import RuleFileError
from services.actions.settings import ActionsSettings
from services.actions.verbatims import TaxonomyError
from tests.helpers import make_settings


def test_broken_rules_file_stops_the_service(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - id: vip\n    when: {sentimnt: negative}\n    actions: [{type: csm_alert}]\n")
    with pytest.raises(RuleFileError, match=r"rule vip: when\.sentimnt: unknown fact 'sentimnt'"):
        create_app(make_settings(ActionsSettings, rules_file=path))


def test_broken_taxonomy_stops_the_service(tmp_path: Path) -> None:
    path = tmp_path / "themes.yaml"
    path.write_text("themes:\n  - id: parking\n    keywords: {en: []}\nsentiment: {}\n")
    with pytest.raises(TaxonomyError, match="theme parking: keywords"):
        create_app(make_settings(ActionsSettings, themes_file=path))
