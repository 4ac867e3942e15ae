"""What the scorer's routes use, built by ``bootstrap``: settings, read sessions (ports), a clock and the
authenticator every data route asks for the caller."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from services.scorer.ports import CustomerSessions, ScoreSessions
from services.scorer.settings import ScorerSettings
from shared.identity.guard import Authenticator
from shared.verbatims import Taxonomy


@dataclass(frozen=True, slots=True)
class ScorerDeps:
    settings: ScorerSettings
    scores: ScoreSessions
    customers: CustomerSessions
    clock: Callable[[], datetime]
    auth: Authenticator
    taxonomy: Taxonomy | None = None  # the verbatims API's themes; None: the settings' file, read once
