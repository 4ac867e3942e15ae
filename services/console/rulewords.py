"""The playbook in plain words (pure): a rule's conditions as one sentence, its actions and durations as
phrases, in the reader's language.

``sentence({"metric": "csat", "score": {"lte": 2}, "account.tier": "strategic"}, on="rating", words=tr)``
-> "When a CSAT rating is 2 or less and the account tier is strategic" (French: "Quand une note CSAT
vaut 2 ou moins et le niveau du compte est strategic"). The pieces are ``rules.*`` texts of the
catalog; numbers go through the locale's formats. A top-level ``not`` reads "unless ...", ``any`` and
``all`` nest in parentheses. The renderer reads the rule as stored (the rules API's document), so a
fact it has no words for is still named, never dropped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, Protocol

from babel.units import format_unit


class Words(Protocol):
    """What the renderer needs of the reader's language (``i18n.Translator`` is one)."""

    @property
    def locale(self) -> str: ...
    def t(self, key: str, **params: object) -> str: ...
    def number(self, value: float, *, digits: int = 0) -> str: ...
    def percent(self, value: float, *, digits: int = 1) -> str: ...


#: Facts whose true/false reads as a whole phrase ("the customer left no comment").
BOOL_FACTS = frozenset(
    {
        "has_comment",
        "positive",
        "consent.contact",
        "consent.review",
        "customer.opted_out",
        "customer.has_email",
        "customer.has_phone",
        "customer.has_owner",
        "history.declining",
    }
)
#: Facts on a 0..1 scale, read as percentages.
RATIO_FACTS = frozenset({"normalized", "history.average_30d", "history.previous_normalized"})
#: Facts whose values have words of their own (``rules.value.<kind>.<value>``).
VALUE_KINDS: Mapping[str, str] = {
    "sentiment": "sentiment",
    "history.previous_sentiment": "sentiment",
    "comment.sentiment": "tone",
    "nps_class": "nps_class",
}
#: Facts the catalog names (``rules.fact.<fact with _ for .>``); on a segment alert ``score`` differs.
NAMED_FACTS = frozenset(
    {
        "metric",
        "scale",
        "score",
        "normalized",
        "sentiment",
        "nps_class",
        "touchpoint",
        "source",
        "survey_id",
        "comment.sentiment",
        "comment.sentiment_score",
        "comment.language",
        "themes",
        "account.id",
        "account.tier",
        "account.value",
        "customer.locale",
        "history.ratings_30d",
        "history.negative_30d",
        "history.low_scores_30d",
        "history.positive_30d",
        "history.average_30d",
        "history.previous_sentiment",
        "history.previous_normalized",
        "history.days_since_previous",
        "history.trend",
        "health.score",
        "health.band",
        "health.previous_band",
        "health.delta_30d",
        "window",
        "segment",
        "reason",
        "previous",
        "delta",
        "threshold",
        "responses",
        "p_value",
        "drift.status",
        "drift.day",
        "drift.since",
        "drift.drop",
        "drift.drop_ci_low",
        "drift.drop_ci_high",
        "drift.before",
        "drift.after",
        "drift.answers_before",
        "drift.answers_after",
        "drift.evidence",
        "drift.evidence_threshold",
        "drift.watched_drop",
        "drift.min_drop",
        "drift.months_per_false_alarm",
        "drift.message",
    }
)
_COMPARISONS = ("gt", "gte", "lt", "lte")
_DURATION = re.compile(r"^(\d+)\s*(s|m|h|d|w)$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_UNITS = (("week", 604800), ("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))


