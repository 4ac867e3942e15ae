"""The rules' dry run: a rating (pasted, typed, or picked among the ones actions stored) goes through the
real engine with the customer's stored context, history and fatigue, and the answer says which rules
fired and what each would send. Nothing is written, published or counted: the caller reads through a
read-only transaction and this module returns data, never records.

Customer addresses are hidden (``HIDDEN``) unless the caller may see them (admins): the recipient of a
message to the customer and the contact details in every message's context. Staff addresses (the CSM,
support, a theme's team) stay: they are where the message would go.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from services.actions.engine import Decision, Policy, customer_message, decide
from services.actions.facts import CustomerContext, HistoryWindow, build_facts
from services.actions.ports import StoredRating, Stores
from services.actions.rulebook import RuleBook
from services.actions.rules import ActionType, RuleSet, holds, parse_rules
from services.actions.verbatims import Analysis, Taxonomy, guess_language, tokenize
from shared.events import AccountRef, Consent, CustomerRef, NotificationRequested, RatingSubmitted
from shared.scales import Metric, Sentiment, get_scale, nps_class, parse_score
from shared.vocabulary import ContactIn

#: What a hidden customer address reads as, in the recipient and in the rendered message.
HIDDEN = "•••"
#: A picked rating's comment: actions keeps whether there was one and its analysis, not its text.
COMMENT_NOT_KEPT = "…"
DRY_RUN_ID = "dry-run"

#: Who receives each kind of action's message; everything else goes to the customer.
RECIPIENT_ROLES: Mapping[str, str] = {
    ActionType.CSM_ALERT.value: "csm",
    ActionType.SUPPORT_CALLBACK.value: "support",
    ActionType.THEME_ALERT.value: "team",
    ActionType.SLACK.value: "chat",
    ActionType.WEBHOOK.value: "webhook",
    ActionType.SEGMENT_ALERT.value: "segment_owner",
}


# ---- the request ----------------------------------------------------------------------------------
class CustomerSpec(ContactIn):
    id: Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)] = DRY_RUN_ID


class AccountSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, StringConstraints(max_length=200)] | None = None
    tier: Annotated[str, StringConstraints(max_length=40, to_lower=True)] | None = None
    value: float | None = Field(default=None, ge=0)


class ConsentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contact: bool = False
    review: bool = False


class RatingSpec(BaseModel):
    """A rating as ``POST /v1/ratings`` takes it; ``themes`` and ``comment_sentiment``, when given,
    stand for the comment's analysis (a picked rating's stored one)."""

    model_config = ConfigDict(extra="forbid")

    rating_id: Annotated[str, StringConstraints(max_length=128)] | None = None
    metric: Metric
    scale: Annotated[str, StringConstraints(max_length=20)] | None = None
    score: int | float | str | bool
    customer: CustomerSpec = Field(default_factory=CustomerSpec)
    segment: dict[
        Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}$")],
        Annotated[str, StringConstraints(min_length=1, max_length=100)],
    ] = Field(default_factory=dict, max_length=20)
    touchpoint: Annotated[str, StringConstraints(max_length=100)] | None = None
    comment: Annotated[str, StringConstraints(max_length=5000)] | None = None
    account: AccountSpec | None = None
    occurred_at: AwareDatetime | None = None
    consent: ConsentSpec = Field(default_factory=ConsentSpec)
    source: Annotated[str, StringConstraints(max_length=100)] | None = None
    survey_id: Annotated[str, StringConstraints(max_length=128)] | None = None
    themes: list[Annotated[str, StringConstraints(max_length=64)]] | None = Field(default=None, max_length=20)
    comment_sentiment: Literal["negative", "neutral", "positive"] | None = None


class DryRunRequest(BaseModel):
    """A rating (``rating``) or a stored one (``rating_id``), and optionally a proposed rule set."""

    model_config = ConfigDict(extra="forbid")

    rating: RatingSpec | None = None
    rating_id: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    rules: dict[str, Any] | None = Field(
        default=None, description="A whole rule set, unsaved, to evaluate instead of the one in force"
    )

    @model_validator(mode="after")
    def _one_rating(self) -> DryRunRequest:
        if (self.rating is None) == (self.rating_id is None):
            raise ValueError("give either `rating` or `rating_id`")
        return self


# ---- the answer -----------------------------------------------------------------------------------
class RuleTrace(BaseModel):
    """One rule in evaluation order and what became of it on this rating."""

    rule_id: str
    group: str | None
    on: str
    status: Literal["fired", "no_match", "group_taken", "disabled", "other_trigger"]


class FollowUp(BaseModel):
    kind: str  # sla_escalation | resurvey_no_answer
    after_s: float


class AlertPreview(BaseModel):
    owner: str
    priority: str
    due_after_s: float | None
    escalates: bool


class MessagePreview(BaseModel):
    """A message the run would request from the notifier (now, or later from a durable timer)."""

    rule_id: str
    action: str
    index: int
    channel: str
    template: str
    locale: str
    recipient_role: str  # customer | csm | support | team | chat | webhook | segment_owner
    recipient: str | None
    send_after_s: float
    step: int | None = None  # a nurture sequence's step (1-based)
    steps: int | None = None
    transactional: bool
    priority: str
    context: dict[str, Any]


class DecisionPreview(BaseModel):
    rule_id: str
    action: str
    index: int
    outcome: str  # notified | scheduled | skipped_<why>
    customer_facing: bool
    alert: AlertPreview | None = None
    follow_ups: list[FollowUp] = Field(default_factory=list)


class DryRunResult(BaseModel):
    revision: int | None = Field(description="The revision evaluated; null for a proposed rule set")
    proposed: bool
    rating: dict[str, Any] = Field(
        description="The rating evaluated (a RatingSpec; addresses hidden below admin)"
    )
    facts: dict[str, Any]
    rules: list[RuleTrace]
    decisions: list[DecisionPreview]
    messages: list[MessagePreview]


class PickableRating(BaseModel):
    """A rating actions stored, as the dry run would use it (``rating``), with what it was."""

    rating: RatingSpec
    sentiment: str
    has_comment: bool


# ---- pure parts -----------------------------------------------------------------------------------
def to_rating(spec: RatingSpec, *, now: datetime) -> RatingSubmitted:
    """The rating as the collector would have published it (``ScaleError`` names a wrong scale or score)."""
    scale = get_scale(spec.metric, spec.scale)
    score = parse_score(scale, spec.score)
    sentiment = scale.sentiment(score)
    return RatingSubmitted(
        rating_id=spec.rating_id or DRY_RUN_ID,
        metric=spec.metric,
        scale=scale.name,
        score=score,
        normalized=scale.normalized(score),
        sentiment=sentiment,
        positive=sentiment is Sentiment.POSITIVE,
        nps_class=nps_class(score) if spec.metric is Metric.NPS else None,
        customer=CustomerRef(**spec.customer.model_dump()),
        segment={k: v.strip() for k, v in spec.segment.items()},
        touchpoint=spec.touchpoint,
        comment=(spec.comment or "").strip() or None,
        account=AccountRef(**spec.account.model_dump()) if spec.account else None,
        consent=Consent(**spec.consent.model_dump()),
        source=spec.source,
        survey_id=spec.survey_id,
        occurred_at=(spec.occurred_at or now).astimezone(UTC),
        received_at=now,
    )


def analysis_of(spec: RatingSpec, taxonomy: Taxonomy) -> Analysis | None:
    """The comment's themes and sentiment: given (a picked rating's stored ones) or analysed now."""
    if spec.themes is not None or spec.comment_sentiment is not None:
        language = guess_language(tokenize(spec.comment or ""), spec.customer.locale)
        sentiment = spec.comment_sentiment or "neutral"
        score = {"negative": -1.0, "neutral": 0.0, "positive": 1.0}[sentiment]
        return Analysis(themes=tuple(spec.themes or ()), sentiment=sentiment, score=score, language=language)
    if spec.comment and spec.comment.strip():
        return taxonomy.analyze(spec.comment, locale=spec.customer.locale)
    return None


def picked(stored: StoredRating) -> PickableRating:
    """A stored rating as a dry-run rating: what actions kept of it (no segment, address or comment text)."""
    spec = RatingSpec(
        rating_id=stored.rating_id,
        metric=Metric(stored.metric),
        scale=stored.scale,
        score=stored.score,
        customer=CustomerSpec(id=stored.customer_id),
        occurred_at=stored.occurred_at,
        survey_id=stored.survey_id,
        comment=COMMENT_NOT_KEPT if stored.has_comment else None,
        themes=list(stored.themes),
        comment_sentiment=_sentiment(stored.comment_sentiment),
    )
    return PickableRating(rating=spec, sentiment=stored.sentiment, has_comment=stored.has_comment)


def _sentiment(value: str | None) -> Literal["negative", "neutral", "positive"] | None:
    if value == "negative":
        return "negative"
    if value == "positive":
        return "positive"
    return "neutral" if value == "neutral" else None


def trace(rules: RuleSet, facts: Mapping[str, Any]) -> list[RuleTrace]:
    """Every rule in file order with its fate, by the engine's own logic (``rules.evaluate``)."""
    taken: set[str] = set()
    out: list[RuleTrace] = []
    for rule in rules.rules:
        status: Literal["fired", "no_match", "group_taken", "disabled", "other_trigger"]
        if rule.on != "rating":
            status = "other_trigger"
        elif rule.group is not None and rule.group in taken:
            status = "group_taken"
        elif not rule.enabled:
            status = "disabled"
        elif holds(rule.when, facts):
            status = "fired"
            if rule.group is not None:
                taken.add(rule.group)
        else:
            status = "no_match"
        out.append(RuleTrace(rule_id=rule.id, group=rule.group, on=rule.on, status=status))
    return out


