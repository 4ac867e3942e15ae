"""Declarative rules: YAML (or JSON) validated on load, evaluated against flat facts. Pure code.

A rule is ``when`` (every condition must hold) and ``actions`` (what to do). A condition names a fact
(``sentiment``, ``score``, ``segment.store``, ``account.tier``, ``history.negative_30d``, ``themes``...)
and a matcher: a scalar (equality), a list (one of), or operators ``eq ne in not_in lt lte gt gte
present contains contains_any``. ``any: [...]`` holds when one of its condition maps holds, ``all:
[...]`` when all do, ``not: {...}`` when its map does not. Rules sharing a ``group`` are exclusive: only
the first matching one (in file order) fires. Every error names the rule and the field at fault.
"""

from __future__ import annotations

import difflib
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from services.actions.yamlio import load_yaml
from shared.events import DriftDetails
from shared.security.ssrf import OutboundPolicy, OutboundRefused, check_addresses, parse_outbound_url
from shared.vocabulary import TEMPLATE_NAMES

NOTIFICATION_NAMESPACE = uuid.UUID("6f1c2b4e-9d1a-4d7e-9a59-0c8a0d3c5e11")

_DURATION = re.compile(r"^(\d+)\s*(s|m|h|d|w)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_OPERATORS = {"eq", "ne", "in", "not_in", "lt", "lte", "gt", "gte", "present", "contains", "contains_any"}

#: The template names the notifier ships; rules may use only these.
TEMPLATES = frozenset(TEMPLATE_NAMES)


def parse_duration(text: str | int) -> timedelta:
    """``30m``, ``24h``, ``7d`` or a number of seconds."""
    if isinstance(text, int):
        if text < 0:
            raise ValueError("a duration cannot be negative")
        return timedelta(seconds=text)
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"duration {text!r} must look like 90s, 30m, 24h, 7d or 2w")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def _duration(value: Any) -> Any:
    return parse_duration(value) if isinstance(value, str | int) and not isinstance(value, bool) else value


class ActionType(StrEnum):
    CSM_ALERT = "csm_alert"
    CUSTOMER_EMAIL = "customer_email"
    CUSTOMER_SMS = "customer_sms"
    SLACK = "slack"
    WEBHOOK = "webhook"
    RESURVEY = "resurvey"
    NURTURE = "nurture"
    REFERRAL_INVITE = "referral_invite"
    REVIEW_INVITE = "review_invite"
    SUPPORT_CALLBACK = "support_callback"
    THEME_ALERT = "theme_alert"
    SEGMENT_ALERT = "segment_alert"


#: Internal actions go to staff: they ignore customer opt-out, consent, cooldowns and message caps.
INTERNAL = frozenset(
    {
        ActionType.CSM_ALERT,
        ActionType.SLACK,
        ActionType.WEBHOOK,
        ActionType.SUPPORT_CALLBACK,
        ActionType.THEME_ALERT,
        ActionType.SEGMENT_ALERT,
    }
)
CUSTOMER_FACING = frozenset(set(ActionType) - INTERNAL)

DEFAULT_TEMPLATE: dict[ActionType, str] = {
    ActionType.CSM_ALERT: "csm_alert",
    ActionType.RESURVEY: "resurvey_open_question",
    ActionType.NURTURE: "nurture_education",
    ActionType.REFERRAL_INVITE: "referral_invite",
    ActionType.REVIEW_INVITE: "review_invite",
    ActionType.SUPPORT_CALLBACK: "support_callback",
    ActionType.THEME_ALERT: "theme_alert",
    ActionType.SEGMENT_ALERT: "segment_alert",
}

#: Which actions each trigger may use.
ALLOWED_ACTIONS: dict[str, frozenset[ActionType]] = {
    "rating": frozenset(set(ActionType) - {ActionType.SEGMENT_ALERT}),
    "segment_alert": frozenset({ActionType.SEGMENT_ALERT, ActionType.SLACK, ActionType.WEBHOOK}),
}