# ---- durations ------------------------------------------------------------------------------------
def parse_duration(value: Any) -> timedelta | None:
    """A duration as the rules write it (``24h``, ``7d``, seconds); None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    if isinstance(value, str):
        found = _DURATION.match(value.strip())
        if found:
            return timedelta(seconds=int(found.group(1)) * _SECONDS[found.group(2)])
    return None


def duration(value: timedelta | float, words: Words) -> str:
    """Exact, in the largest unit that divides it at least twice: 24 h -> "24 hours" / "24 heures",
    48 h -> "2 days", 14 d -> "2 weeks" (never "1 day" for an SLA people count in hours)."""
    seconds = int(value.total_seconds() if isinstance(value, timedelta) else value)
    for unit, size in _UNITS:
        if seconds >= 2 * size and seconds % size == 0:
            return str(format_unit(seconds // size, f"duration-{unit}", length="long", locale=words.locale))
    return str(format_unit(seconds, "duration-second", length="long", locale=words.locale))


# ---- values ---------------------------------------------------------------------------------------
def _decimals(value: float) -> int:
    text = f"{value:.3f}".rstrip("0")
    return len(text.split(".", 1)[1]) if "." in text else 0


def value_text(fact: str, value: Any, words: Words) -> str:
    """One value as the reader says it: words for known values, numbers in the locale's format."""
    if isinstance(value, bool):
        return words.t(f"rules.value.{'true' if value else 'false'}")
    if isinstance(value, int | float):
        if fact in RATIO_FACTS:
            return words.percent(float(value), digits=_decimals(float(value) * 100))
        return words.number(value, digits=_decimals(float(value)))
    if value is None:
        return words.t("rules.diff.absent")
    text = str(value)
    if fact == "metric":
        return text.upper()
    kind = VALUE_KINDS.get(fact)
    if kind is not None:
        key = f"rules.value.{kind}.{text}"
        found = words.t(key)
        return text if found == key else found
    if fact == "themes":
        return text.replace("_", " ")
    return text


def one_of(fact: str, values: Sequence[Any], words: Words) -> str:
    """``a``, ``a or b``, ``a, b or c`` (``ou`` in French)."""
    texts = [value_text(fact, v, words) for v in values]
    if len(texts) <= 1:
        return texts[0] if texts else words.t("rules.diff.absent")
    return words.t("rules.join.or", rest=", ".join(texts[:-1]), last=texts[-1])


def all_of(clauses: Sequence[str], words: Words) -> str:
    if len(clauses) == 1:
        return clauses[0]
    return words.t("rules.join.and", rest=", ".join(clauses[:-1]), last=clauses[-1])


# ---- facts and matchers ---------------------------------------------------------------------------
def subject(fact: str, words: Words, *, on: str = "rating") -> str:
    """The noun phrase naming a fact: "the account tier", "the store segment", "the customer's plan"."""
    if on == "segment_alert" and fact == "score":
        return words.t("rules.fact.segment_score")
    if fact in NAMED_FACTS:
        return words.t(f"rules.fact.{fact.replace('.', '_')}")
    if fact.startswith("segment.") and len(fact) > len("segment."):
        return words.t("rules.fact.segment_dimension", name=fact.split(".", 1)[1])
    if fact.startswith("customer.") and len(fact) > len("customer."):
        return words.t("rules.fact.customer_attribute", name=fact.split(".", 1)[1].replace("_", " "))
    return words.t("rules.fact.other", name=fact)


def clause(fact: str, matcher: Any, words: Words, *, on: str = "rating", who: str | None = None) -> str:
    """One condition as a clause; ``who`` replaces the fact's subject (the metric folded into the score)."""
    name = who or subject(fact, words, on=on)
    if fact in BOOL_FACTS:
        polarity = _polarity(matcher)
        if polarity is not None:
            return words.t(f"rules.bool.{fact.replace('.', '_')}.{'true' if polarity else 'false'}")
    if isinstance(matcher, list):
        return words.t("rules.op.is", subject=name, value=one_of(fact, matcher, words))
    if not isinstance(matcher, Mapping):
        key = "rules.op.compare" if _is_number(matcher) else "rules.op.is"
        value = value_text(fact, matcher, words)
        return words.t(key, subject=name, comparison=value, value=value)
    return all_of(_operators(fact, matcher, name, words), words)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _polarity(matcher: Any) -> bool | None:
    """True/false for ``true``, ``{eq: true}``, ``{ne: false}``...; None for anything else."""
    if isinstance(matcher, bool):
        return matcher
    if isinstance(matcher, Mapping) and len(matcher) == 1:
        (op, value), *_ = matcher.items()
        if isinstance(value, bool) and op in ("eq", "ne"):
            return value if op == "eq" else not value
    return None


