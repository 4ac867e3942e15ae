"""Claims kept out of customers' histories, and daily caps per recipient address and per source.

- ``actions.ratings.customer_verified``: a rating posted with a publishable key and no identity proof
  names its customer only as a claim. It still counts, but must not feed that customer's history
  facts (three low scores -> churn alert), nor cancel their pending re-survey.
- ``notifier.daily_caps``: customer-facing messages per day per recipient address (a keyed hash,
  never the address) and per collector source, beside the per-customer ``daily_counts``: rotating
  customer ids no longer gets round the cap.

Revision ID: 0012_claims_and_caps
Revises: 0011_source_key_kinds
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012_claims_and_caps"
down_revision: str | None = "0011_source_key_kinds"
branch_labels: str | Sequence[str] | None = None
#: The migrations are one branch per schema: the actions and notifier tables must exist first.
depends_on: str | Sequence[str] | None = ("0004_actions", "0005_notifier")


def upgrade() -> None:
    op.execute("ALTER TABLE actions.ratings ADD COLUMN customer_verified boolean NOT NULL DEFAULT true")
    op.execute(
        """
        CREATE TABLE notifier.daily_caps (
            scope text NOT NULL CHECK (scope IN ('address', 'source')),
            key text NOT NULL,
            day date NOT NULL,
            sent integer NOT NULL DEFAULT 0,
            PRIMARY KEY (scope, key, day)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE notifier.daily_caps")
    op.execute("ALTER TABLE actions.ratings DROP COLUMN customer_verified")