def hide_contact(context: Mapping[str, Any]) -> dict[str, Any]:
    """The context with the customer's email address and phone number replaced by ``HIDDEN``."""
    out = dict(context)
    customer = out.get("customer")
    if isinstance(customer, Mapping):
        out["customer"] = {k: (HIDDEN if k in ("email", "phone") and v else v) for k, v in customer.items()}
    return out


def _echo(spec: RatingSpec, *, reveal: bool) -> dict[str, Any]:
    body = spec.model_dump(mode="json", exclude_none=True)
    return body if reveal else hide_contact(body)


def _address(note: NotificationRequested) -> str | None:
    r = note.recipient
    return r.email or r.phone or r.url


def _message(
    note: NotificationRequested,
    *,
    index: int,
    after: timedelta,
    reveal: bool,
    sequence: Mapping[str, Any] | None = None,
) -> MessagePreview:
    role = RECIPIENT_ROLES.get(note.action, "customer")
    address = _address(note)
    hide = not reveal
    step, steps = (sequence or {}).get("step"), (sequence or {}).get("steps")
    return MessagePreview(
        rule_id=note.rule_id,
        action=note.action,
        index=index,
        channel=note.channel.value,
        template=note.template,
        locale=note.locale,
        recipient_role=role,
        recipient=HIDDEN if hide and role == "customer" and address else address,
        send_after_s=after.total_seconds(),
        step=int(step) if step is not None else None,
        steps=int(steps) if steps is not None else None,
        transactional=note.transactional,
        priority=note.priority,
        context=hide_contact(note.context) if hide else dict(note.context),
    )


