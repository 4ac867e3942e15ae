"""Reconciling ``unknown`` deliveries, decided without I/O: the provider's answer in, the next step out.

A delivery is ``unknown`` when the request to a provider without an idempotency key left and no answer
was recorded (a read timeout, or the notifier killed mid-send). Where the provider can be asked whether
it received the message (``LookupProvider``, SendGrid's Email Activity API), the reconciler asks, once
the attempt is older than the settle delay (the provider's indexing lag):

- found: the message went out -> ``sent`` with the provider's message id, and its outcome event;
- absent: looked again at least the settle delay later, and absent again -> back to ``pending``, sent
  again by the dispatcher with the same notification id (attempts, caps, quiet hours as any send);
  with no attempt left, ``failed`` (it provably never went out);
- cannot tell: stays ``unknown``, with the reason, and is looked at again later.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from services.notifier.providers import Absent, CannotTell, Found, LookupResult


@dataclass(frozen=True, slots=True)
class ReconcileConfig:
    #: Off: unknown rows stay unknown (as before reconciliation existed).
    enabled: bool = True
    #: How old an unknown attempt must be before the provider is asked, and how far apart the two
    #: "absent" answers must be. SendGrid's activity index is not real time (it points to its Event
    #: Webhook for that) and promises no delay: 10 minutes leaves a wide margin.
    settle_s: float = 600.0
    #: How often unknown rows are looked for.
    interval_s: float = 30.0
    #: Lookups per minute per replica (SendGrid: 6 requests per minute per account).
    lookups_per_minute: float = 5.0
    #: Unknown rows older than this are left to a person: the provider's history may no longer hold
    #: them, so "absent" would mean nothing (SendGrid keeps 3 days without the add-on, 30 with it).
    max_age_s: float = 86_400.0
    #: A look in progress belongs to its replica this long (then another may take the row).
    claim_s: float = 60.0

    @property
    def settle(self) -> timedelta:
        return timedelta(seconds=self.settle_s)


@dataclass(frozen=True, slots=True)
class Looked:
    """One unknown delivery as the reconciler found it, with what deciding depends on."""

    notification_id: str
    attempts: int
    #: When the provider first said it had no such message (None: it has not said so yet).
    absent_at: datetime | None
    now: datetime


@dataclass(frozen=True, slots=True)
class MarkSent:
    """The provider has it: record ``sent`` (from ``unknown``) with the provider's message id."""

    provider_message_id: str | None


@dataclass(frozen=True, slots=True)
class Requeue:
    """Absent twice, far enough apart: back to ``pending`` now, to be sent again."""

    at: datetime


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Absent twice and no attempt left: ``failed`` (it never went out), its daily slot given back."""

    detail: str


@dataclass(frozen=True, slots=True)
class LookAgain:
    """Stay ``unknown``; look again at ``at``. ``absent_at``: the first absent answer, kept or set;
    ``note``: why it stays unknown, shown to people (None: no change)."""

    at: datetime
    absent_at: datetime | None
    note: str | None = None


Step = MarkSent | Requeue | GiveUp | LookAgain

#: Labels of ``csat_notifier_reconciled_total{result}``.
RESULTS = ("found", "absent", "absent_confirmed", "cannot_tell")


def decide(looked: Looked, answer: LookupResult, cfg: ReconcileConfig, *, max_attempts: int) -> Step:
    """What one lookup's answer does to an unknown delivery."""
    now = looked.now
    if isinstance(answer, Found):
        return MarkSent(answer.provider_message_id)
    if isinstance(answer, Absent):
        if looked.absent_at is None:
            # First "absent": maybe only not indexed yet. Ask again a settle delay later.
            return LookAgain(at=now + cfg.settle, absent_at=now)
        confirmed_at = looked.absent_at + cfg.settle
        if now < confirmed_at:
            return LookAgain(at=confirmed_at, absent_at=looked.absent_at)
        if looked.attempts >= max_attempts:
            return GiveUp("the provider never received the last attempt (reconciled: absent twice)")
        return Requeue(at=now)
    # Cannot tell: keep the first "absent" (a later absent still needs the settle delay after it).
    wait = cfg.settle * (6 if answer.lasting else 1)
    return LookAgain(at=now + wait, absent_at=looked.absent_at, note=f"not reconciled: {answer.detail}")


def result_label(answer: LookupResult, step: Step) -> str:
    """The metric label of one lookup: found, absent (first look), absent_confirmed, cannot_tell."""
    if isinstance(answer, Found):
        return "found"
    if isinstance(answer, CannotTell):
        return "cannot_tell"
    return "absent_confirmed" if isinstance(step, Requeue | GiveUp) else "absent"


class Budget:
    """Lookups allowed per minute (a token bucket), so one replica stays under the provider's limit."""

    def __init__(self, per_minute: float, *, now: float) -> None:
        self._rate = per_minute / 60.0
        self._cap = max(1.0, per_minute)
        self._tokens = self._cap
        self._at = now

    def take(self, wanted: int, *, now: float) -> int:
        """How many of ``wanted`` lookups may go now (each taken is spent)."""
        self._tokens = min(self._cap, self._tokens + (now - self._at) * self._rate)
        self._at = now
        granted = min(wanted, int(self._tokens))
        self._tokens -= granted
        return max(granted, 0)

    def give_back(self, unused: int) -> None:
        """Lookups taken but not made (fewer rows were due)."""
        self._tokens = min(self._cap, self._tokens + max(unused, 0))
