"""The Rules view's forms (pure): one rule's edit form and the dry-run form, to and from what the APIs
take, and the APIs' validation errors mapped back onto the fields that caused them.

YAML in the forms is read with YAML 1.2 booleans (``on``, ``yes`` and ``no`` stay words, as the
actions service reads rules) and without aliases (a short text cannot expand into a huge document).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from dataclasses import field as default
from typing import Any

import yaml

_BOOL = "tag:yaml.org,2002:bool"
HIDDEN = "•••"


class RuleYamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader with only true/false as booleans, refusing aliases."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.YAMLError("aliases (*name) are not accepted here")
        return super().compose_node(parent, index)


RuleYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
RuleYamlLoader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=RuleYamlLoader)  # noqa: S506 - a SafeLoader subclass


def dump_yaml(value: Any) -> str:
    """Block-style YAML for a textarea ('' for nothing)."""
    if value in (None, {}, []):
        return ""
    return str(yaml.safe_dump(value, sort_keys=False, allow_unicode=True, default_flow_style=False))


@dataclass(frozen=True, slots=True)
class FieldError:
    """A problem to show at ``field`` (a form field's name, or ``form`` for the whole form)."""

    field: str
    message: str  # a text key of the catalog ("rules.form.bad_yaml") or the API's own words
    params: Mapping[str, str] = default(default_factory=dict)
    translate: bool = False


def errors_by_field(errors: Sequence[FieldError]) -> dict[str, list[FieldError]]:
    out: dict[str, list[FieldError]] = {}
    for e in errors:
        out.setdefault(e.field, []).append(e)
    return out


# ---- one rule ---------------------------------------------------------------------------------------
RULE_FIELDS = ("id", "description", "enabled", "on", "group", "cooldown", "when", "actions")


@dataclass(frozen=True, slots=True)
class RuleForm:
    """The edit form of one rule: plain fields, conditions and actions as YAML text."""

    rule_id: str = ""
    description: str = ""
    enabled: bool = True
    on: str = "rating"
    group: str = ""
    cooldown: str = ""
    when: str = ""
    actions: str = "- type: csm_alert\n"
    revision: int | None = None

    @classmethod
    def of(cls, rule: Mapping[str, Any], *, revision: int | None) -> RuleForm:
        cooldown = rule.get("cooldown")
        return cls(
            rule_id=str(rule.get("id") or ""),
            description=str(rule.get("description") or ""),
            enabled=rule.get("enabled") is not False,
            on=str(rule.get("on") or "rating"),
            group=str(rule.get("group") or ""),
            cooldown="" if cooldown in (None, 0, "0") else str(cooldown),
            when=dump_yaml(rule.get("when")),
            actions=dump_yaml(rule.get("actions")),
            revision=revision,
        )

    def at_revision(self, revision: int) -> RuleForm:
        return replace(self, revision=revision)


@dataclass(frozen=True, slots=True)
class RuleDraft:
    rule: dict[str, Any]
    errors: tuple[FieldError, ...]


def _yaml_field(name: str, text: str) -> tuple[Any, FieldError | None]:
    try:
        return load_yaml(text) if text.strip() else None, None
    except yaml.YAMLError as exc:
        problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return None, FieldError(name, "rules.form.bad_yaml", {"problem": problem}, translate=True)


def draft_rule(form: RuleForm, *, original: Mapping[str, Any] | None) -> RuleDraft:
    """The rule the form describes; a key the stored rule had stays even at its default (no false diff)."""
    had = set(original or {})
    errors: list[FieldError] = []
    rule: dict[str, Any] = {"id": form.rule_id.strip()}
    if form.description.strip() or "description" in had:
        rule["description"] = form.description.strip()
    if not form.enabled or "enabled" in had:
        rule["enabled"] = form.enabled
    if form.on != "rating" or "on" in had:
        rule["on"] = form.on
    if form.group.strip():
        rule["group"] = form.group.strip()
    when, bad = _yaml_field("when", form.when)
    if bad:
        errors.append(bad)
    elif when is not None and not isinstance(when, dict):
        errors.append(FieldError("when", "rules.form.not_a_map", translate=True))
    elif when or "when" in had:
        rule["when"] = when or {}
    actions, bad = _yaml_field("actions", form.actions)
    if bad:
        errors.append(bad)
    elif not isinstance(actions, list):
        errors.append(FieldError("actions", "rules.form.not_a_list", translate=True))
    else:
        rule["actions"] = actions
    cooldown = form.cooldown.strip()
    if cooldown and cooldown != "0":
        rule["cooldown"] = cooldown
    elif "cooldown" in had:
        rule["cooldown"] = 0
    return RuleDraft(rule=rule, errors=tuple(errors))


def rule_errors(problem: Mapping[str, Any], *, rule_id: str) -> list[FieldError]:
    """The rules API's 422 problem on the form: ``cooldown``, ``when.sentimnt``, ``actions.0.sla``..."""
    out: list[FieldError] = []
    for item in problem.get("errors") or []:
        if not isinstance(item, Mapping):
            continue
        path, message = str(item.get("field") or ""), str(item.get("message") or "")
        head = re.split(r"[.\[]", path, maxsplit=1)[0]
        mine = item.get("rule") in (None, rule_id)
        if mine and head in RULE_FIELDS:
            inner = path != head  # a condition's or an action's own path is worth saying
            out.append(FieldError(head, f"{path}: {message}" if inner else message))
        else:
            where = f"rule {item.get('rule')}: {path}" if item.get("rule") else path
            out.append(FieldError("form", f"{where}: {message}" if where else message))
    if not out:
        out.append(FieldError("form", str(problem.get("detail") or problem.get("title") or "invalid")))
    return out


# ---- the dry run -------------------------------------------------------------------------------------
DRY_FIELDS = {
    "rating.metric": "metric",
    "rating.scale": "scale",
    "rating.score": "score",
    "rating.customer.id": "customer",
    "rating.customer.locale": "locale",
    "rating.customer.email": "email",
    "rating.customer.phone": "phone",
    "rating.segment": "segment",
    "rating.touchpoint": "touchpoint",
    "rating.comment": "comment",
    "rating.account.tier": "tier",
    "rating.account.value": "value",
    "rating.consent": "consent",
}


@dataclass(frozen=True, slots=True)
class DryRunForm:
    """The dry-run form: a rating field by field, or pasted whole, and optionally unsaved rules."""

    metric: str = "csat"
    scale: str = "1-5"
    score: str = "1"
    customer: str = ""
    locale: str = "en"
    email: str = ""
    phone: str = ""
    segment: str = ""
    touchpoint: str = ""
    comment: str = ""
    tier: str = ""
    value: str = ""
    contact: bool = True
    review: bool = False
    pasted: str = ""
    proposed: str = ""
    # a picked rating's own: its id and time (its history), the stored analysis of its comment
    rating_id: str = ""
    occurred_at: str = ""
    themes: str = ""
    tone: str = ""

    @classmethod
    def of(cls, rating: Mapping[str, Any]) -> DryRunForm:
        """A picked rating in the form (what actions kept of it)."""
        customer = rating.get("customer") or {}
        account = rating.get("account") or {}
        consent = rating.get("consent") or {}
        segment = rating.get("segment") or {}
        return cls(
            metric=str(rating.get("metric") or "csat"),
            scale=str(rating.get("scale") or ""),
            score=str(rating.get("score") if rating.get("score") is not None else ""),
            customer=str(customer.get("id") or ""),
            locale=str(customer.get("locale") or "en"),
            segment="\n".join(f"{k}: {v}" for k, v in segment.items()),
            touchpoint=str(rating.get("touchpoint") or ""),
            tier=str(account.get("tier") or ""),
            value=str(account.get("value") if account.get("value") is not None else ""),
            contact=bool(consent.get("contact", True)),
            review=bool(consent.get("review", False)),
            comment=str(rating.get("comment") or ""),
            rating_id=str(rating.get("rating_id") or ""),
            occurred_at=str(rating.get("occurred_at") or ""),
            themes=",".join(str(t) for t in rating.get("themes") or []),
            tone=str(rating.get("comment_sentiment") or ""),
        )


@dataclass(frozen=True, slots=True)
class DryRunBody:
    body: dict[str, Any]
    errors: tuple[FieldError, ...]
    pasted: bool


def _rating_fields(form: DryRunForm, errors: list[FieldError]) -> dict[str, Any]:
    customer: dict[str, Any] = {"id": form.customer.strip() or "dry-run", "locale": form.locale or None}
    if form.email.strip():
        customer["email"] = form.email.strip()
    if form.phone.strip():
        customer["phone"] = form.phone.strip()
    segment: dict[str, str] = {}
    for n, line in enumerate(form.segment.splitlines(), start=1):
        if not line.strip():
            continue
        dim, sep, value = line.partition(":")
        if not sep or not dim.strip() or not value.strip():
            errors.append(FieldError("segment", "rules.dry.bad_segment", {"line": str(n)}, translate=True))
            continue
        segment[dim.strip()] = value.strip()
    account: dict[str, Any] = {}
    if form.tier.strip():
        account["tier"] = form.tier.strip()
    if form.value.strip():
        try:
            account["value"] = float(form.value.strip().replace(",", ".").replace(" ", ""))
        except ValueError:
            errors.append(FieldError("value", "rules.dry.bad_value", translate=True))
    score: int | str = int(form.score) if re.fullmatch(r"-?\d+", form.score.strip()) else form.score.strip()
    rating: dict[str, Any] = {
        "metric": form.metric,
        "scale": form.scale or None,
        "score": score,
        "customer": {k: v for k, v in customer.items() if v is not None},
        "segment": segment,
        "consent": {"contact": form.contact, "review": form.review},
    }
    if form.touchpoint.strip():
        rating["touchpoint"] = form.touchpoint.strip()
    if form.comment.strip():
        rating["comment"] = form.comment.strip()
    if account:
        rating["account"] = account
    for name, value in (("rating_id", form.rating_id), ("occurred_at", form.occurred_at)):
        if value.strip():
            rating[name] = value.strip()
    if form.rating_id.strip():  # a picked rating: its stored analysis stands for the comment
        rating["themes"] = [t.strip() for t in form.themes.split(",") if t.strip()]
        if form.tone in ("negative", "neutral", "positive"):
            rating["comment_sentiment"] = form.tone
    return rating


def dry_run_body(form: DryRunForm) -> DryRunBody:
    """What ``POST /v1/rules/dry-run`` takes, or the fields at fault."""
    errors: list[FieldError] = []
    pasted = bool(form.pasted.strip())
    rating: Any = None
    if pasted:
        try:
            rating = json.loads(form.pasted)
        except ValueError as exc:
            errors.append(FieldError("pasted", "rules.dry.bad_json", {"problem": str(exc)}, translate=True))
        if rating is not None and not isinstance(rating, dict):
            errors.append(
                FieldError("pasted", "rules.dry.bad_json", {"problem": type(rating).__name__}, translate=True)
            )
    else:
        rating = _rating_fields(form, errors)
    body: dict[str, Any] = {"rating": rating}
    if form.proposed.strip():
        proposed, bad = _yaml_field("proposed", form.proposed)
        if bad:
            errors.append(bad)
        elif not isinstance(proposed, dict):
            errors.append(FieldError("proposed", "rules.form.not_a_map", translate=True))
        else:
            body["rules"] = proposed
    return DryRunBody(body=body, errors=tuple(errors), pasted=pasted)


def dry_run_errors(problem: Mapping[str, Any], *, pasted: bool) -> list[FieldError]:
    """A 422 of the dry run on the form: rating fields (or the pasted text), rule errors on the rules."""
    out: list[FieldError] = []
    invalid_rules = str(problem.get("type", "")).endswith("/invalid-rules")
    for item in problem.get("errors") or []:
        if not isinstance(item, Mapping):
            continue
        path, message = str(item.get("field") or ""), str(item.get("message") or "")
        if invalid_rules:
            where = f"rule {item['rule']}: {path}" if item.get("rule") else path
            out.append(FieldError("proposed", f"{where}: {message}"))
            continue
        target = (
            "pasted" if pasted else next((f for p, f in DRY_FIELDS.items() if path.startswith(p)), "form")
        )
        out.append(FieldError(target, f"{path}: {message}" if target in ("pasted", "form") else message))
    if not out:
        out.append(FieldError("form", str(problem.get("detail") or problem.get("title") or "invalid")))
    return out


def hide_contact(value: Mapping[str, Any]) -> dict[str, Any]:
    """``customer.email`` / ``customer.phone`` replaced by ``HIDDEN`` (the console's own second check)."""
    out = dict(value)
    customer = out.get("customer")
    if isinstance(customer, Mapping):
        out["customer"] = {k: (HIDDEN if k in ("email", "phone") and v else v) for k, v in customer.items()}
    return out


def hide_addresses(result: Mapping[str, Any]) -> dict[str, Any]:
    """A dry-run answer without any customer address: recipients, contexts and the rating echoed."""
    messages = []
    for m in result.get("messages") or []:
        if not isinstance(m, Mapping):
            continue
        hidden = dict(m)
        if m.get("recipient_role") == "customer" and m.get("recipient"):
            hidden["recipient"] = HIDDEN
        hidden["context"] = hide_contact(m.get("context") or {})
        messages.append(hidden)
    rating = result.get("rating")
    return {
        **result,
        "messages": messages,
        "rating": hide_contact(rating) if isinstance(rating, Mapping) else rating,
    }
