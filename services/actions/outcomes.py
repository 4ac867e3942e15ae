"""What decisions leave behind: the decision-log row (one builder for ratings, segment alerts and timers)
and the customer's fatigue once a rating's decisions are taken. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from services.actions.engine import Decision, Fatigue
from shared.events import NotificationRequested


@dataclass(frozen=True, slots=True)
class DecisionRow:
    """One line of ``actions.decisions``: what a rule (or a fired timer) decided, and what came of it."""

    decision_id: str
    rule_id: str
    action: str
    rating_id: str | None
    customer_id: str | None
    notification_id: str | None
    created_at: datetime
    outcome: str
    channel: str | None
    customer_facing: bool
    ref: str | None


class Decided(Protocol):
    """A rule's decision or a fired timer: both are logged the same way."""

    @property
    def rule_id(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def outcome(self) -> str: ...
    @property
    def customer_facing(self) -> bool: ...
    @property
    def notification(self) -> NotificationRequested | None: ...


def decision_row(
    decided: Decided,
    *,
    decision_id: str,
    rating_id: str | None,
    customer_id: str | None,
    ref: str | None,
    now: datetime,
) -> DecisionRow:
    """The log row; ``notified`` whenever a message went out, whatever the decision called its outcome."""
    note = decided.notification
    return DecisionRow(
        decision_id=decision_id,
        rule_id=decided.rule_id,
        action=str(decided.action),
        rating_id=rating_id,
        customer_id=customer_id,
        notification_id=note.notification_id if note else None,
        created_at=now,
        outcome="notified" if note else decided.outcome,
        channel=note.channel.value if note else None,
        customer_facing=decided.customer_facing,
        ref=ref,
    )


def decision_id(rule_id: str, source_id: str, index: int) -> str:
    """Deterministic per rule, rating (or segment alert) and action, so a replay finds its own row."""
    return f"{rule_id}/{source_id}/{index}"


def after_decisions(fatigue: Fatigue, decisions: Sequence[Decision], *, now: datetime) -> Fatigue:
    """The customer's fatigue once these decisions are taken, for their next rating in the same batch.

    A rule that acted (not skipped) starts its cooldown now; customer messages sent now count toward
    the daily cap; a nurture enrolment makes its sequence active.
    """
    last_fired = dict(fatigue.last_fired)
    sent = fatigue.sent_24h
    sequences = set(fatigue.active_sequences)
    for d in decisions:
        if d.skipped is None:
            last_fired[d.rule_id] = now
        if d.customer_facing and d.notifications:
            sent += len(d.notifications)
        if d.enrolment is not None:
            sequences.add(d.enrolment.sequence)
    return Fatigue(last_fired=last_fired, sent_24h=sent, active_sequences=frozenset(sequences))
