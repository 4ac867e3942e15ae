"""Which counters a rating feeds, with a cap on distinct values per dimension (pure code).

A registry records the dimensions and values that have counters of their own. A value first seen
while its dimension holds fewer than ``max_values`` values is registered (for ever); once the
dimension is full, every unregistered value is folded into ``other``. Registration is monotonic, so
whether a rating's value is folded depends only on the final registry, never on the order ratings
were processed in: a replay from the stored ratings, or a recomputation in SQL, gives the same
counters. Dimensions beyond ``max_dimensions`` get no per-attribute counters at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field

from services.scorer.domain import GLOBAL_SEGMENT, OTHER, segment_key

KEY_SEPARATOR = "\x1f"  # joins a rating's segment keys in one SQL parameter; never in a key


@dataclass(slots=True)
class RegistryView:
    """What this process knows of the registry: registered dimensions and values, and known folds.

    ``folded`` records what the database said when this process last asked: values it found
    unregistered in a full dimension (they can never be registered while the cap holds). Folding a
    rating's attributes with these facts is ``repository.registry.Registry.counted``.
    """

    dimensions: set[str] = field(default_factory=set)
    dropped_dimensions: set[str] = field(default_factory=set)
    values: dict[str, set[str]] = field(default_factory=dict)
    folded: dict[str, set[str]] = field(default_factory=dict)
    max_folded_cache: int = 100_000
    _folded_size: int = 0

    def knows(self, dimension: str, value: str) -> bool:
        if dimension in self.dropped_dimensions:
            return True
        if dimension not in self.dimensions:
            return False
        return (
            value == OTHER
            or value in self.values.get(dimension, ())
            or value in self.folded.get(dimension, ())
        )

    def unknown(self, segments: Iterable[Mapping[str, str]]) -> set[tuple[str, str]]:
        """(dimension, value) pairs the database must be asked about."""
        out: set[tuple[str, str]] = set()
        for attrs in segments:
            for dim, value in attrs.items():
                if not self.knows(dim, value):
                    out.add((dim, value))
        return out

    def learn(
        self,
        *,
        dimensions: Iterable[str] = (),
        dropped: Iterable[str] = (),
        registered: Iterable[tuple[str, str]] = (),
        folded: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.dimensions.update(dimensions)
        self.dropped_dimensions.update(dropped)
        for dim, value in registered:
            self.values.setdefault(dim, set()).add(value)
        for dim, value in folded:
            if self._folded_size >= self.max_folded_cache:
                self.folded.clear()
                self._folded_size = 0
            bucket = self.folded.setdefault(dim, set())
            if value not in bucket:
                bucket.add(value)
                self._folded_size += 1


def plan_registration(
    wanted: Mapping[str, Set[str]], *, registered_counts: Mapping[str, int], cap: int
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """New values to register (sorted, while the dimension has room) and values to fold."""
    register: dict[str, list[str]] = {}
    fold: dict[str, list[str]] = {}
    for dim in sorted(wanted):
        candidates = sorted(v for v in wanted[dim] if v != OTHER)
        room = max(0, cap - registered_counts.get(dim, 0))
        if candidates[:room]:
            register[dim] = candidates[:room]
        if candidates[room:]:
            fold[dim] = candidates[room:]
    return register, fold


def plan_dimensions(wanted: Set[str], *, registered: int, cap: int) -> tuple[list[str], list[str]]:
    """New dimensions to register (sorted, while there is room) and dimensions to drop."""
    candidates = sorted(wanted)
    room = max(0, cap - registered)
    return candidates[:room], candidates[room:]


def combination_key(attributes: Mapping[str, str], combo: Sequence[str]) -> str | None:
    if len(combo) > 1 and all(dim in attributes for dim in combo):
        return segment_key({dim: attributes[dim] for dim in combo})
    return None


def counted_keys(folded: Mapping[str, str], combinations: Sequence[Sequence[str]]) -> list[str]:
    """Segment keys a rating feeds once folded: global, each attribute, each configured combination."""
    keys = [GLOBAL_SEGMENT]
    keys.extend(segment_key({dim: folded[dim]}) for dim in sorted(folded))
    for combo in combinations:
        key = combination_key(folded, combo)
        if key is not None:
            keys.append(key)
    return keys


def normalise_combinations(combinations: Iterable[Sequence[str]]) -> list[tuple[str, ...]]:
    """Sorted, de-duplicated combinations of at least two distinct dimensions."""
    out: list[tuple[str, ...]] = []
    for combo in combinations:
        dims = tuple(sorted(set(combo)))
        if len(dims) > 1 and dims not in out:
            out.append(dims)
    return out
