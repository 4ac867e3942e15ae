"""What the actions routes use, built by the composition root: settings, the stores, the rules in force
and the authenticator every route asks for the caller."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from services.actions.dryrun import DryRunner
from services.actions.ports import Transactions
from services.actions.rulebook import RuleBook
from services.actions.settings import ActionsSettings
from services.actions.surveybook import SurveyBook
from shared.identity.guard import Authenticator
from shared.identity.ports import AuditLog


@dataclass(frozen=True, slots=True)
class ActionsDeps:
    settings: ActionsSettings
    transactions: Transactions
    rulebook: RuleBook
    clock: Callable[[], datetime]
    dry_run: DryRunner
    surveybook: SurveyBook
    auth: Authenticator
    audit: AuditLog  # rule changes, alert transitions, customer changes (identity.audit_log)
    customer_ref: Callable[[str], str]  # a customer as audit entries name it: customer#<keyed hash>
