"""occurred_at is RFC 3339 text: a bare number (read by pydantic as 1970 + seconds) is refused.

Found by the fault suite's schemathesis run: ``"occurred_at": 0`` was answered 202 and stored in 1970.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from services.collector.domain import RatingIn

GOOD = {"metric": "csat", "scale": "1-5", "score": 4, "customer": {"id": "cus-1"}}


@pytest.mark.parametrize("value", [0, 1700000000, 1.5, True])
def test_numbers_are_refused(value: object) -> None:
    with pytest.raises(ValidationError) as err:
        RatingIn.model_validate({**GOOD, "occurred_at": value})
    assert err.value.errors()[0]["loc"] == ("occurred_at",)


def test_rfc3339_text_is_accepted() -> None:
    rating = RatingIn.model_validate({**GOOD, "occurred_at": "2026-11-23T09:30:00Z"})
    assert rating.occurred_at == datetime(2026, 11, 23, 9, 30, tzinfo=UTC)


def test_absent_is_accepted() -> None:
    assert RatingIn.model_validate(GOOD).occurred_at is None
