"""In-memory scorer storage implementing every port of ``services.scorer.ports`` (the real ones are in
``services.scorer.repository``): the consumer's, the evaluator's and the routes' reads.

It keeps what the PostgreSQL adapters promise: a rating stored once by id, counted into the minute,
hour and day tiers of each of its segment keys (fine buckets below the cutoffs skipped), the touched
segments marked dirty with a version, the caps on dimensions and values (same planning functions),
and states saved only when their sequence does not go back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from services.scorer.domain import OTHER, parse_segment_key
from services.scorer.drift import DriftState, status_of
from services.scorer.increments import DAY_TIER, HOUR_TIER, MINUTE_TIER
from services.scorer.ports import (
    CommentQuery,
    CommentRow,
    CountedSegments,
    Counts,
    CountsKey,
    DirtySegment,
    DriftKey,
    DriftRecord,
    HistoryCursor,
    HistoryRow,
    KeyFilter,
    LabelledRange,
    LabelledSpan,
    Rating,
    Registration,
    ScoreGroup,
    SegmentFacts,
    StateKey,
)
from services.scorer.responses import Answer, Counted, Invitation, ResponseCounts, ResponseIncrement
from services.scorer.revisions import Held, plan, replacement
from services.scorer.segments import KEY_SEPARATOR, counted_keys, plan_dimensions, plan_registration
from services.scorer.signals import SegmentState
from services.scorer.windows import DAY, HOUR, MINUTE, floor_to


@dataclass(frozen=True, slots=True)
class Bucket:
    """One counter row: a tier's bucket of one (metric, segment, scale, score)."""

    metric: str
    segment_key: str
    start: datetime
    scale: str
    score: int


