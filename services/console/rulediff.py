"""What changed between two revisions of the rules (pure): rules added, removed, changed field by field,
or moved (order decides which rule of a group fires), and changed nurture sequences.

Fields are paths into the rule as stored: ``cooldown``, ``when.sentiment``, ``when.any[1].account.value``,
``actions[0].sla``. A list of conditions or actions is compared item by item; a list of values (``[a, b]``
in a matcher) is one value. Values are shown as the rule language writes them (``24h``, ``[a, b]``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

ChangeKind = Literal["added", "removed", "changed", "moved"]


@dataclass(frozen=True, slots=True)
class FieldChange:
    path: str
    before: str | None  # None: the field was absent
    after: str | None


@dataclass(frozen=True, slots=True)
class RuleChange:
    rule_id: str
    kind: ChangeKind
    fields: tuple[FieldChange, ...] = ()
    position_before: int | None = None  # 1-based, among all rules
    position_after: int | None = None


@dataclass(frozen=True, slots=True)
class RuleSetDiff:
    rules: tuple[RuleChange, ...]
    sequences: tuple[FieldChange, ...]

    @property
    def empty(self) -> bool:
        return not self.rules and not self.sequences

    def count(self, kind: ChangeKind) -> int:
        return sum(1 for r in self.rules if r.kind == kind)


def show(value: Any) -> str:
    """A value as the rule language writes it: ``negative``, ``24h``, ``true``, ``[a, b]``."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {show(v)}" for k, v in value.items()) + "}"
    return str(value)


def flatten(value: Any, path: str = "") -> dict[str, str]:
    """Leaves of a rule by path; lists of mappings (conditions, actions) are walked item by item."""
    if isinstance(value, Mapping) and not value and not path:
        return {}  # no rule at all (one side of an added or removed rule)
    if isinstance(value, Mapping) and value:
        out: dict[str, str] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{path}.{key}" if path else str(key)))
        return out
    if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        out = {}
        for i, item in enumerate(value):
            out.update(flatten(item, f"{path}[{i}]"))
        return out
    return {path: show(value)}


def field_changes(before: Any, after: Any) -> tuple[FieldChange, ...]:
    """The leaves that differ, in the order the newer rule lists them (then the removed ones)."""
    old, new = flatten(before), flatten(after)
    changed = [FieldChange(p, old.get(p), v) for p, v in new.items() if old.get(p) != v]
    removed = [FieldChange(p, v, None) for p, v in old.items() if p not in new]
    return tuple(changed + removed)


def _by_id(document: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    items = (document or {}).get("rules")
    rules = [r for r in items if isinstance(r, Mapping)] if isinstance(items, list) else []
    return {str(r.get("id")): r for r in rules}


def diff(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> RuleSetDiff:
    """Rules in the newer revision's order (removed ones where they were), then sequences."""
    before, after = _by_id(old), _by_id(new)
    old_pos = {rid: i + 1 for i, rid in enumerate(before)}
    new_pos = {rid: i + 1 for i, rid in enumerate(after)}
    common_old = [rid for rid in before if rid in after]
    common_new = [rid for rid in after if rid in before]
    moved = set(common_new) - _longest_common(common_old, common_new)
    changes: list[RuleChange] = []
    for rid in _merged_order(list(before), list(after)):
        if rid not in before:
            changes.append(RuleChange(rid, "added", field_changes({}, after[rid]), None, new_pos[rid]))
        elif rid not in after:
            changes.append(RuleChange(rid, "removed", field_changes(before[rid], {}), old_pos[rid], None))
        else:
            fields = field_changes(before[rid], after[rid])
            if fields:
                changes.append(RuleChange(rid, "changed", fields, old_pos[rid], new_pos[rid]))
            if rid in moved:
                changes.append(RuleChange(rid, "moved", (), old_pos[rid], new_pos[rid]))
    sequences = field_changes((old or {}).get("sequences") or {}, (new or {}).get("sequences") or {})
    return RuleSetDiff(rules=tuple(changes), sequences=sequences)


def _merged_order(old: Sequence[str], new: Sequence[str]) -> list[str]:
    """The newer order, each removed rule placed after the rule that preceded it before."""
    out = list(new)
    for i, rid in enumerate(old):
        if rid in out:
            continue
        anchor = next((old[j] for j in range(i - 1, -1, -1) if old[j] in out), None)
        out.insert(out.index(anchor) + 1 if anchor is not None else 0, rid)
    return out


def _longest_common(a: Sequence[str], b: Sequence[str]) -> set[str]:
    """The rules that kept their relative order (a longest common subsequence); the others moved."""
    lengths = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) - 1, -1, -1):
        for j in range(len(b) - 1, -1, -1):
            lengths[i][j] = (
                lengths[i + 1][j + 1] + 1 if a[i] == b[j] else max(lengths[i + 1][j], lengths[i][j + 1])
            )
    kept: set[str] = set()
    i = j = 0
    while i < len(a) and j < len(b):
        if a[i] == b[j]:
            kept.add(a[i])
            i, j = i + 1, j + 1
        elif lengths[i + 1][j] >= lengths[i][j + 1]:
            i += 1
        else:
            j += 1
    return kept