#: Facts a rating rule may test (``segment.<dimension>`` and ``customer.<attribute>`` too).
RATING_FACTS = frozenset(
    {
        "metric",
        "scale",
        "score",
        "normalized",
        "sentiment",
        "positive",
        "nps_class",
        "touchpoint",
        "source",
        "survey_id",
        "has_comment",
        "comment.sentiment",
        "comment.sentiment_score",
        "comment.language",
        "themes",
        "consent.contact",
        "consent.review",
        "account.id",
        "account.tier",
        "account.value",
        "customer.opted_out",
        "customer.locale",
        "customer.has_email",
        "customer.has_phone",
        "customer.has_owner",
        "history.ratings_30d",
        "history.negative_30d",
        "history.low_scores_30d",
        "history.positive_30d",
        "history.average_30d",
        "history.previous_sentiment",
        "history.previous_normalized",
        "history.days_since_previous",
        "history.trend",
        "history.declining",
        # the account's health (docs/health.md) as stored before this answer; None without one
        "health.score",
        "health.band",
        "health.previous_band",
        "health.delta_30d",
    }
)
SEGMENT_FACTS = frozenset(
    {
        "metric",
        "window",
        "segment",
        "reason",
        "score",
        "previous",
        "delta",
        "threshold",
        "responses",
        "p_value",
    }
    # What the drift detector saw, on a drift_drop alert (absent otherwise): drift.drop, drift.since...
    | {f"drift.{name}" for name in DriftDetails.model_fields}
)
FACTS: dict[str, tuple[frozenset[str], tuple[str, ...]]] = {
    "rating": (RATING_FACTS, ("segment.", "customer.")),
    "segment_alert": (SEGMENT_FACTS, ("segment.",)),
}

#: Facts that reveal how satisfied the respondent is: a review invitation must not depend on them.
GATING_FACTS = frozenset(
    {
        "score",
        "normalized",
        "sentiment",
        "positive",
        "nps_class",
        "comment.sentiment",
        "comment.sentiment_score",
        "history.negative_30d",
        "history.low_scores_30d",
        "history.positive_30d",
        "history.average_30d",
        "history.previous_sentiment",
        "history.previous_normalized",
        "history.trend",
        "history.declining",
    }
)


class ActionSpec(BaseModel):
    """One thing a rule does; fields that make no sense for the action's type are refused."""

    model_config = ConfigDict(extra="forbid")

    type: ActionType
    template: str | None = Field(default=None, validate_default=True)
    priority: Literal["low", "normal", "high"] = "normal"
    to: str | None = Field(
        default=None, min_length=1, validate_default=True, description="Fixed recipient (email, URL)"
    )
    channel: Literal["email", "sms"] | None = None
    delay: timedelta = Field(default=timedelta(0), description="Send later (durable timer)")
    sla: timedelta | None = Field(default=None, description="csm_alert: due time after creation")
    escalate: bool | None = Field(default=None, description="csm_alert: escalate when the SLA runs out")
    follow_up_after: timedelta | None = Field(default=None, description="resurvey: support calls after")
    follow_up_to: str | None = Field(default=None, min_length=1, description="resurvey: support address")
    sequence: str | None = Field(
        default=None, validate_default=True, description="nurture: the sequence to enrol in"
    )

    @field_validator("delay", "sla", "follow_up_after", mode="before")
    @classmethod
    def _durations(cls, value: Any) -> Any:
        return _duration(value)

    @field_validator("template")
    @classmethod
    def _template(cls, value: str | None, info: ValidationInfo) -> str | None:
        kind = info.data.get("type")
        if value is None:
            if kind is None:
                return None
            default = DEFAULT_TEMPLATE.get(kind)
            if default is None:
                raise ValueError(f"{kind.value} needs a template; one of {sorted(TEMPLATES)}")
            return default
        if value not in TEMPLATES:
            raise ValueError(f"unknown template {value!r}; one of {sorted(TEMPLATES)}")
        return value

    @field_validator("to")
    @classmethod
    def _to(cls, value: str | None, info: ValidationInfo) -> str | None:
        kind = info.data.get("type")
        if kind in (ActionType.SLACK, ActionType.WEBHOOK):
            if not value or not value.startswith(("https://", "http://")):
                raise ValueError(f"{kind.value} needs `to`: the URL to post to (https://...)")
        elif value is not None:
            if kind in CUSTOMER_FACING:
                raise ValueError(f"{kind.value} goes to the customer's own address; remove `to`")
            if "@" not in value:
                raise ValueError(f"`to` must be an email address for {kind.value if kind else 'this action'}")
        return value

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str | None, info: ValidationInfo) -> str | None:
        kind = info.data.get("type")
        allowed = {
            ActionType.RESURVEY,
            ActionType.NURTURE,
            ActionType.REFERRAL_INVITE,
            ActionType.REVIEW_INVITE,
        }
        if value is not None and kind is not None and kind not in allowed:
            raise ValueError(f"channel is chosen by the type for {kind.value}; remove it")
        return value

    @field_validator("delay")
    @classmethod
    def _delay(cls, value: timedelta, info: ValidationInfo) -> timedelta:
        kind = info.data.get("type")
        if value > timedelta(0) and kind is not None and kind not in CUSTOMER_FACING:
            raise ValueError(f"only messages to the customer can be delayed, not {kind.value}")
        return value

    @field_validator("sla", "escalate")
    @classmethod
    def _csm_only(cls, value: Any, info: ValidationInfo) -> Any:
        kind = info.data.get("type")
        if value is not None and kind is not None and kind is not ActionType.CSM_ALERT:
            raise ValueError(f"only csm_alert actions have an SLA, not {kind.value}")
        return value

    @field_validator("follow_up_after", "follow_up_to")
    @classmethod
    def _resurvey_only(cls, value: Any, info: ValidationInfo) -> Any:
        kind = info.data.get("type")
        if value is not None and kind is not None and kind is not ActionType.RESURVEY:
            raise ValueError(f"only resurvey actions have a follow-up, not {kind.value}")
        return value

    @field_validator("sequence")
    @classmethod
    def _sequence(cls, value: str | None, info: ValidationInfo) -> str | None:
        kind = info.data.get("type")
        if kind is ActionType.NURTURE and not value:
            raise ValueError("nurture needs the name of a sequence defined under `sequences`")
        if value is not None and kind is not None and kind is not ActionType.NURTURE:
            raise ValueError(f"only nurture actions enrol in a sequence, not {kind.value}")
        return value

    @property
    def customer_facing(self) -> bool:
        return self.type in CUSTOMER_FACING

    @property
    def escalates(self) -> bool:
        return self.sla is not None and self.escalate is not False