class MemoryScorerStore:
    def __init__(
        self,
        *,
        max_values: int = 1000,
        max_dimensions: int = 50,
        combinations: Sequence[tuple[str, ...]] = (),
    ) -> None:
        self.max_values = max_values
        self.max_dimensions = max_dimensions
        self.combinations = list(combinations)
        self.dimensions: set[str] = set()
        self.values: dict[str, set[str]] = {}
        self.ratings: dict[str, Rating] = {}
        self.tiers: dict[str, Counter[Bucket]] = {"minute": Counter(), "hour": Counter(), "day": Counter()}
        self.dirty: dict[tuple[str, str], int] = {}
        self.states: dict[tuple[str, StateKey], SegmentState] = {}
        self.drift_saved: dict[DriftKey, DriftRecord] = {}
        self.batches = 0  # batch transactions seen (one commit_without_flush_wait each)
        self.fail_saves = False  # the evaluator's save fails (a crash after publishing)
        self.responses = MemoryResponses()

    # ---- ports.RatingCounter --------------------------------------------------------------------
    async def commit_without_flush_wait(self, tx: object) -> None:
        self.batches += 1

    async def counted_all(self, tx: object, segments: Sequence[Mapping[str, str]]) -> list[CountedSegments]:
        self._register(segments)
        return [self._counted(s) for s in segments]

    def _register(self, segments: Sequence[Mapping[str, str]]) -> None:
        new_dims = {d for s in segments for d in s} - self.dimensions
        register, _dropped = plan_dimensions(
            new_dims, registered=len(self.dimensions), cap=self.max_dimensions
        )
        self.dimensions.update(register)
        wanted: dict[str, set[str]] = {}
        for s in segments:
            for dim, value in s.items():
                if dim in self.dimensions and value != OTHER and value not in self.values.get(dim, ()):
                    wanted.setdefault(dim, set()).add(value)
        counts = {d: len(v) for d, v in self.values.items()}
        added, _folded = plan_registration(wanted, registered_counts=counts, cap=self.max_values)
        for dim, values in added.items():
            self.values.setdefault(dim, set()).update(values)

    def _counted(self, attributes: Mapping[str, str]) -> CountedSegments:
        kept: dict[str, str] = {}
        folded: list[str] = []
        for dim, value in attributes.items():
            if dim not in self.dimensions:
                continue
            if value == OTHER or value in self.values.get(dim, ()):
                kept[dim] = value
            else:
                kept[dim] = OTHER
                folded.append(dim)
        keys = KEY_SEPARATOR.join(counted_keys(kept, self.combinations))
        return CountedSegments(keys, tuple(folded), len(attributes) - len(kept))

    async def apply_batch(
        self,
        tx: object,
        *,
        ratings: Sequence[Rating],
        keys: Sequence[str],
        minute_since: datetime,
        hour_since: datetime,
    ) -> set[str]:
        ids = [r.rating_id for r in ratings]
        # One statement would count a repeated id twice: the handler must not send one.
        assert len(set(ids)) == len(ids), "a batch repeats a rating id"
        new: set[str] = set()
        for rating, joined in zip(ratings, keys, strict=True):
            if rating.rating_id in self.ratings:
                continue
            self.ratings[rating.rating_id] = rating
            new.add(rating.rating_id)
            minute = floor_to(rating.occurred_at, MINUTE)
            for key in joined.split(KEY_SEPARATOR):
                if minute >= minute_since:
                    self.tiers["minute"][self._bucket(rating, key, minute)] += 1
                if minute >= hour_since:
                    self.tiers["hour"][self._bucket(rating, key, floor_to(minute, HOUR))] += 1
                self.tiers["day"][self._bucket(rating, key, floor_to(minute, DAY))] += 1
                dirty = (rating.metric.value, key)
                self.dirty[dirty] = self.dirty.get(dirty, 0) + 1
        return new

    async def apply_revisions(
        self,
        tx: object,
        *,
        ratings: Sequence[Rating],
        keys: Sequence[str],
        minute_since: datetime,
        hour_since: datetime,
    ) -> set[str]:
        held = {
            r.rating_id: Held(
                r.rating_id,
                r.revision,
                r.metric.value,
                r.scale,
                r.score,
                r.occurred_at,
                self._counted(r.segment).keys,
            )
            for r in (self.ratings.get(x.rating_id) for x in ratings)
            if r is not None
        }
        todo = plan(ratings, held)
        inserted = await self.apply_batch(
            tx,
            ratings=[ratings[i] for i in todo.insert],
            keys=[keys[i] for i in todo.insert],
            minute_since=minute_since,
            hour_since=hour_since,
        )
        moves = replacement(
            [ratings[i] for i, _ in todo.replace],
            [keys[i] for i, _ in todo.replace],
            [old for _, old in todo.replace],
            minute_since=minute_since,
            hour_since=hour_since,
        )
        tier_names = {MINUTE_TIER: "minute", HOUR_TIER: "hour", DAY_TIER: "day"}
        for m in moves:
            start = datetime.fromtimestamp(m.bucket_s, UTC)
            self.tiers[tier_names[m.tier]][Bucket(m.metric, m.segment_key, start, m.scale, m.score)] += m.n
            self.dirty[(m.metric, m.segment_key)] = self.dirty.get((m.metric, m.segment_key), 0) + 1
        for i, _ in todo.replace:
            self.ratings[ratings[i].rating_id] = ratings[i]
        return inserted | {ratings[i].rating_id for i, _ in todo.replace}

    @staticmethod
    def _bucket(rating: Rating, key: str, start: datetime) -> Bucket:
        return Bucket(rating.metric.value, key, start, rating.scale, rating.score)

    # ---- ports.ScoreEventStore ------------------------------------------------------------------
    async def dirty_segments(self, *, limit: int, after: DirtySegment | None) -> list[DirtySegment]:
        start = ("", "") if after is None else (after.metric, after.segment_key)
        found = sorted(k for k in self.dirty if k > start)[:limit]
        return [DirtySegment(metric, key, self.dirty[(metric, key)]) for metric, key in found]

    async def load_segments(
        self, *, metric: str, keys: Sequence[str], spans: Sequence[LabelledSpan]
    ) -> SegmentFacts:
        counts = await self.load_counts(metric=metric, where=KeyFilter(keys=keys), spans=spans)
        states = {sk: s for (m, sk), s in self.states.items() if m == metric and sk.segment_key in keys}
        return SegmentFacts(counts=counts, states=states)

    async def save_evaluation(
        self,
        *,
        states: Mapping[str, Mapping[StateKey, SegmentState]],
        evaluated: Sequence[DirtySegment],
    ) -> None:
        if self.fail_saves:
            raise ConnectionError("the database went away before the evaluation was saved")
        for metric, by_key in states.items():
            for key, state in by_key.items():
                saved = self.states.get((metric, key))
                if saved is None or saved.seq <= state.seq:
                    self.states[(metric, key)] = state
        for d in evaluated:
            if self.dirty.get((d.metric, d.segment_key)) == d.version:
                del self.dirty[(d.metric, d.segment_key)]

    # ---- ports.DriftStore -----------------------------------------------------------------------
    async def drift_pending(self, *, through: date, limit: int, after: DriftKey | None) -> list[DriftKey]:
        end = _midnight(through + timedelta(days=1))
        keys = sorted({DriftKey(b.metric, b.segment_key) for b in self.tiers["day"] if b.start < end})
        pending = [
            k
            for k in keys
            if (after is None or k > after)
            and not (k in self.drift_saved and (self.drift_saved[k].state.day or date.min) >= through)
        ]
        return pending[:limit]

    async def drift_states(self, *, metric: str, keys: Sequence[str]) -> dict[str, DriftState]:
        found = (self.drift_saved.get(DriftKey(metric, k)) for k in keys)
        return {r.segment_key: r.state for r in found if r is not None}

    async def first_days(self, *, metric: str, keys: Sequence[str]) -> dict[str, date]:
        out: dict[str, date] = {}
        for b in self.tiers["day"]:
            if b.metric == metric and b.segment_key in keys:
                day = b.start.astimezone(UTC).date()
                out[b.segment_key] = min(day, out.get(b.segment_key, day))
        return out

    async def day_counts(
        self, *, metric: str, since: Mapping[str, date], through: date
    ) -> dict[str, dict[date, Counts]]:
        out: dict[str, dict[date, Counts]] = {}
        for b, n in self.tiers["day"].items():
            day = b.start.astimezone(UTC).date()
            if b.metric == metric and b.segment_key in since and since[b.segment_key] <= day <= through:
                counts = out.setdefault(b.segment_key, {}).setdefault(day, {})
                counts[(b.scale, b.score)] = counts.get((b.scale, b.score), 0) + n
        return out

    async def save_drift(self, *, states: Mapping[DriftKey, DriftState], evaluated_at: datetime) -> None:
        if self.fail_saves:
            raise ConnectionError("the database went away before the drift states were saved")
        for key, state in states.items():
            saved = self.drift_saved.get(key)
            if saved is None or (saved.state.day or date.min) <= (state.day or date.min):
                self.drift_saved[key] = DriftRecord(key.metric, key.segment_key, state, evaluated_at)

    def reset_drift(self) -> None:
        """What ``csat replay`` does to the drift states."""
        self.drift_saved.clear()

    # ---- ports.ScoreReader and ports.CustomerReader (a session is the store itself) --------------
    @asynccontextmanager
    async def session(self) -> AsyncIterator[MemoryScorerStore]:
        yield self

    async def drift(self, *, metric: str, keys: Sequence[str]) -> dict[str, DriftRecord]:
        found = (self.drift_saved.get(DriftKey(metric, k)) for k in keys)
        return {r.segment_key: r for r in found if r is not None}

    async def drift_list(
        self, *, metric: str | None, status: str | None, after: DriftKey | None, limit: int
    ) -> list[DriftRecord]:
        rows = [
            r
            for k, r in sorted(self.drift_saved.items())
            if (metric is None or k.metric == metric)
            and (status is None or status_of(r.state).value == status)
            and (after is None or k > after)
        ]
        return rows[:limit]

    async def registration(self, *, attributes: Mapping[str, str]) -> Registration:
        dims = frozenset(d for d in attributes if d in self.dimensions)
        valued = frozenset(d for d in dims if attributes[d] in self.values.get(d, ()))
        return Registration(dims, valued)

    async def load_counts(
        self, *, metric: str, where: KeyFilter, spans: Sequence[LabelledSpan]
    ) -> dict[CountsKey, Counts]:
        out: dict[CountsKey, Counts] = {}
        for label, span in spans:
            for b, n in self.tiers[span.tier].items():
                if (
                    b.metric == metric
                    and _selected(b.segment_key, where)
                    and span.start <= b.start < span.end
                ):
                    counts = out.setdefault(CountsKey(label, b.segment_key), {})
                    counts[(b.scale, b.score)] = counts.get((b.scale, b.score), 0) + n
        return out

    async def load_rating_counts(
        self, *, metric: str, attributes: Mapping[str, str], ranges: Sequence[LabelledRange]
    ) -> dict[str, Counts]:
        out: dict[str, Counts] = {}
        for label, start, end in ranges:
            for r in self._matching(metric, attributes):
                if start <= r.occurred_at < end:
                    counts = out.setdefault(label, {})
                    counts[(r.scale, r.score)] = counts.get((r.scale, r.score), 0) + 1
        return out

    async def load_series(
        self,
        *,
        metric: str,
        key: str | None,
        attributes: Mapping[str, str],
        tier: str,
        start: datetime,
        end: datetime,
        step: timedelta,
    ) -> dict[datetime, Counts]:
        rows: Iterable[tuple[datetime, str, int, int]]
        if key is not None:
            rows = (
                (b.start, b.scale, b.score, n)
                for b, n in self.tiers[tier].items()
                if b.metric == metric and b.segment_key == key
            )
        else:
            rows = ((r.occurred_at, r.scale, r.score, 1) for r in self._matching(metric, attributes))
        out: dict[datetime, Counts] = {}
        for at, scale, score, n in rows:
            if start <= at < end:
                counts = out.setdefault(floor_to(at, step), {})
                counts[(scale, score)] = counts.get((scale, score), 0) + n
        return out

    def _matching(self, metric: str, attributes: Mapping[str, str]) -> list[Rating]:
        return [
            r
            for r in self.ratings.values()
            if r.metric.value == metric and all(r.segment.get(d) == v for d, v in attributes.items())
        ]

    async def customer_ratings(
        self, *, customer_id: str, metric: str | None, before: HistoryCursor | None, limit: int
    ) -> list[HistoryRow]:
        rows = sorted(
            self._customer(customer_id, metric), key=lambda r: (r.occurred_at, r.rating_id), reverse=True
        )
        if before is not None:
            rows = [r for r in rows if (r.occurred_at, r.rating_id) < (before.occurred_at, before.rating_id)]
        return [
            HistoryRow(
                r.rating_id,
                r.metric.value,
                r.scale,
                r.score,
                r.sentiment.value,
                r.touchpoint,
                r.comment,
                dict(r.segment),
                r.occurred_at,
            )
            for r in rows[:limit]
        ]

    async def comments(self, *, query: CommentQuery) -> list[CommentRow]:
        q = query
        found = [
            r
            for r in self.ratings.values()
            if r.comment
            and q.start <= r.occurred_at < q.end
            and q.metric in (None, r.metric.value)
            and all(r.segment.get(k) == v for k, v in q.segment.items())
            and (q.score_min is None or r.score >= q.score_min)
            and (q.score_max is None or r.score <= q.score_max)
            and (not q.text or q.text.casefold() in r.comment.casefold())
        ]
        found.sort(key=lambda r: (r.occurred_at, r.rating_id), reverse=True)
        return [
            CommentRow(
                r.rating_id,
                r.metric.value,
                r.scale,
                r.score,
                r.customer.id,
                dict(r.segment),
                r.touchpoint,
                r.comment or "",
                r.occurred_at,
            )
            for r in found[: q.limit]
        ]

    async def customer_score_groups(self, *, customer_id: str, metric: str | None) -> list[ScoreGroup]:
        groups: dict[tuple[str, str, int], list[Rating]] = {}
        for r in self._customer(customer_id, metric):
            groups.setdefault((r.metric.value, r.scale, r.score), []).append(r)
        out = []
        for (m, scale, score), rs in groups.items():
            latest = max(rs, key=lambda r: (r.occurred_at, r.rating_id))
            out.append(ScoreGroup(m, scale, score, len(rs), latest.rating_id, latest.occurred_at))
        return out

    async def customer_accounts(self, *, customer_id: str) -> frozenset[str]:
        return frozenset(
            r.account.id for r in self._customer(customer_id, None) if r.account is not None and r.account.id
        )

    # ---- ports.ResponseCounter and ScoreReader.response_counts ---------------------------------
    async def record_responses(
        self, tx: object, *, invitations: Sequence[Invitation], answers: Mapping[str, Answer]
    ) -> list[Counted]:
        return self.responses.record(invitations, answers)

    async def add_response_counts(self, tx: object, *, increments: Sequence[ResponseIncrement]) -> None:
        self.responses.add(increments)

    async def response_counts(
        self, *, metric: str, key: str | None, attributes: Mapping[str, str], start: datetime, end: datetime
    ) -> ResponseCounts:
        return self.responses.read(metric=metric, key=key, attributes=attributes, start=start, end=end)

    async def response_counts_by_key(
        self, *, metric: str, keys: Sequence[str], start: datetime, end: datetime
    ) -> dict[str, ResponseCounts]:
        found = {
            key: self.responses.read(metric=metric, key=key, attributes={}, start=start, end=end)
            for key in keys
        }
        return {key: counts for key, counts in found.items() if counts.invited}

    def _customer(self, customer_id: str, metric: str | None) -> list[Rating]:
        return [
            r
            for r in self.ratings.values()
            if r.customer.id == customer_id and (metric is None or r.metric.value == metric)
        ]