def _operators(fact: str, matcher: Mapping[str, Any], name: str, words: Words) -> list[str]:
    """A map of operators: the comparisons read together ("50 % or more and less than 90 %")."""
    clauses: list[str] = []
    comparisons = [
        words.t(f"rules.cmp.{op}", value=value_text(fact, matcher[op], words))
        for op in _COMPARISONS
        if op in matcher
    ]
    if "eq" in matcher and _is_number(matcher["eq"]):
        comparisons.insert(0, words.t("rules.cmp.eq", value=value_text(fact, matcher["eq"], words)))
    if comparisons:
        clauses.append(words.t("rules.op.compare", subject=name, comparison=all_of(comparisons, words)))
    for op, expected in matcher.items():
        if op in _COMPARISONS or (op == "eq" and _is_number(expected)):
            continue
        clauses.append(_operator(fact, op, expected, name, words))
    return clauses


def _operator(fact: str, op: str, expected: Any, name: str, words: Words) -> str:
    values = expected if isinstance(expected, list) else [expected]
    if op == "present":
        if fact == "themes":
            return words.t(f"rules.present.themes.{'true' if expected else 'false'}")
        return words.t("rules.op.known" if expected else "rules.op.unknown", subject=name)
    if op in ("eq", "in"):
        return words.t("rules.op.is", subject=name, value=one_of(fact, values, words))
    if op in ("ne", "not_in"):
        return words.t("rules.op.is_not", subject=name, value=one_of(fact, values, words))
    if op in ("contains", "contains_any"):
        key = "rules.op.include" if op == "contains" else "rules.op.include_any"
        return words.t(key, subject=name, value=one_of(fact, values, words))
    return words.t("rules.op.is", subject=name, value=f"{op} {one_of(fact, values, words)}")


# ---- whole conditions -----------------------------------------------------------------------------
def conditions(
    cond: Mapping[str, Any], words: Words, *, on: str = "rating", inside: bool = False
) -> list[str]:
    """The clauses of a condition map, ANDed, in the map's order; nested ``not`` included.
    ``inside``: the map is one case of an ``any``, where an ``all`` needs its parentheses."""
    clauses: list[str] = []
    metric = cond.get("metric")
    fold = isinstance(metric, str) and "score" in cond and on == "rating"
    # Plain facts first, then the nested groups: stored rules (jsonb) do not keep the file's key order.
    ordered = sorted(
        cond.items(),
        key=lambda item: ("any", "all", "not").index(item[0]) + 1 if item[0] in ("any", "all", "not") else 0,
    )
    for fact, matcher in ordered:
        if fact == "metric" and fold:
            continue
        if fact in ("any", "all") and isinstance(matcher, list):
            clauses.append(_nested(fact, matcher, words, on=on, alone=len(cond) == 1 and not inside))
        elif fact == "not" and isinstance(matcher, Mapping):
            clauses.append(
                words.t("rules.negated", conditions=all_of(conditions(matcher, words, on=on), words))
            )
        else:
            who = (
                words.t("rules.fact.metric_rating", metric=str(metric).upper())
                if fact == "score" and fold
                else None
            )
            clauses.append(clause(str(fact), matcher, words, on=on, who=who))
    return clauses


def _nested(kind: str, items: Sequence[Any], words: Words, *, on: str, alone: bool) -> str:
    if kind == "all":
        parts = [all_of(conditions(sub, words, on=on), words) for sub in items if isinstance(sub, Mapping)]
        text = all_of(parts, words)
        return text if alone or len(parts) == 1 else words.t("rules.group_all", items=text)
    parts = []
    for sub in items:
        if isinstance(sub, Mapping):
            found = conditions(sub, words, on=on, inside=len(items) > 1)
            part = all_of(found, words)
            parts.append(words.t("rules.group_all", items=part) if len(found) > 1 else part)
    if len(parts) == 1:
        return parts[0]
    text = words.t("rules.join.any", rest=", ".join(parts[:-1]), last=parts[-1])
    return text if alone else words.t("rules.group_any", items=text)


def sentence(when: Mapping[str, Any] | None, words: Words, *, on: str = "rating") -> str:
    """The whole ``when`` of a rule: "When ..., unless ..." (or "For every rating")."""
    cond = dict(when or {})
    negated = cond.pop("not", None) if isinstance(cond.get("not"), Mapping) else None
    clauses = conditions(cond, words, on=on)
    trigger = on if on in ("rating", "segment_alert") else "rating"
    if clauses:
        text = words.t(f"rules.when.{trigger}", conditions=all_of(clauses, words))
    else:
        text = words.t(f"rules.when.always.{trigger}")
    if negated is not None:
        text = words.t(
            "rules.when.unless", sentence=text, conditions=all_of(conditions(negated, words, on=on), words)
        )
    return text
