"""GDPR erasure status: one row per service and erasure request, written with the scrub it records.

Revision ID: 0018_gdpr
Revises: 0014_scorer_counters (re-chained after main took 0014)
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0018_gdpr"
down_revision: str | None = "0014_scorer_counters"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # No customer id here: the erasure id and the pseudonym are random, so the status of an erasure
    # does not keep the person it erased. ``removed`` counts rows changed per table.
    op.execute(
        """
        CREATE TABLE ops.erasures (
            erasure_id text NOT NULL,
            service text NOT NULL,
            pseudonym text NOT NULL,
            requested_at timestamptz NOT NULL,
            erased_at timestamptz NOT NULL DEFAULT now(),
            removed jsonb NOT NULL DEFAULT '{}'::jsonb,
            PRIMARY KEY (erasure_id, service)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS ops.erasures")