class SequenceStep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    after: timedelta = Field(description="Time after enrolment")
    template: str = "nurture_education"
    channel: Literal["email", "sms"] = "email"

    @field_validator("after", mode="before")
    @classmethod
    def _after(cls, value: Any) -> Any:
        return _duration(value)

    @field_validator("template")
    @classmethod
    def _template(cls, value: str) -> str:
        if value not in TEMPLATES:
            raise ValueError(f"unknown template {value!r}; one of {sorted(TEMPLATES)}")
        return value


class SequenceSpec(BaseModel):
    """A nurture sequence: the messages a customer receives after enrolment, each at its offset."""

    model_config = ConfigDict(extra="forbid")

    description: str = ""
    steps: list[SequenceStep] = Field(min_length=1, max_length=20)


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
    description: str = ""
    enabled: bool = True
    on: Literal["rating", "segment_alert"] = "rating"
    group: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
    actions: list[ActionSpec] = Field(min_length=1, max_length=20)
    when: dict[str, Any] = Field(default_factory=dict)
    cooldown: timedelta = Field(default=timedelta(0), description="Per customer; 0 = none")

    @field_validator("cooldown", mode="before")
    @classmethod
    def _cooldown(cls, value: Any) -> Any:
        return _duration(value)

    @field_validator("actions")
    @classmethod
    def _actions_fit_trigger(cls, value: list[ActionSpec], info: ValidationInfo) -> list[ActionSpec]:
        on = info.data.get("on", "rating")
        allowed = ALLOWED_ACTIONS[on]
        for i, spec in enumerate(value):
            if spec.type not in allowed:
                names = sorted(a.value for a in allowed)
                raise ValueError(f"{i}.type: {spec.type.value} cannot run on {on}; use one of {names}")
        return value

    @field_validator("when")
    @classmethod
    def _conditions(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        on = info.data.get("on", "rating")
        known, prefixes = FACTS[on]
        facts = check_conditions(value, known=known, prefixes=prefixes, path="")
        actions: list[ActionSpec] = info.data.get("actions") or []
        if any(a.type is ActionType.REVIEW_INVITE for a in actions):
            gated = sorted(f for f in facts if f in GATING_FACTS)
            if gated:
                raise ValueError(
                    f"{gated[0]}: review invitations go to every respondent who agreed to be contacted; "
                    "a rule with review_invite may not depend on the score or sentiment (review gating "
                    "breaks Google's review policy). Vary the wording in the template instead."
                )
        return value


def check_conditions(cond: Any, *, known: frozenset[str], prefixes: tuple[str, ...], path: str) -> list[str]:
    """Validate a condition map; returns every fact it tests. Errors start with the condition's path."""
    if not isinstance(cond, dict):
        raise ValueError(f"{path or 'when'}: conditions are a mapping of fact: matcher")
    facts: list[str] = []
    for key, matcher in cond.items():
        where = f"{path}.{key}" if path else str(key)
        if key in ("any", "all"):
            if not isinstance(matcher, list) or not matcher:
                raise ValueError(f"{where}: a non-empty list of condition maps")
            for i, sub in enumerate(matcher):
                facts += check_conditions(sub, known=known, prefixes=prefixes, path=f"{where}[{i}]")
            continue
        if key == "not":
            facts += check_conditions(matcher, known=known, prefixes=prefixes, path=where)
            continue
        if key not in known and not (
            any(key.startswith(p) and len(key) > len(p) for p in prefixes)
            and not key.startswith(("customer.has_", "customer.opted"))
        ):
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{where}: unknown fact {key!r}{hint}")
        _check_matcher(where, matcher)
        facts.append(key)
    return facts


def _check_matcher(where: str, matcher: Any) -> None:
    if not isinstance(matcher, dict):
        return
    if not matcher:
        raise ValueError(f"{where}: an empty operator map matches nothing")
    unknown = set(matcher) - _OPERATORS
    if unknown:
        raise ValueError(f"{where}: unknown operator(s) {sorted(unknown)}; use {sorted(_OPERATORS)}")
    for op, expected in matcher.items():
        if op in ("lt", "lte", "gt", "gte") and (
            isinstance(expected, bool) or not isinstance(expected, int | float)
        ):
            raise ValueError(f"{where}.{op}: needs a number, got {expected!r}")
        if op in ("in", "not_in", "contains_any") and not isinstance(expected, list):
            raise ValueError(f"{where}.{op}: needs a list, got {expected!r}")
        if op == "present" and not isinstance(expected, bool):
            raise ValueError(f"{where}.present: needs true or false, got {expected!r}")


class RuleSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    sequences: dict[str, SequenceSpec] = Field(default_factory=dict)
    rules: list[Rule]


@dataclass(frozen=True, slots=True)
class RuleError:
    """One problem: the rule (id, or ``#index`` when it has none) and the field path within it."""

    rule: str | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"rule {self.rule}: " if self.rule else ""
        return f"{where}{self.field}: {self.message}"


class RuleFileError(ValueError):
    """A rule set that cannot be used; the message names each rule and field at fault."""

    def __init__(self, origin: str, errors: Sequence[RuleError]) -> None:
        self.origin = origin
        self.errors = list(errors)
        super().__init__(f"{origin}: " + "; ".join(str(e) for e in self.errors))


def _clean(msg: str) -> str:
    return msg[len("Value error, ") :] if msg.startswith("Value error, ") else msg


def _errors_from(exc: ValidationError, data: Any) -> list[RuleError]:
    out: list[RuleError] = []
    for err in exc.errors():
        loc = list(err["loc"])
        msg = _clean(str(err["msg"]))
        rule: str | None = None
        if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int) and isinstance(data, dict):
            items = data.get("rules") or []
            item = items[loc[1]] if isinstance(items, list) and loc[1] < len(items) else None
            rid = item.get("id") if isinstance(item, dict) else None
            rule = str(rid) if rid else f"#{loc[1]}"
            loc = loc[2:]
        field = ".".join(str(p) for p in loc)
        # Validators of ``when``/``actions`` put the precise sub-path first: "sentimnt: unknown fact".
        head, sep, tail = msg.partition(": ")
        if sep and loc and loc[-1] in ("when", "actions") and " " not in head:
            field = f"{field}.{head}"
            msg = tail
        out.append(RuleError(rule, field or "file", msg))
    return out


