"""Scorer: one composite value per rating in the batch statement's parameter.

The micro-batch statement took sixteen parallel arrays, one per column. asyncpg checks every element
of every array parameter against three abstract base classes (is it a nested array?) before encoding
it: sixteen checks per rating, in the consumer's transaction. One array of a composite type takes two
checks per rating and is decoded faster by the server too (measured on 5,000-rating batches: 3.6 us
of client CPU per rating down to 1.8 us, the round trip 4.6 us down to 2.5 us).

Revision ID: 0007_scorer_rating_input
Revises: 0006_scorer_hot_updates
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007_scorer_rating_input"
down_revision: str | None = "0006_scorer_hot_updates"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Field order is the order ``services.scorer.repository.writes.apply_batch`` builds its tuples in.
    op.execute(
        """
        CREATE TYPE scorer.rating_input AS (
            rating_id text,
            metric text,
            scale text,
            score smallint,
            sentiment text,
            customer_id text,
            segment jsonb,
            touchpoint text,
            comment text,
            account_id text,
            account_tier text,
            account_value numeric,
            source text,
            occurred_s float8,
            received_s float8,
            keys text
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TYPE IF EXISTS scorer.rating_input")
