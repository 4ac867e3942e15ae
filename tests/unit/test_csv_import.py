"""CSV rows to rating payloads: column mapping, derived ids, the API's validation with line numbers."""

from __future__ import annotations

from collections import Counter
from zoneinfo import ZoneInfo

import pytest

from services.collector.csvimport import Row, check, column_for, derive_ids, plan_columns, to_payload
from services.collector.domain import RatingRejected


def test_columns_map_to_fields_and_unknown_ones_are_named() -> None:
    mapping, unknown = plan_columns(
        ["Score", "customer_id", "segment.store", "Agent", "note"], {"note": "comment", "Score": "score"}
    )
    assert mapping == {
        "Score": "score",
        "customer_id": "customer_id",
        "segment.store": "segment.store",
        "note": "comment",
    }
    assert unknown == ["Agent"]


def test_a_row_becomes_the_api_payload() -> None:
    mapping, _ = plan_columns(
        [
            "metric",
            "score",
            "customer_id",
            "customer_email",
            "segment.store",
            "account_value",
            "occurred_at",
            "consent_contact",
            "comment",
        ],
        {},
    )
    record = {
        "metric": "csat",
        "score": " 4 ",
        "customer_id": "c1",
        "customer_email": "a@example.com",
        "segment.store": "paris-1",
        "account_value": "1200",
        "occurred_at": "2026-03-01 10:00",
        "consent_contact": "yes",
        "comment": "",
    }
    payload = to_payload(record, mapping, default_tz=ZoneInfo("Europe/Paris"))
    assert payload == {
        "metric": "csat",
        "score": "4",
        "customer": {"id": "c1", "email": "a@example.com"},
        "segment": {"store": "paris-1"},
        "account": {"value": "1200"},
        "occurred_at": "2026-03-01T10:00:00+01:00",
        "consent": {"contact": True},
    }
    with pytest.raises(RatingRejected) as err:
        to_payload({"consent_review": "perhaps"}, {"consent_review": "consent_review"}, default_tz=None)
    assert err.value.field == "consent_review"


def test_derived_ids_are_stable_across_runs_and_distinct_for_repeated_rows() -> None:
    def rows() -> list[Row]:
        same = {"metric": "csat", "score": "5", "customer": {"id": "c"}}
        return [Row(2, dict(same)), Row(3, dict(same)), Row(4, {**same, "rating_id": "mine"})]

    first, second = rows(), rows()
    derive_ids(first)
    seen: Counter[bytes] = Counter()
    for row in second:  # in chunks, as the importer does
        derive_ids([row], seen=seen)
    ids = [r.payload["rating_id"] for r in first]
    assert ids == [r.payload["rating_id"] for r in second]
    assert ids[0] != ids[1] and ids[0].startswith("import-") and ids[2] == "mine"


@pytest.mark.parametrize(
    ("payload", "column"),
    [
        ({"metric": "csat", "score": "9", "customer": {"id": "c"}}, "score"),
        ({"metric": "csat", "scale": "1-4", "score": "3", "customer": {"id": "c"}}, "scale"),
        ({"metric": "csat", "score": "3"}, "customer"),
        ({"metric": "csat", "score": "3", "customer": {"id": "c", "email": "nope"}}, "customer_email"),
        (
            {"metric": "csat", "score": "3", "customer": {"id": "c"}, "occurred_at": "2026-03-01T10:00:00"},
            "occurred_at",
        ),
        (
            {"metric": "csat", "score": "3", "customer": {"id": "c"}, "account": {"value": "lots"}},
            "account_value",
        ),
    ],
)
def test_rows_are_checked_by_the_api_validation_with_their_line(
    payload: dict[str, object], column: str
) -> None:
    (error,) = check(Row(7, payload))
    assert (error.line, error.field) == (7, column)


def test_api_error_fields_map_back_to_columns() -> None:
    assert column_for("ratings[3].customer.id") == "customer_id"
    assert column_for("ratings[0].segment.store") == "segment.store"
    assert column_for("ratings[1].rating_id") == "rating_id"
