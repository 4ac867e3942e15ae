"""A second answer to the same survey invitation: replay, replace (within the re-click window) or refuse.

Pure. Every answer to one invitation carries the same ``rating_id`` (the email link derives it from the
invitation, whichever score button was clicked), so the collector's idempotency record finds the first
answer. People click 3 then think better of it: within ``window`` of the *first* answer a different
answer replaces it, published again under the same ``rating_id`` with ``revision`` + 1; the scorer
applies a revision only if it is newer than the one it counted, taking the old answer out of its
counters and putting the new one in, in one transaction, so every score stays exact. After the window
the first answer stands (409, "already answered"). The window runs from the first answer, so nobody can
keep an answer open by clicking again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class SecondAnswer(StrEnum):
    REPLAY = "replay"  # the same answer again (a retry, a double click): the first answer's reply
    REPLACE = "replace"  # a different answer within the window: publish it as the next revision
    REFUSE = "refuse"  # a different answer after the window: the first answer stands


@dataclass(frozen=True, slots=True)
class Answered:
    """What the idempotency record keeps of an invitation's answer."""

    fingerprint: bytes
    revision: int
    first_accepted_at: datetime


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: SecondAnswer
    #: The revision to publish (REPLACE) or the one standing (REPLAY, REFUSE).
    revision: int


def second_answer(*, first: Answered, fingerprint: bytes, now: datetime, window: timedelta) -> Verdict:
    """What to do with an answer to an invitation that already has one."""
    if fingerprint == first.fingerprint:
        return Verdict(SecondAnswer.REPLAY, first.revision)
    if window > timedelta(0) and now - first.first_accepted_at <= window:
        return Verdict(SecondAnswer.REPLACE, first.revision + 1)
    return Verdict(SecondAnswer.REFUSE, first.revision)