def outbound_url_errors(rules: RuleSet, policy: OutboundPolicy) -> list[RuleError]:
    """Slack and webhook URLs the notifier must not call: wrong scheme for the environment, credentials
    in the URL, a numeric or ``localhost`` host, or an internal address given literally. Names are
    resolved when the message is sent (the notifier's guarded client refuses internal ones then)."""
    errors: list[RuleError] = []
    for rule in rules.rules:
        for j, spec in enumerate(rule.actions):
            if spec.type not in (ActionType.SLACK, ActionType.WEBHOOK) or spec.to is None:
                continue
            try:
                target = parse_outbound_url(spec.to, policy=policy)
                if target.literal is not None:
                    check_addresses(target.host, [target.literal], policy=policy)
            except OutboundRefused as exc:
                errors.append(RuleError(rule.id, f"actions.{j}.to", str(exc)))
    return errors


def parse_rules(data: Any, *, origin: str = "<rules>", outbound: OutboundPolicy | None = None) -> RuleSet:
    """Validate a parsed rules document (mapping); raises RuleFileError naming rule and field.

    ``outbound``: also hold Slack and webhook URLs to that policy (rules saved through the API).
    """
    if not isinstance(data, dict):
        raise RuleFileError(origin, [RuleError(None, "file", "a mapping with `rules:` is expected")])
    try:
        rules = RuleSet.model_validate(data)
    except ValidationError as exc:
        raise RuleFileError(origin, _errors_from(exc, data)) from exc
    errors: list[RuleError] = []
    seen: set[str] = set()
    for i, rule in enumerate(rules.rules):
        if rule.id in seen:
            errors.append(RuleError(rule.id, "id", f"rule id {rule.id!r} is used twice (rule #{i})"))
        seen.add(rule.id)
        for j, spec in enumerate(rule.actions):
            if spec.sequence is not None and spec.sequence not in rules.sequences:
                defined = sorted(rules.sequences) or ["(none)"]
                errors.append(
                    RuleError(
                        rule.id,
                        f"actions.{j}.sequence",
                        f"unknown sequence {spec.sequence!r}; defined: {', '.join(defined)}",
                    )
                )
    if outbound is not None:
        errors += outbound_url_errors(rules, outbound)
    if errors:
        raise RuleFileError(origin, errors)
    return rules