@dataclass(slots=True)
class ResponseRow:
    """``scorer.survey_responses``: one invitation, whichever of it and its answer came first."""

    metric: str | None = None
    segment: Mapping[str, str] | None = None
    keys: str | None = None
    invited_at: datetime | None = None
    answered_at: datetime | None = None
    commented: bool = False


class MemoryResponses:
    """Invitation rows and per-hour counters with the adapter's semantics (each row counted once)."""

    def __init__(self) -> None:
        self.rows: dict[str, ResponseRow] = {}
        self.counts: dict[tuple[str, str, datetime], list[int]] = {}

    def record(self, invitations: Sequence[Invitation], answers: Mapping[str, Answer]) -> list[Counted]:
        moved: list[Counted] = []
        for i in invitations:
            row = self.rows.setdefault(i.invitation_id, ResponseRow())
            if row.invited_at is not None:
                continue
            row.metric, row.segment, row.keys, row.invited_at = i.metric, i.segment, i.keys, i.invited_at
            answered = row.answered_at is not None
            moved.append(Counted(i.metric, i.keys, i.invited_at, True, answered, row.commented))
        for iid, answer in sorted(answers.items()):
            row = self.rows.setdefault(iid, ResponseRow())
            if row.answered_at is not None:
                continue
            row.answered_at, row.commented = answer.at, answer.commented
            if row.invited_at is not None and row.metric is not None and row.keys is not None:
                moved.append(Counted(row.metric, row.keys, row.invited_at, False, True, answer.commented))
        return moved

    def add(self, increments: Sequence[ResponseIncrement]) -> None:
        for inc in increments:
            total = self.counts.setdefault((inc.metric, inc.segment_key, inc.bucket_start), [0, 0, 0])
            total[0] += inc.invited
            total[1] += inc.answered
            total[2] += inc.commented

    def read(
        self, *, metric: str, key: str | None, attributes: Mapping[str, str], start: datetime, end: datetime
    ) -> ResponseCounts:
        if key is not None:
            found = [
                v for (m, k, b), v in self.counts.items() if m == metric and k == key and start <= b < end
            ]
            return ResponseCounts(*(sum(v[i] for v in found) for i in range(3)))
        rows = [
            r
            for r in self.rows.values()
            if r.metric == metric
            and r.invited_at is not None
            and start <= r.invited_at < end
            and all((r.segment or {}).get(d) == v for d, v in attributes.items())
        ]
        answered = [r for r in rows if r.answered_at is not None]
        return ResponseCounts(len(rows), len(answered), sum(r.commented for r in answered))


def _selected(key: str, where: KeyFilter) -> bool:
    if where.dimensions:
        return key != "*" and sorted(parse_segment_key(key)) == sorted(where.dimensions)
    return key in where.keys


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)