class _Run:
    """What one decision becomes in the answer: its summary and its messages, now and scheduled."""

    def __init__(
        self,
        *,
        rating: RatingSubmitted,
        ctx: CustomerContext | None,
        now: datetime,
        policy: Policy,
        reveal: bool,
    ) -> None:
        self.rating, self.ctx, self.now, self.policy, self.reveal = rating, ctx, now, policy, reveal

    def decision(self, d: Decision) -> DecisionPreview:
        alert = None
        if d.alert is not None:
            due = d.alert.due_at
            alert = AlertPreview(
                owner=d.alert.owner_email,
                priority=d.alert.priority,
                due_after_s=(due - self.now).total_seconds() if due else None,
                escalates=any(t.kind == "sla_escalation" for t in d.timers),
            )
        follow_ups = [
            FollowUp(kind=t.kind, after_s=(t.due_at - self.now).total_seconds())
            for t in d.timers
            if t.kind != "send"
        ]
        return DecisionPreview(
            rule_id=d.rule_id,
            action=d.action.value,
            index=d.index,
            outcome=d.outcome,
            customer_facing=d.customer_facing,
            alert=alert,
            follow_ups=follow_ups,
        )

    def messages(self, d: Decision) -> list[MessagePreview]:
        now = timedelta(0)
        out = [_message(n, index=d.index, after=now, reveal=self.reveal) for n in d.notifications]
        for timer in d.timers:
            if timer.kind != "send":
                continue
            built = customer_message(
                nid=timer.timer_id,
                payload=timer.payload,
                ctx=self.ctx,
                rating=self.rating,
                now=timer.due_at,
                policy=self.policy,
                survey_key=(d.rule_id, self.rating.rating_id, d.index),
            )
            if built is None:
                continue
            out.append(
                _message(
                    built.note,
                    index=d.index,
                    after=timer.due_at - self.now,
                    reveal=self.reveal,
                    sequence=timer.payload.get("sequence"),
                )
            )
        return out


