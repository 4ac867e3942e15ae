"""The actions use cases, on the stores (ports): a consumed batch of ratings and segment alerts becomes
decisions, alerts, timers and messages; due timers fire.

The decisions themselves are the pure engine's (``engine``, ``timers``); here the facts are loaded, a
customer's fatigue carries from one rating to the next in the batch, the outcomes are written and the
records to publish are returned. The caller owns the transaction: the consumer loop (with its offsets)
or the scheduler (which publishes before it commits).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from prometheus_client import Counter

from services.actions.engine import (
    AlertDraft,
    Decision,
    EnrolmentDraft,
    Fatigue,
    Policy,
    TimerDraft,
    decide,
    decide_segment,
)
from services.actions.facts import CustomerContext, History, HistoryWindow, PastRating
from services.actions.health_handler import HealthHandler
from services.actions.outcomes import DecisionRow, after_decisions, decision_id, decision_row
from services.actions.ports import Enrolled, Stores
from services.actions.publishing import decided_record, notification_record
from services.actions.rulebook import RuleBook
from services.actions.survey_handler import SurveyHandler
from services.actions.timers import (
    RESURVEY_NO_ANSWER,
    SEND,
    SLA_ESCALATION,
    AlertState,
    DueTimer,
    Fired,
    fire_escalation,
    fire_no_answer,
    fire_send,
)
from services.actions.verbatims import Analysis, Taxonomy
from shared import tracing
from shared.consumer import Received
from shared.envelope import OutgoingRecord
from shared.events import (
    InteractionRecorded,
    NotificationOutcome,
    RatingSubmitted,
    SegmentAlert,
    UsageObserved,
)
from shared.topics import Topics

RULE_HITS = Counter(
    "csat_rule_hits_total", "Rule actions decided, by rule, action and outcome", ["rule", "action", "outcome"]
)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class _Outcomes:
    """What a batch of ratings decided, gathered for one write and one publish."""

    topics: Topics
    rows: list[DecisionRow] = field(default_factory=list)
    alerts: list[AlertDraft] = field(default_factory=list)
    timers: list[TimerDraft] = field(default_factory=list)
    enrolments: list[EnrolmentDraft] = field(default_factory=list)
    records: list[OutgoingRecord] = field(default_factory=list)

    def add(self, rating: RatingSubmitted, decisions: Sequence[Decision], *, now: datetime) -> None:
        cid = rating.customer.id
        for d in decisions:
            RULE_HITS.labels(d.rule_id, d.action.value, d.outcome).inc()
            row = decision_row(
                d,
                decision_id=decision_id(d.rule_id, rating.rating_id, d.index),
                rating_id=rating.rating_id,
                customer_id=cid,
                ref=d.alert.alert_id if d.alert else None,
                now=now,
            )
            self.rows.append(row)
            if d.alert is not None:
                self.alerts.append(d.alert)
            self.timers.extend(d.timers)
            if d.enrolment is not None:
                self.enrolments.append(d.enrolment)
            self.records.extend(notification_record(self.topics, note, key=cid) for note in d.notifications)
            if d.skipped is None:
                self.records.append(decided_record(self.topics, row, key=cid))


class ActionsHandler:
    """The consumer's use case: ratings and segment alerts in, decisions stored, messages out."""

    def __init__(
        self,
        *,
        rulebook: RuleBook,
        taxonomy: Taxonomy,
        policy: Policy,
        topics: Topics,
        history: HistoryWindow,
        surveys: SurveyHandler | None = None,
        clock: Callable[[], datetime] = utc_now,
        health: HealthHandler | None = None,
    ) -> None:
        self._surveys = surveys
        self._health = health
        self._rulebook = rulebook
        self._taxonomy = taxonomy
        self._policy = policy
        self._topics = topics
        self._history = history
        self._clock = clock

    async def __call__(self, stores: Stores, batch: Sequence[Received]) -> list[OutgoingRecord]:
        now = self._clock()
        out: list[OutgoingRecord] = []
        alerts = [r.envelope.data for r in batch if isinstance(r.envelope.data, SegmentAlert)]
        if alerts:
            out += await self._on_segment_alerts(stores, alerts, now)
        ratings = [r.envelope.data for r in batch if isinstance(r.envelope.data, RatingSubmitted)]
        if ratings:
            out += await self._on_ratings(stores, ratings, now)
        if self._surveys is not None:
            out += await self._on_surveys(stores, self._surveys, batch, ratings, now)
        usage = [r.envelope.data for r in batch if isinstance(r.envelope.data, UsageObserved)]
        if self._health is not None and (ratings or usage):
            # After the rules: the alerts a rating opened count in its account's health.
            out += await self._health.on_batch(stores, ratings=ratings, observations=usage, now=now)
        return out

    async def _on_surveys(
        self,
        stores: Stores,
        surveys: SurveyHandler,
        batch: Sequence[Received],
        ratings: list[RatingSubmitted],
        now: datetime,
    ) -> list[OutgoingRecord]:
        """Interactions become invitations (sent by the scheduler); answers and outcomes update them and
        return their outcome events, published with the batch's other records before its commit."""
        out: list[OutgoingRecord] = []
        # Outcomes before answers: the notifier reports an outcome right after sending, minutes before
        # anyone answers, so a batch holding both ends as if they came in two batches, in that order.
        outcomes = [r.envelope.data for r in batch if isinstance(r.envelope.data, NotificationOutcome)]
        if outcomes:
            out += await surveys.on_outcomes(stores, outcomes, now)
        if ratings:
            out += await surveys.on_answers(stores, ratings, now)
        interactions = [r.envelope.data for r in batch if isinstance(r.envelope.data, InteractionRecorded)]
        if interactions:
            await surveys.on_interactions(stores, interactions, now)
        return out

    async def _on_segment_alerts(
        self, stores: Stores, alerts: list[SegmentAlert], now: datetime
    ) -> list[OutgoingRecord]:
        rules = (await self._rulebook.current(rule_sets=stores.rule_sets)).rules
        planned = [
            (a, d) for a in alerts for d in decide_segment(rules=rules, alert=a, now=now, policy=self._policy)
        ]
        ids = [decision_id(d.rule_id, a.alert_id, d.index) for a, d in planned]
        done = await stores.decisions.existing(ids=ids)
        rows: list[DecisionRow] = []
        out: list[OutgoingRecord] = []
        for (alert, d), did in zip(planned, ids, strict=True):
            if did in done:
                continue  # the scorer published this alert again
            done.add(did)
            RULE_HITS.labels(d.rule_id, d.action.value, d.outcome).inc()
            rows.append(
                decision_row(d, decision_id=did, rating_id=None, customer_id=None, ref=alert.segment, now=now)
            )
            out.extend(notification_record(self._topics, note, key=alert.segment) for note in d.notifications)
        await stores.decisions.insert(rows=rows)
        return out

    async def _on_ratings(
        self, stores: Stores, ratings: list[RatingSubmitted], now: datetime
    ) -> list[OutgoingRecord]:
        analyses: dict[str, Analysis] = {
            r.rating_id: self._taxonomy.analyze(r.comment, locale=r.customer.locale)
            for r in ratings
            if r.comment
        }
        latest: dict[str, RatingSubmitted] = {}
        for r in ratings:  # the newest revision of each rating in the batch (a survey re-click)
            held = latest.get(r.rating_id)
            if held is None or r.revision > held.revision:
                latest[r.rating_id] = r
        fresh_ids = await stores.ratings.insert_new(ratings=list(latest.values()), analyses=analyses)
        revised = [r for r in latest.values() if r.revision and r.rating_id not in fresh_ids]
        if revised:
            fresh_ids |= await stores.ratings.revise(ratings=revised, analyses=analyses)
        fresh = [r for r in latest.values() if r.rating_id in fresh_ids]
        if not fresh:
            return []
        await self._rulebook.ensure_seeded(rule_sets=stores.rule_sets)
        # A claimed customer id (publishable key, no proof) reads no context, history or fatigue of
        # that customer and cancels none of their re-surveys: anyone can type any id into a widget.
        verified = [r for r in fresh if r.customer_verified]
        # One round trip: answered re-surveys cancelled, rules version, contexts, history, fatigue.
        facts = await stores.ratings.batch_facts(
            customer_ids=[r.customer.id for r in verified],
            since=min(r.occurred_at for r in fresh) - timedelta(days=self._history.days),
            per_customer=self._history.per_customer,
            now=now,
            commented_customers=[r.customer.id for r in verified if r.comment and r.comment.strip()],
            survey_ids=[r.survey_id for r in verified if r.survey_id],
        )
        rules = (await self._rulebook.at(rule_sets=stores.rule_sets, latest=facts.rules_version)).rules
        fatigue = dict(facts.fatigue)
        health = await self._health.rule_facts(stores, verified) if self._health is not None else {}
        outcomes = _Outcomes(self._topics)
        for rating in sorted(fresh, key=lambda r: (r.occurred_at, r.rating_id)):
            tracing.follow(rating)  # what this rating causes continues its trace
            cid = rating.customer.id
            known = rating.customer_verified
            before = fatigue.get(cid, Fatigue()) if known else Fatigue()
            decisions = decide(
                rules=rules,
                rating=rating,
                ctx=facts.contexts.get(cid) if known else None,
                history=self._history_of(rating, facts.past.get(cid, []) if known else []),
                now=now,
                policy=self._policy,
                fatigue=before,
                analysis=analyses.get(rating.rating_id),
                health=health.get(rating.rating_id) if known else None,
            )
            if rating.revision:
                decisions = await self._first_per_rule(stores, rating, decisions)
            if known:
                fatigue[cid] = after_decisions(before, decisions, now=now)
            outcomes.add(rating, decisions, now=now)
        await stores.decisions.insert_outcomes(
            decisions=outcomes.rows, alerts=outcomes.alerts, timers=outcomes.timers, now=now
        )
        await stores.enrolments.enrol(enrolments=outcomes.enrolments, now=now)
        return outcomes.records

    @staticmethod
    async def _first_per_rule(
        stores: Stores, rating: RatingSubmitted, decisions: Sequence[Decision]
    ) -> list[Decision]:
        """A re-click's newer answer is a new fact once, but each rule decides once per rating: only
        rules that had not decided on an earlier answer act (a 5 corrected to 1 alerts; a 1 corrected
        to 2 does not alert twice). Every id derives from (rule, rating, action), so this holds on replay.
        """
        ids = [decision_id(d.rule_id, rating.rating_id, d.index) for d in decisions]
        done = await stores.decisions.existing(ids=ids)
        return [d for d, i in zip(decisions, ids, strict=True) if i not in done]

    def _history_of(self, rating: RatingSubmitted, past: Sequence[PastRating]) -> History:
        return self._history.of(rating, past)