def load_rules_text(text: str, *, origin: str = "<rules>") -> RuleSet:
    return parse_rules(parse_document(text, origin=origin), origin=origin)


def parse_document(text: str, *, origin: str = "<rules>") -> Any:
    """YAML (JSON is YAML too) to plain data."""
    try:
        return load_yaml(text)
    except yaml.YAMLError as exc:
        raise RuleFileError(origin, [RuleError(None, "file", f"not valid YAML: {exc}")]) from exc


def load_rules_file(path: Path) -> RuleSet:
    return load_rules_text(path.read_text(encoding="utf-8"), origin=str(path))


# ---- evaluation -----------------------------------------------------------------------------------
def _compare(op: str, actual: Any, expected: Any) -> bool:
    if op == "present":
        return (actual not in (None, "") and actual != []) is bool(expected)
    if actual is None:
        return op in ("ne", "not_in")
    if op == "eq":
        return bool(actual == expected)
    if op == "ne":
        return bool(actual != expected)
    if op == "in":
        return actual in expected
    if op == "not_in":
        return actual not in expected
    if op == "contains":
        return isinstance(actual, list | tuple | set | frozenset) and expected in actual
    if op == "contains_any":
        return isinstance(actual, list | tuple | set | frozenset) and any(e in actual for e in expected)
    try:
        if op == "lt":
            return bool(actual < expected)
        if op == "lte":
            return bool(actual <= expected)
        if op == "gt":
            return bool(actual > expected)
        if op == "gte":
            return bool(actual >= expected)
    except TypeError:
        return False
    raise ValueError(f"unknown operator {op}")


def matches(matcher: Any, actual: Any) -> bool:
    if isinstance(matcher, dict):
        return all(_compare(op, actual, expected) for op, expected in matcher.items())
    if isinstance(matcher, list):
        return actual in matcher
    return bool(actual == matcher)


def holds(cond: Mapping[str, Any], facts: Mapping[str, Any]) -> bool:
    """Every entry of a condition map holds (``any``/``all``/``not`` nest)."""
    for key, matcher in cond.items():
        if key == "any":
            if not any(holds(sub, facts) for sub in matcher):
                return False
        elif key == "all":
            if not all(holds(sub, facts) for sub in matcher):
                return False
        elif key == "not":
            if holds(matcher, facts):
                return False
        elif not matches(matcher, facts.get(key)):
            return False
    return True


def rule_applies(rule: Rule, facts: Mapping[str, Any]) -> bool:
    return rule.enabled and holds(rule.when, facts)


def evaluate(rules: RuleSet, facts: Mapping[str, Any], *, on: str = "rating") -> list[Rule]:
    """The enabled rules for ``on`` whose conditions hold, in file order; first match per group."""
    fired: list[Rule] = []
    groups: set[str] = set()
    for rule in rules.rules:
        if rule.on != on or (rule.group is not None and rule.group in groups):
            continue
        if rule_applies(rule, facts):
            fired.append(rule)
            if rule.group is not None:
                groups.add(rule.group)
    return fired


def notification_id(rule_id: str, rating_id: str, index: int) -> str:
    """Deterministic, so a replayed rating yields the same id and the notifier dedupes it."""
    return str(uuid.uuid5(NOTIFICATION_NAMESPACE, f"{rule_id}/{rating_id}/{index}"))


def derived_id(*parts: str | int) -> str:
    """A deterministic id for anything derived from a decision (timer, step, escalation)."""
    return str(uuid.uuid5(NOTIFICATION_NAMESPACE, "/".join(str(p) for p in parts)))


def flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value
