"""What the actions routes use, built by the composition root: settings, the stores, the rules in force
and the authenticator every route asks for the caller."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from services.actions.dryrun import DryRunner
from services.actions.health_handler import HealthHandler
from services.actions.ports import Transactions
from services.actions.rulebook import RuleBook
from services.actions.settings import ActionsSettings
from services.actions.surveybook import SurveyBook
from shared.envelope import OutgoingRecord
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
    #: Recomputes the health an alert's acknowledgement or resolution changes (None: not wired).
    health: HealthHandler | None = None
    #: Publishes records and waits for the broker (the health-changed records of such a recomputation).
    publish: Callable[[Sequence[OutgoingRecord]], Awaitable[None]] | None = None
