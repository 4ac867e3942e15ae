"""The scorer's consumer use case: a micro-batch of ratings stored once and counted into its segments.

Score-changed and segment-alert events do not come from here: the batch marks the segments it touched
and ``evaluator.ScoreEvaluator`` publishes from the counters, throttled, after they committed.
The store is called per batch, never per record: this loop is the scorer's throughput.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from services.scorer import metrics as sm
from services.scorer.decoding import RatingRow
from services.scorer.ports import Rating, RatingCounter, Tx
from services.scorer.windows import Tier, prune_cutoffs
from shared.consumer import Received
from shared.envelope import OutgoingRecord
from shared.events import RatingSubmitted

BatchHandler = Callable[[Tx, Sequence[Received]], Awaitable[list[OutgoingRecord]]]


def make_handler(
    *, store: RatingCounter[Tx], tiers: Sequence[Tier], clock: Callable[[], datetime]
) -> BatchHandler[Tx]:
    """The micro-batch handler: fold segments (caps), then store and count new ratings in one statement."""

    async def handle(tx: Tx, batch: Sequence[Received]) -> list[OutgoingRecord]:
        unique: dict[str, Rating] = {}
        for item in batch:
            data = item.envelope.data
            # RatingRow from the lean decoder; RatingSubmitted from the full path (lax inputs). The
            # exact type first: isinstance on a pydantic class goes through ABCMeta, per record.
            if type(data) is RatingRow or isinstance(data, RatingSubmitted):
                held = unique.get(data.rating_id)
                # The newest revision in the batch wins (a survey re-click); a plain repeat keeps the first.
                if held is None or data.revision > held.revision:
                    unique[data.rating_id] = data
        if not unique:
            return []
        await store.commit_without_flush_wait(tx)
        everything = list(unique.values())
        counted_all = await store.counted_all(tx, [r.segment for r in everything])
        cutoff = prune_cutoffs(tiers, now=clock())
        ratings, counted = [], []
        revised, revised_keys = [], []
        for r, c in zip(everything, counted_all, strict=True):
            if r.revision:
                revised.append(r)
                revised_keys.append(c.keys)
            else:
                ratings.append(r)
                counted.append(c)
        new = await store.apply_batch(
            tx,
            ratings=ratings,
            keys=[c.keys for c in counted],
            minute_since=cutoff["minute"],
            hour_since=cutoff["hour"],
        )
        if revised:
            await store.apply_revisions(
                tx,
                ratings=revised,
                keys=revised_keys,
                minute_since=cutoff["minute"],
                hour_since=cutoff["hour"],
            )
        folds: Counter[str] = Counter()
        dropped = 0
        for r, c in zip(ratings, counted, strict=True):
            if (c.folded or c.dropped) and r.rating_id in new:
                folds.update(c.folded)
                dropped += c.dropped
        for dim, n in folds.items():
            sm.VALUES_FOLDED.labels(dim).inc(n)
        if dropped:
            sm.DIMENSIONS_DROPPED.inc(dropped)
        return []

    return handle
