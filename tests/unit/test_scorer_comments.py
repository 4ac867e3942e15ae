"""The verbatims API's pure part: ranges, text filters, theme counts against the period before, paging."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from services.scorer import comments
from services.scorer.comments import Range, TextFilters, VerbatimFilterError
from services.scorer.ports import CommentRow
from shared.verbatims import DEFAULT_THEMES, load_taxonomy_file

TAXONOMY = load_taxonomy_file(DEFAULT_THEMES)
NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def row(rid: str, text: str, *, days: float, score: int = 2) -> CommentRow:
    return CommentRow(
        rid, "csat", "1-5", score, f"c-{rid}", {"store": "s1"}, None, text, NOW - timedelta(days=days)
    )


def test_ranges_from_a_window_or_whole_days() -> None:
    rolling = comments.date_range(window=timedelta(days=7), since=None, until=None, now=NOW)
    assert rolling == Range(NOW - timedelta(days=7), NOW) and rolling.step == comments.DAY
    days = comments.date_range(
        window=timedelta(days=7), since=date(2026, 11, 1), until=date(2026, 11, 30), now=NOW
    )
    assert days.start == datetime(2026, 11, 1, tzinfo=UTC) and days.end == datetime(2026, 12, 1, tzinfo=UTC)
    assert days.previous == Range(datetime(2026, 10, 2, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))
    assert (
        comments.date_range(window=timedelta(days=90), since=None, until=None, now=NOW).step == comments.WEEK
    )
    with pytest.raises(VerbatimFilterError):
        comments.date_range(
            window=timedelta(days=1), since=date(2026, 12, 2), until=date(2026, 12, 1), now=NOW
        )
    with pytest.raises(VerbatimFilterError):
        comments.date_range(window=timedelta(days=1), since=date(2024, 1, 1), until=date(2026, 1, 1), now=NOW)


def test_text_filters_are_checked_against_the_taxonomy() -> None:
    comments.check_text_filters(TextFilters(theme="price", sentiment="negative", language="fr"), TAXONOMY)
    for bad, field in (
        (TextFilters(theme="weather"), "theme"),
        (TextFilters(sentiment="angry"), "sentiment"),
        (TextFilters(language="de"), "language"),
    ):
        with pytest.raises(VerbatimFilterError) as refused:
            comments.check_text_filters(bad, TAXONOMY)
        assert refused.value.field == field


def test_counts_trend_filters_and_paging() -> None:
    r = Range(NOW - timedelta(days=7), NOW)
    current = [
        row("a", "The delivery was late", days=0.5),
        row("b", "La livraison est en retard et le colis est abîmé", days=1.5),
        row("c", "Too expensive for what it is", days=3.5),
        row("d", "Great staff, very friendly", days=6.5, score=5),
    ]
    previous = [row("p", "Parcel delayed again", days=9)]
    body = comments.body(
        current=current,
        previous=previous,
        taxonomy=TAXONOMY,
        filters=TextFilters(theme="delivery_time"),
        r=r,
        page=1,
        per_page=1,
        scan_limit=100,
        echo={},
    )
    assert body["total"] == 2 and body["pages"] == 2 and [i["rating_id"] for i in body["items"]] == ["a"]
    assert body["items"][0]["language"] == "en" and body["items"][0]["themes"] == ["delivery_time"]
    themes = {t["theme"]: t for t in body["themes"]}
    delivery = themes["delivery_time"]
    assert (delivery["count"], delivery["previous"], delivery["delta"], delivery["share"]) == (2, 1, 1, 0.5)
    assert [s["count"] for s in delivery["series"]] == [0, 0, 0, 0, 0, 1, 1]  # days 1.5 and 0.5 ago
    assert themes["price"]["count"] == 1  # counts ignore the theme picked
    assert body["truncated"] is False and body["scanned"] == 4
    french = comments.body(
        current=current,
        previous=[],
        taxonomy=TAXONOMY,
        filters=TextFilters(language="fr"),
        r=r,
        page=1,
        per_page=10,
        scan_limit=4,
        echo={"q": None},
    )
    assert [i["rating_id"] for i in french["items"]] == ["b"] and french["truncated"] is True
    assert {t["theme"]: t["count"] for t in french["themes"]}["delivery_time"] == 1
