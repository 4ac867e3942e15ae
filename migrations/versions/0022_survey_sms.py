"""Collector: SMS surveys registered for a survey invitation (the notifier sends the survey SMS).

Such a survey's reply is rated under the invitation's own rating id (the one its email link uses), and a
second reply while the invitation is open is matched too, handled like a second click (within the
invitation's re-click window, kept from its link, it replaces the answer).

Revision ID: 0022_survey_sms
Revises: 0019_rating_revisions
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0022_survey_sms"
down_revision: str | None = "0019_rating_revisions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE collector.sms_surveys ADD COLUMN invitation boolean NOT NULL DEFAULT false")
    op.execute("ALTER TABLE collector.sms_surveys ADD COLUMN reclick_window_s integer")
    # Replies look up every unexpired survey of a number, answered invitations included.
    op.execute(
        "CREATE INDEX sms_surveys_by_phone ON collector.sms_surveys (phone_hash, created_at DESC)"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS collector.sms_surveys_by_phone")
    op.execute("ALTER TABLE collector.sms_surveys DROP COLUMN IF EXISTS reclick_window_s")
    op.execute("ALTER TABLE collector.sms_surveys DROP COLUMN IF EXISTS invitation")
