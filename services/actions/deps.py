"""What the actions routes use, built by the composition root: settings, the stores, the rules in force."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from services.actions.dryrun import DryRunner
from services.actions.health_handler import HealthHandler
from services.actions.ports import Transactions
from services.actions.rulebook import RuleBook
from services.actions.settings import ActionsSettings
from shared.envelope import OutgoingRecord


@dataclass(frozen=True, slots=True)
class ActionsDeps:
    settings: ActionsSettings
    transactions: Transactions
    rulebook: RuleBook
    clock: Callable[[], datetime]
    dry_run: DryRunner
    #: Recomputes the health an alert's acknowledgement or resolution changes (None: not wired).
    health: HealthHandler | None = None
    #: Publishes records and waits for the broker (the health-changed records of such a recomputation).
    publish: Callable[[Sequence[OutgoingRecord]], Awaitable[None]] | None = None
