"""Account health, recomputed as the inputs arrive: usage observations, ratings, CSM alerts.

A consumed batch's new observations and answers are stored (replays dedupe on their ids), contacts
join their accounts, and every subject whose inputs changed is recomputed by the pure model
(``services.actions.health``): an account pools its contacts' evidence; a customer in no account is
its own subject. The health is computed *as of the newest input's time*, not the wall clock, so
replaying the topics recomputes the same scores. A point of history is kept when the score or band
moves, a ``csat.health.changed.v1`` record is published then, and an account's fall to at-risk or
critical opens one CSM alert with the explanation (its id derived from the transition's sequence number, so a
recomputation or a replay never opens a second one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from services.actions.health.model import Band, HealthModel, parse_health_model
from services.actions.health.score import HealthResult
from services.actions.health.transitions import Step, recompute
from services.actions.ports import HealthAlert, HealthSave, Stores, Subject
from shared import events as ev
from shared.envelope import OutgoingRecord, encode
from shared.events import HealthChanged, HealthComponentOut, RatingSubmitted, UsageObserved
from shared.topics import Topics

#: The rule id of the default "health falls" alert (and what ``open_alerts`` leaves out: a health
#: alert must not lower the health that raised it).
HEALTH_RULE = "health_falls"
ALERTING_BANDS = frozenset({Band.AT_RISK, Band.CRITICAL})


def explanation(result: HealthResult) -> list[dict[str, object]]:
    """The explanation as stored and served: one dict per component, points adding up to the score.
    Field by field (what ``dataclasses.asdict`` gave, without its recursive deep copy: once per
    recomputation, it was about 7% of a batch's CPU)."""
    return [
        {
            "id": c.id,
            "status": c.status,
            "value": c.value,
            "normalised": c.normalised,
            "weight": c.weight,
            "max_points": c.max_points,
            "points": c.points,
            "reason": c.reason,
            "detail": dict(c.detail),
        }
        for c in result.components
    ]


def health_alert_id(subject: Subject, seq: int) -> str:
    return f"health:{subject.kind}:{subject.id}:{seq}"


class HealthHandler:
    """Stores the inputs of a batch and recomputes the subjects they touch."""

    def __init__(
        self,
        *,
        model: HealthModel,
        topics: Topics,
        default_owner: str,
        model_version: int | None = None,
    ) -> None:
        self._file_model = model
        self._model = model
        self._topics = topics
        self._default_owner = default_owner
        self._model_version = model_version

    def _use_model(self, latest: tuple[int, Any | None] | None) -> None:
        """The newest model saved through the admin API (validated when saved), else the file's; read with
        the batch's evidence (``HealthStore.inputs``), its document only when its version is new to us."""
        if latest is None:
            self._model, self._model_version = self._file_model, None
        elif latest[0] != self._model_version:
            self._model = parse_health_model(latest[1], origin=f"health model v{latest[0]}")
            self._model_version = latest[0]

    async def on_batch(
        self,
        stores: Stores,
        *,
        ratings: Sequence[RatingSubmitted] = (),
        observations: Sequence[UsageObserved] = (),
        now: datetime,
    ) -> list[OutgoingRecord]:
        health = stores.health
        fresh_obs = await health.add_observations(observations=observations)
        # A claimed customer id (publishable key) is anyone's to type: it does not move a health.
        # Also joins each fresh rating's customer to its account, in the same statement.
        fresh_ratings = await health.add_ratings(ratings=[r for r in ratings if r.customer_verified])
        await health.join(
            members=[(o.account_id, o.customer_id) for o in fresh_obs if o.account_id and o.customer_id]
        )
        subjects: set[Subject] = set()
        loose: set[str] = set()
        for o in fresh_obs:
            if o.account_id:
                subjects.add(Subject("account", o.account_id))
            elif o.customer_id:
                loose.add(o.customer_id)
        for r in fresh_ratings:
            if r.account is not None and r.account.id:
                subjects.add(Subject("account", r.account.id))
            loose.add(r.customer.id)
        if not subjects and not loose:
            return []
        # Ratings also open CSM alerts (the rules): their customers' accounts count them. The loose
        # customers' subjects (their accounts, else themselves) are resolved in the recomputation's read.
        return await self.recompute(
            stores, sorted(subjects, key=lambda s: (s.kind, s.id)), customers=sorted(loose), now=now
        )

    async def on_alert_change(
        self, stores: Stores, *, customer_id: str, now: datetime
    ) -> list[OutgoingRecord]:
        """An alert of this customer was acknowledged or resolved: ``open_alerts`` changed for the
        customer's accounts (or the customer alone)."""
        accounts = (await stores.health.accounts_of(customer_ids=[customer_id])).get(customer_id)
        subjects = (
            [Subject("account", a) for a in accounts] if accounts else [Subject("customer", customer_id)]
        )
        return await self.recompute(stores, subjects, now=now)

    async def rule_facts(
        self, stores: Stores, ratings: Sequence[RatingSubmitted]
    ) -> dict[str, dict[str, Any]]:
        """The ``health.*`` facts of each rating's subject (its account, else the customer's first
        account, else the customer), as stored before this batch: by rating id."""
        if not ratings:
            return {}
        loose = [r.customer.id for r in ratings if not (r.account and r.account.id)]
        accounts = await stores.health.accounts_of(customer_ids=loose) if loose else {}
        subject_of: dict[str, Subject] = {}
        for r in ratings:
            if r.account is not None and r.account.id:
                subject_of[r.rating_id] = Subject("account", r.account.id)
            elif accounts.get(r.customer.id):
                subject_of[r.rating_id] = Subject("account", accounts[r.customer.id][0])
            else:
                subject_of[r.rating_id] = Subject("customer", r.customer.id)
        facts = await stores.health.rule_facts(subjects=list(subject_of.values()))
        return {rid: facts[s] for rid, s in subject_of.items() if s in facts}

    async def recompute(
        self, stores: Stores, subjects: Sequence[Subject], *, customers: Sequence[str] = (), now: datetime
    ) -> list[OutgoingRecord]:
        """Recompute the subjects (in this order; with ``customers``, theirs too and all in (kind, id)
        order); returns a health-changed record for each whose score or band moved. Reads (with the
        current model) and writes are one statement each for all of them: a subject's recomputation reads
        nothing another one writes (the health's own alerts are no input)."""
        health = stores.health
        inputs = await health.inputs(
            subjects=subjects, customers=customers, known_version=self._model_version
        )
        self._use_model(inputs.model)
        evidence, states = inputs.evidence, inputs.states
        if customers:
            subjects = sorted(evidence, key=lambda s: (s.kind, s.id))
        moved = [s for s in subjects if evidence[s].ratings or evidence[s].observations]
        if not moved:
            return []
        saves: list[HealthSave] = []
        falls: list[tuple[Subject, Step]] = []
        out: list[OutgoingRecord] = []
        for subject in moved:
            found = evidence[subject]
            state, history = states.get(subject, (None, []))
            as_of = max([r.occurred_at for r in found.ratings] + [o.observed_at for o in found.observations])
            if state is not None and as_of < state.at:
                as_of = state.at  # an alert changed, not the data: recompute as of the last instant
            step = recompute(self._model, found, as_of=as_of, state=state, history=history)
            saves.append(
                HealthSave(
                    subject=subject,
                    state=step.state,
                    point=step.point,
                    delta_30d=step.delta_30d,
                    model_version=self._model_version,
                    explanation=explanation(step.result),
                )
            )
            if (
                subject.kind == "account"
                and step.change is not None
                and step.change.fell
                and step.change.band in ALERTING_BANDS
            ):
                # Accounts only: a lone customer's health often rests on their open alerts alone, so the
                # rules' own alert on a bad answer would be doubled by a health alert.
                falls.append((subject, step))
            if step.point is not None or step.change is not None:
                out.append(self._record(subject, step, state_score=state.score if state else None))
        await health.save(saves=saves)
        if falls:
            await self._alert(stores, falls, owners=inputs.owners, now=now)
        return out

    async def _alert(
        self,
        stores: Stores,
        falls: Sequence[tuple[Subject, Step]],
        *,
        owners: Mapping[str, tuple[str | None, str | None]],
        now: datetime,
    ) -> None:
        """One CSM alert per fall, to its account's owner (read with the inputs), written once for the
        batch."""
        alerts: list[HealthAlert] = []
        for subject, step in falls:
            change = step.change
            assert change is not None
            email, name = owners.get(subject.id, (None, None)) if subject.kind == "account" else (None, None)
            alerts.append(
                HealthAlert(
                    alert_id=health_alert_id(subject, change.seq),
                    subject=subject,
                    owner_email=email or self._default_owner,
                    owner_name=name,
                    priority="high" if change.band is Band.CRITICAL else "normal",
                    context={
                        "kind": "health",
                        "subject_kind": subject.kind,
                        "subject_id": subject.id,
                        "score": change.score,
                        "band": change.band,
                        "previous_band": change.previous_band,
                        "previous_score": change.previous_score,
                        "delta_30d": change.delta_30d,
                        "components": explanation(step.result),
                    },
                )
            )
        await stores.health.open_alerts(alerts=alerts, now=now)

    def _record(self, subject: Subject, step: Step, *, state_score: float | None) -> OutgoingRecord:
        change = step.change
        result = step.result
        data = HealthChanged(
            subject_kind=subject.kind,
            subject_id=subject.id,
            at=result.as_of,
            score=result.score,
            band=result.band,
            previous_score=state_score,
            previous_band=change.previous_band if change else result.band,
            delta_30d=step.delta_30d,
            transition=step.state.transitions,
            fell=bool(change and change.fell),
            model_version=self._model_version,
            components=[
                HealthComponentOut(
                    id=c.id,
                    status=c.status,
                    value=c.value,
                    normalised=c.normalised,
                    weight=c.weight,
                    max_points=c.max_points,
                    points=c.points,
                    reason=c.reason,
                )
                for c in result.components
            ],
        )
        return encode(
            topic=self._topics.health,
            event_type=ev.HEALTH_CHANGED,
            source="/actions",
            # as_of alone may repeat (an alert changed, not the data): the state's figures complete it
            event_id=f"health:{subject.kind}:{subject.id}:{result.as_of.isoformat()}:"
            f"{step.state.transitions}:{result.score}",
            data=data,
            key=subject.id,
            subject=subject.id,
            time=result.as_of,
        )
