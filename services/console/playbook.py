"""The playbook as cards (pure): the rules document of the rules API, grouped and ordered as the engine
evaluates it, each rule with its sentence, its actions (template, channel, recipient, delay, SLA) and
its cooldown, in the reader's language.

The engine takes the rules of a trigger in file order; rules sharing a ``group`` are exclusive (the
first that matches fires). Consecutive rules of one group are shown together in one block.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.console.rulewords import Words, duration, parse_duration, sentence

TRIGGERS: tuple[str, ...] = ("rating", "segment_alert")

#: The template each action type uses when the rule names none (the actions service's defaults;
#: tests/unit/test_console_rules.py holds the two tables equal).
DEFAULT_TEMPLATES: Mapping[str, str] = {
    "csm_alert": "csm_alert",
    "resurvey": "resurvey_open_question",
    "nurture": "nurture_education",
    "referral_invite": "referral_invite",
    "review_invite": "review_invite",
    "support_callback": "support_callback",
    "theme_alert": "theme_alert",
    "segment_alert": "segment_alert",
}
#: Who hears of each action type (``rules.role.*``); the rest go to the customer.
RECIPIENTS: Mapping[str, str] = {
    "csm_alert": "csm",
    "support_callback": "support",
    "theme_alert": "team",
    "slack": "chat",
    "webhook": "webhook",
    "segment_alert": "segment_owner",
}
_FIXED_CHANNELS: Mapping[str, str] = {
    "csm_alert": "email",
    "support_callback": "email",
    "theme_alert": "email",
    "segment_alert": "email",
    "customer_email": "email",
    "customer_sms": "sms",
    "slack": "slack",
    "webhook": "webhook",
}


@dataclass(frozen=True, slots=True)
class Detail:
    label: str
    value: str
    code: bool = False  # a name from the rule language (template), shown as code


@dataclass(frozen=True, slots=True)
class ActionCard:
    title: str
    details: tuple[Detail, ...]


@dataclass(frozen=True, slots=True)
class RuleCard:
    rule_id: str
    position: int  # 1-based, in evaluation order within its trigger
    description: str
    enabled: bool
    group: str | None
    sentence: str
    actions: tuple[ActionCard, ...]
    cooldown: str | None


@dataclass(frozen=True, slots=True)
class Block:
    """One rule, or consecutive rules of one group (only the first that matches fires)."""

    group: str | None
    rules: tuple[RuleCard, ...]


@dataclass(frozen=True, slots=True)
class Section:
    on: str
    blocks: tuple[Block, ...]


@dataclass(frozen=True, slots=True)
class SequenceCard:
    name: str
    description: str
    steps: tuple[str, ...]


def rules_of(document: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    items = (document or {}).get("rules")
    return [r for r in items if isinstance(r, Mapping)] if isinstance(items, list) else []


def channel_of(spec: Mapping[str, Any], sequences: Mapping[str, Any]) -> list[str]:
    """The channels an action's messages use (a nurture sequence's steps may mix them)."""
    kind = str(spec.get("type"))
    if kind in _FIXED_CHANNELS:
        return [_FIXED_CHANNELS[kind]]
    if kind == "nurture":
        seq = sequences.get(str(spec.get("sequence")))
        steps = seq.get("steps") if isinstance(seq, Mapping) else None
        found = [str(s.get("channel") or "email") for s in steps or [] if isinstance(s, Mapping)]
        return list(dict.fromkeys(found)) or ["email"]
    return [str(spec.get("channel") or "email")]


def action_title(kind: str, words: Words, *, sequence: str = "") -> str:
    """What an action does, in words ("Alert the account's CSM"); an unknown type is named as is."""
    known = words.t(f"rules.action.{kind}", sequence=sequence)
    return known if known != f"rules.action.{kind}" else words.t("rules.action.other", action=kind)


def outcome_text(outcome: str, words: Words) -> str:
    """A dry run's decision outcome: "sends a message", "does nothing: the rule's cooldown is running"."""
    if outcome.startswith("skipped_"):
        why = outcome.removeprefix("skipped_")
        found = words.t(f"rules.dry.why.{why}")
        reason = found if found != f"rules.dry.why.{why}" else words.t("rules.dry.why.other", why=why)
        return words.t("rules.dry.outcome.skipped", why=reason)
    found = words.t(f"rules.dry.outcome.{outcome}")
    return found if found != f"rules.dry.outcome.{outcome}" else outcome


