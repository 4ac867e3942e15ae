"""Live pages: which open pages a score change concerns, told once however many changes arrive (pure asyncio).

One ``LiveHub`` per console process. Each open Scores page holds a ``Subscription`` for its segment
filters (checked against the person's grants when it opened). The feed (``livefeed``) calls
``publish`` with the attributes of a segment whose score moved: every subscription whose filters are
among those attributes is concerned (a change of ``store=paris-1|channel=chat`` moves
``store:paris-1`` and the whole too). A subscription keeps one flag, not a queue: a slow browser, or a
burst of changes, costs nothing but one pending "refresh" (the backpressure is to coalesce), and what
the browser then fetches goes through the person's own session and grants like any page.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import combinations

#: Segments rarely carry more than a few attributes; a change names at most this many subsets.
MAX_ATTRIBUTES = 8


def filter_key(pairs: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(pairs.items()))


@dataclass(eq=False, slots=True)
class Subscription:
    """One open page: its filters, whose session holds it, and whether a refresh is pending."""

    filters: tuple[tuple[str, str], ...]
    owner: bytes  # the session's stored key: bounds streams per session
    _pending: asyncio.Event = field(default_factory=asyncio.Event)

    def notify(self) -> None:
        self._pending.set()

    @property
    def pending(self) -> bool:
        return self._pending.is_set()

    async def wait(self, timeout_s: float) -> bool:
        """True when a refresh is due (and takes it), False when ``timeout_s`` passed without one."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._pending.wait(), timeout_s)
        due = self._pending.is_set()
        self._pending.clear()
        return due


class LiveHub:
    """Subscriptions by filters; caps streams per process and per session (each holds a connection)."""

    def __init__(self, *, max_streams: int, max_per_session: int) -> None:
        self.max_streams = max_streams
        self.max_per_session = max_per_session
        self._by_filters: dict[tuple[tuple[str, str], ...], set[Subscription]] = {}
        self._per_owner: dict[bytes, int] = {}
        self._count = 0
        self.changes = 0  # score changes received
        self.notified = 0  # page refreshes asked for

    @property
    def streams(self) -> int:
        return self._count

    def subscribe(self, *, filters: Mapping[str, str], owner: bytes) -> Subscription | None:
        """A subscription, or None when this process or this session holds as many as allowed."""
        if self._count >= self.max_streams or self._per_owner.get(owner, 0) >= self.max_per_session:
            return None
        sub = Subscription(filters=filter_key(filters), owner=owner)
        self._by_filters.setdefault(sub.filters, set()).add(sub)
        self._per_owner[owner] = self._per_owner.get(owner, 0) + 1
        self._count += 1
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._by_filters.get(sub.filters)
        if subs is None or sub not in subs:
            return
        subs.discard(sub)
        if not subs:
            del self._by_filters[sub.filters]
        left = self._per_owner[sub.owner] - 1
        if left:
            self._per_owner[sub.owner] = left
        else:
            del self._per_owner[sub.owner]
        self._count -= 1

    def publish(self, attributes: Mapping[str, str]) -> int:
        """A segment's score moved: flag every page whose filters it lies within; how many were flagged."""
        self.changes += 1
        items = sorted(attributes.items())
        if len(items) > MAX_ATTRIBUTES:
            return self.resync()
        flagged = 0
        for size in range(len(items) + 1):
            for subset in combinations(items, size):
                for sub in self._by_filters.get(subset, ()):
                    sub.notify()
                    flagged += 1
        self.notified += flagged
        return flagged

    def resync(self) -> int:
        """Flag every page (changes may have been missed: the feed reconnected)."""
        flagged = 0
        for subs in self._by_filters.values():
            for sub in subs:
                sub.notify()
                flagged += 1
        self.notified += flagged
        return flagged
