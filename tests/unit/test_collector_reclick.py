"""A second click on a survey email: the same answer replays, a different one replaces within the window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.collector.reclick import Answered, SecondAnswer, second_answer

FIRST_AT = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=15)


@pytest.mark.parametrize(
    ("revision", "fingerprint", "after", "window", "kind", "published"),
    [
        (0, b"score-3", timedelta(minutes=1), WINDOW, SecondAnswer.REPLAY, 0),  # a double click
        (0, b"score-4", timedelta(minutes=1), WINDOW, SecondAnswer.REPLACE, 1),
        (0, b"score-4", WINDOW, WINDOW, SecondAnswer.REPLACE, 1),  # the window's last instant still counts
        (0, b"score-4", WINDOW + timedelta(seconds=1), WINDOW, SecondAnswer.REFUSE, 0),
        (2, b"score-5", timedelta(minutes=14), WINDOW, SecondAnswer.REPLACE, 3),  # the third change
        (2, b"score-3", timedelta(hours=2), WINDOW, SecondAnswer.REPLAY, 2),  # the standing answer, later
        (0, b"score-4", timedelta(seconds=1), timedelta(0), SecondAnswer.REFUSE, 0),  # no window: first wins
    ],
)
def test_second_answers(
    revision: int, fingerprint: bytes, after: timedelta, window: timedelta, kind: SecondAnswer, published: int
) -> None:
    first = Answered(fingerprint=b"score-3", revision=revision, first_accepted_at=FIRST_AT)
    verdict = second_answer(first=first, fingerprint=fingerprint, now=FIRST_AT + after, window=window)
    assert (verdict.kind, verdict.revision) == (kind, published)
