"""Notifier: reconciling 'unknown' deliveries by asking the provider (SendGrid's Email Activity API).

``reconcile_at``: when the reconciler may look at an unknown row next (NULL: ``updated_at`` plus the
settle delay); ``reconcile_token``: the replica looking at it now (its claim, committed before the
provider is asked); ``absent_at``: when the provider first said it never received the message (a second
look at least the settle delay later confirms it); ``reconciled``: what reconciliation found
(``found`` or ``absent``), kept after the row is sent.

Revision ID: 0024_notifier_reconcile
Revises: 0021_console_finish
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0024_notifier_reconcile"
down_revision: str | None = "0021_console_finish"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE notifier.deliveries ADD COLUMN reconcile_at timestamptz, "
        "ADD COLUMN reconcile_token text, ADD COLUMN absent_at timestamptz, ADD COLUMN reconciled text"
    )
    # The reconciler's scan: unknown rows only (few), by provider.
    op.execute(
        "CREATE INDEX deliveries_unknown_by_provider ON notifier.deliveries (provider, created_at) "
        "WHERE status = 'unknown'"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS notifier.deliveries_unknown_by_provider")
    op.execute(
        "ALTER TABLE notifier.deliveries DROP COLUMN reconciled, DROP COLUMN absent_at, "
        "DROP COLUMN reconcile_token, DROP COLUMN reconcile_at"
    )