def action_card(spec: Mapping[str, Any], sequences: Mapping[str, Any], words: Words) -> ActionCard:
    """One action: what it does, then template, channel, recipient, priority, delay, SLA, follow-up."""
    kind = str(spec.get("type"))
    title = action_title(kind, words, sequence=str(spec.get("sequence") or ""))
    details: list[Detail] = []
    template = spec.get("template") or DEFAULT_TEMPLATES.get(kind)
    if kind == "nurture":
        template = None  # each step names its own
    if template:
        details.append(Detail(words.t("rules.detail.template"), str(template), code=True))
    channels = ", ".join(words.t(f"rules.channel.{c}") for c in channel_of(spec, sequences))
    details.append(Detail(words.t("rules.detail.channel"), channels))
    to = spec.get("to")
    role = (
        words.t("rules.role.fixed", address=str(to))
        if to
        else words.t(f"rules.role.{RECIPIENTS.get(kind, 'customer')}")
    )
    details.append(Detail(words.t("rules.detail.recipient"), role))
    if spec.get("priority") and spec.get("priority") != "normal":
        details.append(
            Detail(words.t("rules.detail.priority"), words.t(f"rules.priority.{spec['priority']}"))
        )
    delay = parse_duration(spec.get("delay", 0))
    if delay is not None and delay.total_seconds() > 0:
        details.append(
            Detail(
                words.t("rules.detail.delay"), words.t("rules.detail.after", duration=duration(delay, words))
            )
        )
    sla = parse_duration(spec.get("sla"))
    if sla is not None:
        text = words.t("rules.detail.sla_value", duration=duration(sla, words))
        escalates = spec.get("escalate") is not False
        more = words.t("rules.detail.escalates" if escalates else "rules.detail.no_escalation")
        details.append(Detail(words.t("rules.detail.sla"), f"{text}; {more}"))
    follow = parse_duration(spec.get("follow_up_after"))
    if follow is not None:
        details.append(
            Detail(
                words.t("rules.detail.follow_up"),
                words.t("rules.detail.follow_up_value", duration=duration(follow, words)),
            )
        )
    return ActionCard(title=title, details=tuple(details))


def rule_card(rule: Mapping[str, Any], position: int, sequences: Mapping[str, Any], words: Words) -> RuleCard:
    on = str(rule.get("on") or "rating")
    when = rule.get("when")
    cooldown = parse_duration(rule.get("cooldown", 0))
    actions = rule.get("actions")
    return RuleCard(
        rule_id=str(rule.get("id")),
        position=position,
        description=str(rule.get("description") or ""),
        enabled=rule.get("enabled") is not False,
        group=str(rule["group"]) if rule.get("group") else None,
        sentence=sentence(when if isinstance(when, Mapping) else None, words, on=on),
        actions=tuple(
            action_card(a, sequences, words)
            for a in (actions if isinstance(actions, list) else [])
            if isinstance(a, Mapping)
        ),
        cooldown=duration(cooldown, words) if cooldown is not None and cooldown.total_seconds() > 0 else None,
    )


def sections(document: Mapping[str, Any] | None, words: Words) -> list[Section]:
    """The rules per trigger in file order, consecutive rules of a group in one block."""
    sequences = (document or {}).get("sequences")
    seqs = sequences if isinstance(sequences, Mapping) else {}
    out: list[Section] = []
    for on in TRIGGERS:
        mine = [r for r in rules_of(document) if str(r.get("on") or "rating") == on]
        cards = [rule_card(r, i + 1, seqs, words) for i, r in enumerate(mine)]
        out.append(Section(on=on, blocks=tuple(_blocks(cards))))
    return out


def _blocks(cards: Sequence[RuleCard]) -> list[Block]:
    blocks: list[Block] = []
    for card in cards:
        last = blocks[-1] if blocks else None
        if card.group is not None and last is not None and last.group == card.group:
            blocks[-1] = Block(group=card.group, rules=(*last.rules, card))
        else:
            blocks.append(Block(group=card.group, rules=(card,)))
    return blocks


def sequence_cards(document: Mapping[str, Any] | None, words: Words) -> list[SequenceCard]:
    sequences = (document or {}).get("sequences")
    out: list[SequenceCard] = []
    for name, seq in sequences.items() if isinstance(sequences, Mapping) else []:
        if not isinstance(seq, Mapping):
            continue
        steps = []
        for n, step in enumerate(s for s in seq.get("steps") or [] if isinstance(s, Mapping)):
            after = parse_duration(step.get("after"))
            steps.append(
                words.t(
                    "rules.sequence.step",
                    n=n + 1,
                    template=str(step.get("template") or "nurture_education"),
                    channel=words.t(f"rules.channel.{step.get('channel') or 'email'}"),
                    duration=duration(after, words) if after is not None else "?",
                )
            )
        out.append(
            SequenceCard(name=str(name), description=str(seq.get("description") or ""), steps=tuple(steps))
        )
    return out