# ---- the use case ---------------------------------------------------------------------------------
class DryRunner:
    """Runs the engine on a rating for whoever edits the rules; built once by the composition root."""

    def __init__(
        self,
        *,
        rulebook: RuleBook,
        taxonomy: Taxonomy,
        policy: Policy,
        history: HistoryWindow,
        clock: Callable[[], datetime],
    ) -> None:
        self._rulebook = rulebook
        self._taxonomy = taxonomy
        self._policy = policy
        self._history = history
        self._clock = clock

    async def recent(self, stores: Stores, *, limit: int) -> list[PickableRating]:
        return [picked(s) for s in await stores.ratings.stored(limit=limit)]

    async def run(self, stores: Stores, request: DryRunRequest, *, reveal: bool) -> DryRunResult:
        """``RuleFileError`` for a broken proposed set, ``ScaleError`` for a wrong score, ``LookupError``
        for an unknown ``rating_id``; ``stores`` should be read-only (nothing here writes anyway)."""
        rules, revision = await self._rules(stores, request.rules)
        spec = request.rating or await self._stored(stores, str(request.rating_id))
        now = self._clock()
        rating = to_rating(spec, now=now)
        found = await stores.ratings.customer_facts(
            customer_id=rating.customer.id,
            since=rating.occurred_at - timedelta(days=self._history.days),
            per_customer=self._history.per_customer,
            now=now,
        )
        analysis = analysis_of(spec, self._taxonomy)
        history = self._history.of(rating, found.past)
        decisions = decide(
            rules=rules,
            rating=rating,
            ctx=found.context,
            history=history,
            now=now,
            policy=self._policy,
            fatigue=found.fatigue,
            analysis=analysis,
        )
        facts = build_facts(rating, found.context, history, analysis)
        run = _Run(rating=rating, ctx=found.context, now=now, policy=self._policy, reveal=reveal)
        return DryRunResult(
            revision=revision,
            proposed=request.rules is not None,
            rating=_echo(spec, reveal=reveal),
            facts=facts,
            rules=trace(rules, facts),
            decisions=[run.decision(d) for d in decisions],
            messages=[m for d in decisions for m in run.messages(d)],
        )

    async def _rules(self, stores: Stores, proposed: Mapping[str, Any] | None) -> tuple[RuleSet, int | None]:
        if proposed is not None:
            document = {k: v for k, v in proposed.items() if k not in ("revision", "origin")}
            return parse_rules(document, origin="request"), None
        current = await self._rulebook.at(
            rule_sets=stores.rule_sets, latest=await stores.rule_sets.latest_version()
        )
        return current.rules, current.version

    async def _stored(self, stores: Stores, rating_id: str) -> RatingSpec:
        found: Sequence[StoredRating] = await stores.ratings.stored(limit=1, rating_id=rating_id)
        if not found:
            raise LookupError(rating_id)
        return picked(found[0]).rating
