"""Scorer: minute and day counter tiers, the segment registry (value caps), score-event state.

``scorer.score_counts`` (0001) stays the hour tier. Segment keys use the "C" collation so a
breakdown's ``LIKE 'store=%'`` is an index range scan.

Revision ID: 0003_scorer
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003_scorer"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COUNTS = """
    CREATE TABLE scorer.{name} (
        metric text NOT NULL,
        segment_key text COLLATE "C" NOT NULL,
        bucket_start timestamptz NOT NULL,
        scale text NOT NULL,
        score smallint NOT NULL,
        n bigint NOT NULL,
        PRIMARY KEY (metric, segment_key, bucket_start, scale, score)
    )
"""


def upgrade() -> None:
    op.execute('ALTER TABLE scorer.score_counts ALTER COLUMN segment_key TYPE text COLLATE "C"')
    op.execute(_COUNTS.format(name="score_counts_minute"))
    op.execute(_COUNTS.format(name="score_counts_day"))
    # Global reads go to the counters, segment reads of uncounted segments to the GIN index: the
    # (metric, occurred_at) index only slowed every insert down.
    op.execute("DROP INDEX IF EXISTS scorer.ratings_metric_time")
    # Pruning deletes old fine buckets by time.
    op.execute("CREATE INDEX score_counts_minute_time ON scorer.score_counts_minute (bucket_start)")
    op.execute("CREATE INDEX score_counts_hour_time ON scorer.score_counts (bucket_start)")

    # The registry: dimensions and values that have counters of their own (the rest fold into "other").
    op.execute(
        """
        CREATE TABLE scorer.segment_dimensions (
            dimension text COLLATE "C" PRIMARY KEY,
            n_values integer NOT NULL DEFAULT 0,
            registered_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE scorer.segment_values (
            dimension text COLLATE "C" NOT NULL REFERENCES scorer.segment_dimensions (dimension),
            value text COLLATE "C" NOT NULL,
            registered_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (dimension, value)
        )
        """
    )

    # Segments whose counters changed since their scores were last evaluated for events.
    op.execute(
        """
        CREATE TABLE scorer.dirty_segments (
            metric text NOT NULL,
            segment_key text COLLATE "C" NOT NULL,
            version bigint NOT NULL DEFAULT 1,
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (metric, segment_key)
        )
        """
    )
    # What was last published per (metric, segment, window): throttling, alert episodes, event ids.
    op.execute(
        """
        CREATE TABLE scorer.score_state (
            metric text NOT NULL,
            segment_key text COLLATE "C" NOT NULL,
            window_name text NOT NULL,
            score double precision,
            responses bigint NOT NULL DEFAULT 0,
            insufficient boolean NOT NULL DEFAULT true,
            seq bigint NOT NULL DEFAULT 0,
            below boolean NOT NULL DEFAULT false,
            dropping boolean NOT NULL DEFAULT false,
            alerts bigint NOT NULL DEFAULT 0,
            published boolean NOT NULL DEFAULT false,
            evaluated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (metric, segment_key, window_name)
        )
        """
    )


def downgrade() -> None:
    for table in (
        "score_state",
        "dirty_segments",
        "segment_values",
        "segment_dimensions",
        "score_counts_day",
        "score_counts_minute",
    ):
        op.execute(f"DROP TABLE IF EXISTS scorer.{table}")
    op.execute("DROP INDEX IF EXISTS scorer.score_counts_hour_time")
    op.execute("CREATE INDEX IF NOT EXISTS ratings_metric_time ON scorer.ratings (metric, occurred_at)")
    op.execute('ALTER TABLE scorer.score_counts ALTER COLUMN segment_key TYPE text COLLATE "default"')
