"""Scorer: one composite value per counter increment, for increments aggregated by the scorer.

With ``CSAT_COUNTER_WRITE=composite`` the scorer adds a micro-batch's increments up in memory per
(tier, metric, segment, bucket, scale, score) (``services.scorer.increments``) and sends them as one
array of this type (one value per counter that moves, the same reasoning as ``scorer.rating_input``:
migration 0007). ``copy`` sends the same rows through COPY into a temporary staging table instead.

Revision ID: 0014_scorer_counters
Revises: 0013_rule_set_authors
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014_scorer_counters"
down_revision: str | None = "0013_rule_set_authors"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Field order is the order of ``services.scorer.increments.Increment``.
    op.execute(
        """
        CREATE TYPE scorer.counter_input AS (
            tier smallint,
            metric text,
            segment_key text,
            bucket_s bigint,
            scale text,
            score smallint,
            n bigint
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TYPE IF EXISTS scorer.counter_input")
