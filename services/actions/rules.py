"""Declarative rules: a YAML file validated on load, evaluated against flat facts. Pure code.

A rule is ``when`` (every condition must hold) and ``actions`` (what to emit). Conditions name a fact
(``sentiment``, ``score``, ``segment.store``, ``account.tier``, ``history.negative_30d``...) and a
matcher: a scalar (equality), a list (one of), or operators ``eq ne in not_in lt lte gt gte present``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

NOTIFICATION_NAMESPACE = uuid.UUID("6f1c2b4e-9d1a-4d7e-9a59-0c8a0d3c5e11")

_DURATION = re.compile(r"^(\d+)(s|m|h|d|w)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_OPERATORS = {"eq", "ne", "in", "not_in", "lt", "lte", "gt", "gte", "present"}


def parse_duration(text: str | int) -> timedelta:
    if isinstance(text, int):
        return timedelta(seconds=text)
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"duration {text!r} must look like 30m, 24h or 7d")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


class ActionType(StrEnum):
    CSM_ALERT = "csm_alert"
    CUSTOMER_EMAIL = "customer_email"
    CUSTOMER_SMS = "customer_sms"
    SLACK = "slack"
    WEBHOOK = "webhook"


#: Internal actions go to staff: they ignore customer opt-out, consent and message caps.
INTERNAL = {ActionType.CSM_ALERT, ActionType.SLACK, ActionType.WEBHOOK}


class ActionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: ActionType
    template: str = Field(min_length=1, max_length=80, pattern=r"^[a-z0-9_]+$")
    priority: Literal["low", "normal", "high"] = "normal"
    to: str | None = Field(default=None, description="Fixed recipient (email, URL); default is by type")


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
    description: str = ""
    enabled: bool = True
    on: Literal["rating"] = "rating"
    when: dict[str, Any] = Field(default_factory=dict)
    actions: list[ActionSpec] = Field(min_length=1)
    cooldown: timedelta = Field(default=timedelta(0), description="Per customer; 0 = none")

    @field_validator("cooldown", mode="before")
    @classmethod
    def _cooldown(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str | int) else value

    @field_validator("when")
    @classmethod
    def _conditions(cls, value: dict[str, Any]) -> dict[str, Any]:
        for fact, matcher in value.items():
            if isinstance(matcher, dict):
                unknown = set(matcher) - _OPERATORS
                if unknown:
                    raise ValueError(
                        f"condition {fact!r}: unknown operator(s) {sorted(unknown)}; use {sorted(_OPERATORS)}"
                    )
        return value


class RuleSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    rules: list[Rule]

    @model_validator(mode="after")
    def _unique_ids(self) -> RuleSet:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen:
                raise ValueError(f"rule id {rule.id!r} is used twice")
            seen.add(rule.id)
        return self


class RuleFileError(ValueError):
    """A rules file that cannot be used; the message names the rule and field."""


def load_rules_text(text: str, *, origin: str = "<rules>") -> RuleSet:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RuleFileError(f"{origin}: not valid YAML: {exc}") from exc
    try:
        return RuleSet.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = list(err["loc"])
            where = ""
            if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int) and isinstance(data, dict):
                rules = data.get("rules") or []
                rid = (
                    rules[loc[1]].get("id")
                    if loc[1] < len(rules) and isinstance(rules[loc[1]], dict)
                    else None
                )
                where = f"rule {rid or '#' + str(loc[1])}: "
                loc = loc[2:]
            lines.append(f"{where}{'.'.join(str(p) for p in loc) or 'file'}: {err['msg']}")
        raise RuleFileError(f"{origin}: " + "; ".join(lines)) from exc


def load_rules_file(path: Path) -> RuleSet:
    return load_rules_text(path.read_text(encoding="utf-8"), origin=str(path))


def _compare(op: str, actual: Any, expected: Any) -> bool:
    if op == "present":
        return (actual not in (None, "")) is bool(expected)
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


def rule_applies(rule: Rule, facts: Mapping[str, Any]) -> bool:
    return rule.enabled and all(matches(m, facts.get(fact)) for fact, m in rule.when.items())


def evaluate(rules: RuleSet, facts: Mapping[str, Any]) -> list[Rule]:
    """The enabled rules whose every condition holds, in file order."""
    return [rule for rule in rules.rules if rule_applies(rule, facts)]


def notification_id(rule_id: str, rating_id: str, index: int) -> str:
    """Deterministic, so a replayed rating yields the same id and the notifier dedupes it."""
    return str(uuid.uuid5(NOTIFICATION_NAMESPACE, f"{rule_id}/{rating_id}/{index}"))


def flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value
