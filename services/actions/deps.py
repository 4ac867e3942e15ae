"""What the actions routes use, built by the composition root: settings, the stores, the rules in force."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from services.actions.dryrun import DryRunner
from services.actions.ports import Transactions
from services.actions.rulebook import RuleBook
from services.actions.settings import ActionsSettings
from services.actions.surveybook import SurveyBook


@dataclass(frozen=True, slots=True)
class ActionsDeps:
    settings: ActionsSettings
    transactions: Transactions
    rulebook: RuleBook
    clock: Callable[[], datetime]
    dry_run: DryRunner
    surveybook: SurveyBook
