"""Notifier: one customer's delivery records found by index (the console's customer page lists the
messages sent to a customer with ``GET /v1/deliveries?customer_id=``).

Revision ID: 0017_console_inbox
Revises: 0016_health (re-chained after main took 0014, 0018 and 0016: one Alembic head)
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017_console_inbox"
down_revision: str | None = "0016_health"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX IF NOT EXISTS deliveries_customer ON notifier.deliveries (customer_id, updated_at) "
        "WHERE customer_id IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS notifier.deliveries_customer")
