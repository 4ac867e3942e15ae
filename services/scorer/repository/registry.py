"""The segment registry on PostgreSQL: which dimensions and values have counters of their own.

``scorer.segment_dimensions`` / ``segment_values`` grow within the caps (``segments`` plans what to
register); a per-process cache answers most ratings without a query.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scorer.domain import OTHER
from services.scorer.ports import CountedSegments, Registration
from services.scorer.repository.tables import ADVISORY_CLASS, LOCK_DIMENSIONS
from services.scorer.segments import (
    KEY_SEPARATOR,
    RegistryView,
    counted_keys,
    plan_dimensions,
    plan_registration,
)


class Registry:
    """Reads and extends ``scorer.segment_dimensions`` / ``segment_values`` with a local cache.

    What a transaction that wrote to the registry learnt is held back until a later call proves it
    committed (a rolled-back registration must not be remembered).
    """

    def __init__(
        self,
        *,
        max_values: int,
        max_dimensions: int,
        combinations: Sequence[tuple[str, ...]] = (),
        max_cached_keys: int = 50_000,
    ) -> None:
        self.max_values = max_values
        self.max_dimensions = max_dimensions
        self.combinations = list(combinations)
        self.max_cached_keys = max_cached_keys
        self._keys: dict[tuple[tuple[str, str], ...], CountedSegments] = {}
        self.view = RegistryView()
        self._pending_dims: set[str] = set()
        self._pending_values: set[tuple[str, str]] = set()
        self._pending_dropped: set[str] = set()

    async def _settle_pending(self, conn: AsyncConnection) -> None:
        self._pending_dropped.clear()
        if self._pending_dims:
            rows = await conn.execute(
                text("SELECT dimension FROM scorer.segment_dimensions WHERE dimension = ANY(:d)"),
                {"d": sorted(self._pending_dims)},
            )
            self.view.learn(dimensions=[r.dimension for r in rows])
            self._pending_dims.clear()
        if self._pending_values:
            found = await _registered_values(conn, self._pending_values)
            self.view.learn(registered=found)
            self._pending_values.clear()

    async def resolve(self, conn: AsyncConnection, segments: Iterable[Mapping[str, str]]) -> None:
        """Make every (dimension, value) in ``segments`` known to the view, registering within the caps."""
        if self._pending_dims or self._pending_values or self._pending_dropped:
            await self._settle_pending(conn)
        keys = self._keys
        pairs = self.view.unknown(s for s in segments if tuple(s.items()) not in keys)
        if not pairs:
            return
        dims = {
            d for d, _ in pairs if d not in self.view.dimensions and d not in self.view.dropped_dimensions
        }
        if dims:
            await self._resolve_dimensions(conn, dims)
        wanted = {(d, v) for d, v in pairs if d in self.view.dimensions or d in self._pending_dims}
        wanted = {(d, v) for d, v in wanted if v != OTHER}
        if wanted:
            await self._resolve_values(conn, wanted)

    async def _resolve_dimensions(self, conn: AsyncConnection, dims: set[str]) -> None:
        known = await _known_dimensions(conn, dims)
        self.view.learn(dimensions=known)
        new = dims - known
        if not new:
            return
        await conn.execute(
            text("SELECT pg_advisory_xact_lock(:c, :k)"), {"c": ADVISORY_CLASS, "k": LOCK_DIMENSIONS}
        )
        known = await _known_dimensions(conn, new)
        self.view.learn(dimensions=known)
        new -= known
        if not new:
            return
        total = (await conn.execute(text("SELECT count(*) FROM scorer.segment_dimensions"))).scalar_one()
        register, drop = plan_dimensions(new, registered=int(total), cap=self.max_dimensions)
        if register:
            await conn.execute(
                text(
                    "INSERT INTO scorer.segment_dimensions (dimension) "
                    "SELECT unnest(CAST(:d AS text[])) ORDER BY 1"
                ),
                {"d": register},
            )
            self._pending_dims.update(register)
            # Dropped because of registrations that may yet roll back: decided again next time.
            self._pending_dropped.update(drop)
        else:
            # The committed registry is full: these stay dropped while the cap holds.
            self.view.learn(dropped=drop)

    async def _resolve_values(self, conn: AsyncConnection, pairs: set[tuple[str, str]]) -> None:
        found = await _registered_values(conn, pairs)
        self.view.learn(registered=found)
        missing = pairs - found
        if not missing:
            return
        dims = sorted({d for d, _ in missing})
        rows = await conn.execute(
            text(
                "SELECT dimension, n_values FROM scorer.segment_dimensions WHERE dimension = ANY(:d) "
                "ORDER BY dimension FOR UPDATE"
            ),
            {"d": dims},
        )
        counts = {r.dimension: int(r.n_values) for r in rows}
        again = await _registered_values(conn, missing)
        self.view.learn(registered=again)
        missing -= again
        if not missing:
            return
        wanted: dict[str, set[str]] = {}
        for d, v in missing:
            wanted.setdefault(d, set()).add(v)
        register, fold = plan_registration(wanted, registered_counts=counts, cap=self.max_values)
        new_pairs = [(d, v) for d, values in register.items() for v in values]
        if new_pairs:
            await conn.execute(
                text(
                    "INSERT INTO scorer.segment_values (dimension, value) "
                    "SELECT * FROM unnest(CAST(:d AS text[]), CAST(:v AS text[])) ORDER BY 1, 2"
                ),
                {"d": [d for d, _ in new_pairs], "v": [v for _, v in new_pairs]},
            )
            await conn.execute(
                text(
                    "UPDATE scorer.segment_dimensions AS s SET n_values = s.n_values + u.n "
                    "FROM unnest(CAST(:d AS text[]), CAST(:n AS int[])) AS u(dimension, n) "
                    "WHERE s.dimension = u.dimension"
                ),
                {"d": list(register), "n": [len(v) for v in register.values()]},
            )
            self._pending_values.update(new_pairs)
        # Folds in a dimension this transaction did not write to rest on committed data: cache them.
        cacheable = [(d, v) for d, values in fold.items() if d not in register for v in values]
        if cacheable:
            self.view.learn(folded=cacheable)

    def _fold(self, attributes: Mapping[str, str]) -> tuple[dict[str, str], list[str], bool]:
        """Attributes as counted after :meth:`resolve` (pending registrations count as registered), the
        dimensions folded, and whether that rests on committed registry facts only (safe to cache)."""
        out: dict[str, str] = {}
        folded: list[str] = []
        settled = True
        view = self.view
        for dim, value in attributes.items():
            if dim in view.dropped_dimensions:
                continue
            if dim in self._pending_dropped:
                settled = False
                continue
            if dim not in view.dimensions:
                settled = False
                if dim not in self._pending_dims:
                    continue
            if value == OTHER or value in view.values.get(dim, ()):
                out[dim] = value
            elif (dim, value) in self._pending_values:
                out[dim] = value
                settled = False
            else:
                out[dim] = OTHER
                folded.append(dim)
                settled = settled and value in view.folded.get(dim, ())
        return out, folded, settled

    async def counted_all(
        self, conn: AsyncConnection, segments: Sequence[Mapping[str, str]]
    ) -> list[CountedSegments]:
        """:meth:`counted` for each of ``segments``, resolving first only those not memoised yet."""
        keys = self._keys
        out = [keys.get(tuple(s.items())) for s in segments]
        missing = [s for s, hit in zip(segments, out, strict=True) if hit is None]
        if missing or self._pending_dims or self._pending_values or self._pending_dropped:
            await self.resolve(conn, (s for s in missing if s))
        return [hit if hit is not None else self.counted(s) for s, hit in zip(segments, out, strict=True)]

    def counted(self, attributes: Mapping[str, str]) -> CountedSegments:
        """A rating's segment keys joined for SQL, the dimensions folded, and the attributes dropped.

        Memoised per distinct attribute set: most ratings repeat a few thousand combinations, and the
        answer for settled registry facts never changes (registrations only grow).
        """
        cache_key = tuple(attributes.items())
        hit = self._keys.get(cache_key)
        if hit is not None:
            return hit
        folded, folded_dims, settled = self._fold(attributes)
        result = CountedSegments(
            KEY_SEPARATOR.join(counted_keys(folded, self.combinations)),
            tuple(folded_dims),
            len(attributes) - len(folded),
        )
        if settled:
            if len(self._keys) >= self.max_cached_keys:
                self._keys.clear()
            self._keys[cache_key] = result
        return result


async def _known_dimensions(conn: AsyncConnection, dims: Iterable[str]) -> set[str]:
    rows = await conn.execute(
        text("SELECT dimension FROM scorer.segment_dimensions WHERE dimension = ANY(:d)"), {"d": sorted(dims)}
    )
    return {r.dimension for r in rows}


async def _registered_values(conn: AsyncConnection, pairs: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    items = sorted(pairs)
    if not items:
        return set()
    rows = await conn.execute(
        text(
            "SELECT v.dimension, v.value FROM scorer.segment_values v "
            "JOIN unnest(CAST(:d AS text[]), CAST(:v AS text[])) AS p(dimension, value) "
            "ON v.dimension = p.dimension AND v.value = p.value"
        ),
        {"d": [d for d, _ in items], "v": [v for _, v in items]},
    )
    return {(r.dimension, r.value) for r in rows}


async def registration(conn: AsyncConnection, *, attributes: Mapping[str, str]) -> Registration:
    """Which of ``attributes``' dimensions are registered, and which of their values."""
    if not attributes:
        return Registration(frozenset(), frozenset())
    dimensions = await _known_dimensions(conn, attributes)
    values = await _registered_values(conn, ((d, v) for d, v in attributes.items() if d in dimensions))
    return Registration(frozenset(dimensions), frozenset(d for d, _ in values))
