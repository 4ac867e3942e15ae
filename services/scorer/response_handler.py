"""The scorer's second use case on the same micro-batch: survey invitations and their answers counted
per segment for the response rate (``responses``), in the batch's transaction with its offsets.

Invitations come from ``csat.surveys.invited.v1``; an answer is any rating carrying the invitation id
as ``survey_id`` (the rating handler stores and scores it; this one only notes that it answered).
Nothing to do for a batch without either: the rating hot path pays one attribute read per rating.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.scorer.decoding import RatingRow
from services.scorer.handlers import BatchHandler
from services.scorer.ports import ResponseCounter, Tx
from services.scorer.responses import Answer, Invitation, increments
from shared.consumer import Received
from shared.envelope import OutgoingRecord
from shared.events import RatingSubmitted, SurveyInvited


def make_response_handler(*, store: ResponseCounter[Tx]) -> BatchHandler[Tx]:
    """Invitations and first answers of a micro-batch -> one write of the rows, one of the counters."""

    async def handle(tx: Tx, batch: Sequence[Received]) -> list[OutgoingRecord]:
        invited: dict[str, SurveyInvited] = {}
        answers: dict[str, Answer] = {}
        for item in batch:
            data = item.envelope.data
            if type(data) is RatingRow or isinstance(data, RatingSubmitted):
                if data.survey_id:
                    answers.setdefault(data.survey_id, Answer(data.received_at, bool(data.comment)))
            elif isinstance(data, SurveyInvited):
                invited.setdefault(data.invitation_id, data)
        if not invited and not answers:
            return []
        found = list(invited.values())
        counted = await store.counted_all(tx, [i.segment for i in found]) if found else []
        rows = [
            Invitation(i.invitation_id, i.metric.value, i.segment, c.keys, i.invited_at)
            for i, c in zip(found, counted, strict=True)
        ]
        moved = await store.record_responses(tx, invitations=rows, answers=answers)
        if moved:
            await store.add_response_counts(tx, increments=increments(moved))
        return []

    return handle


def in_turn(*handlers: BatchHandler[Tx]) -> BatchHandler[Tx]:
    """Several use cases on one batch, in one transaction: their outgoing records concatenated."""

    async def handle(tx: Tx, batch: Sequence[Received]) -> list[OutgoingRecord]:
        out: list[OutgoingRecord] = []
        for h in handlers:
            out += await h(tx, batch)
        return out

    return handle
