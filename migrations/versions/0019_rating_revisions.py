"""Survey re-clicks: a rating may be published again under its id with a higher revision.

The collector's idempotency record keeps the standing answer's revision and when the first answer was
accepted (the re-click window runs from it); the scorer's and actions' rating rows keep the revision
they hold, so an older or equal one is a no-op and a newer one replaces the answer.

Also ``actions.erased_customers``: the SHA-256 of each erased customer id (no address, no name), so a
survey decided or due after an erasure stops with ``erased`` (the contact record itself is gone).

Revision ID: 0019_rating_revisions
Revises: 0015_surveys
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0019_rating_revisions"
down_revision: str | None = "0015_surveys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE collector.idempotency ADD COLUMN revision integer NOT NULL DEFAULT 0, "
        "ADD COLUMN first_accepted_at timestamptz"
    )
    op.execute("UPDATE collector.idempotency SET first_accepted_at = accepted_at WHERE state = 'accepted'")
    op.execute("ALTER TABLE scorer.ratings ADD COLUMN revision integer NOT NULL DEFAULT 0")
    op.execute("ALTER TABLE actions.ratings ADD COLUMN revision integer NOT NULL DEFAULT 0")
    op.execute(
        "CREATE TABLE actions.erased_customers ("
        "customer_hash bytea PRIMARY KEY, erased_at timestamptz NOT NULL DEFAULT now())"
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS actions.erased_customers")
    op.execute("ALTER TABLE actions.ratings DROP COLUMN revision")
    op.execute("ALTER TABLE scorer.ratings DROP COLUMN revision")
    op.execute("ALTER TABLE collector.idempotency DROP COLUMN first_accepted_at, DROP COLUMN revision")
