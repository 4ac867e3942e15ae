"""Scorer: a time index on the day tier, and one on the comments, for reads that stay fast at 10 million
stored ratings (the console bench, docs/benchmarks.md "Console").

- ``score_counts_day_time``: a BRIN index on ``bucket_start``, as the minute and hour tiers have (0006).
  A breakdown by store over 30 days read every day bucket of every store since the first rating (the
  primary key orders by segment before time); with the window's bounds in the query
  (``repository.reads.load_counts``) it reads the window's pages only. Day rows arrive in time order,
  so a BRIN index fits (a few pages, next to nothing per new bucket).
- ``ratings_comments_time``: a partial B-tree on ``(occurred_at DESC, rating_id DESC)`` of the ratings
  with a comment, the order ``GET /v1/verbatims`` reads them in (the newest ``verbatims_scan_limit``
  of a range): it walks the index and stops, where it sorted every rating of the range. Only the
  ratings with a comment are in it.

Revision ID: 0021_console_finish
Revises: 0023_survey_inapp
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0021_console_finish"
down_revision: str | None = "0023_survey_inapp"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX IF NOT EXISTS score_counts_day_time ON scorer.score_counts_day USING brin (bucket_start) "
        "WITH (pages_per_range = 16, autosummarize = on)"
    )
    op.execute(
        "CREATE INDEX IF NOT EXISTS ratings_comments_time ON scorer.ratings (occurred_at DESC, rating_id DESC) "
        "WHERE comment IS NOT NULL AND comment <> ''"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS scorer.ratings_comments_time")
    op.execute("DROP INDEX IF EXISTS scorer.score_counts_day_time")