# ---- timers ---------------------------------------------------------------------------------------


class TimerFiring(NamedTuple):
    timer: DueTimer
    fired: Fired


@dataclass(frozen=True, slots=True)
class Tick:
    """The timers one tick fired (and what came of each), and the records to publish before committing."""

    firings: list[TimerFiring]
    records: list[OutgoingRecord]


@dataclass(slots=True)
class _TickState:
    """What the claimed timers need, read in a few queries for the whole tick."""

    alerts: dict[str, AlertState]
    contexts: dict[str, CustomerContext]
    sent: dict[str, int]
    enrolments: dict[Enrolled, str]

    @classmethod
    async def load(cls, stores: Stores, due: list[DueTimer], now: datetime) -> _TickState:
        alert_ids = [str(t.payload.get("alert_id") or t.ref) for t in due if t.kind == SLA_ESCALATION]
        customers = [t.customer_id for t in due if t.kind == SEND and t.customer_id]
        return cls(
            alerts=await stores.alerts.lock(alert_ids=alert_ids),
            contexts=await stores.customers.contexts(customer_ids=customers),
            sent=await stores.decisions.sent_last_24h(customer_ids=customers, now=now),
            enrolments=await stores.enrolments.statuses(customer_ids=customers),
        )


class TimerHandler:
    """The scheduler's use case: claim due timers, fire each, write what came of them."""

    def __init__(self, *, topics: Topics, policy: Policy) -> None:
        self._topics = topics
        self._policy = policy

    async def __call__(self, stores: Stores, *, now: datetime, limit: int) -> Tick:
        due = await stores.timers.claim_due(now=now, limit=limit)
        if not due:
            return Tick([], [])
        state = await _TickState.load(stores, due, now)
        firings: list[TimerFiring] = []
        rows: list[DecisionRow] = []
        follow_ups: list[TimerDraft] = []
        records: list[OutgoingRecord] = []
        for timer in due:
            fired = await self._fire(stores, timer, now, state)
            firings.append(TimerFiring(timer, fired))
            follow_ups.extend(fired.timers)
            key = timer.customer_id or timer.ref
            row = decision_row(
                fired,
                decision_id=f"timer/{timer.timer_id}",
                rating_id=timer.payload.get("rating_id"),
                customer_id=timer.customer_id,
                ref=timer.timer_id,
                now=now,
            )
            rows.append(row)
            records.extend(notification_record(self._topics, n, key=key) for n in fired.notifications)
            if row.notification_id is not None:
                records.append(decided_record(self._topics, row, key=key))
        await stores.timers.mark_fired(outcomes={f.timer.timer_id: f.fired.outcome for f in firings}, now=now)
        escalated = [f.fired.escalated_alert for f in firings if f.fired.escalated_alert]
        await stores.alerts.mark_escalated(alert_ids=escalated, now=now)
        completed = [
            Enrolled(f.timer.customer_id, f.fired.completes_sequence)
            for f in firings
            if f.fired.completes_sequence and f.timer.customer_id
        ]
        await stores.enrolments.complete(enrolled=completed)
        await stores.timers.insert(timers=follow_ups, now=now)
        await stores.decisions.insert(rows=rows)
        return Tick(firings, records)

    async def _fire(self, stores: Stores, timer: DueTimer, now: datetime, state: _TickState) -> Fired:
        if timer.kind == SLA_ESCALATION:
            alert = state.alerts.get(str(timer.payload.get("alert_id") or timer.ref))
            return fire_escalation(timer, alert=alert, now=now, policy=self._policy)
        if timer.kind == RESURVEY_NO_ANSWER:
            answered = await stores.timers.resurvey_answered(timer=timer)
            return fire_no_answer(timer, answered=answered, now=now, policy=self._policy)
        if timer.kind == SEND and timer.customer_id:
            cid = timer.customer_id
            sequence = timer.payload.get("sequence")
            status = state.enrolments.get(Enrolled(cid, str(sequence["name"]))) if sequence else None
            fired = fire_send(
                timer,
                ctx=state.contexts.get(cid),
                sent_24h=state.sent.get(cid, 0),
                enrolment_status=status,
                now=now,
                policy=self._policy,
            )
            if fired.notifications:
                state.sent[cid] = state.sent.get(cid, 0) + 1
            return fired
        return Fired("skipped_unknown_kind", str(timer.payload.get("rule_id", "")), timer.kind)
