"""Actions: survey definitions (versioned like the rules) and survey invitations (one per survey and
interaction, with its send, reminder and answer times; the row is its own durable timer).

Revision ID: 0015_surveys
Revises: 0017_console_inbox (re-chained onto main's head: 0014_scorer_counters, 0018_gdpr, 0016_health, 0017_console_inbox)
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015_surveys"
down_revision: str | None = "0017_console_inbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE actions.survey_sets (
            version integer PRIMARY KEY,
            document jsonb NOT NULL,
            origin text NOT NULL,
            author text,
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    # next_at: when the scheduler must look at the row again (the send, then the reminder); NULL: done.
    op.execute(
        """
        CREATE TABLE actions.survey_invitations (
            invitation_id text PRIMARY KEY,
            survey_id text NOT NULL,
            interaction_id text NOT NULL,
            customer_id text NOT NULL,
            channel text NOT NULL,
            locale text NOT NULL,
            segment jsonb NOT NULL DEFAULT '{}',
            recipient jsonb NOT NULL DEFAULT '{}',
            source text,
            due_at timestamptz NOT NULL,
            expires_at timestamptz NOT NULL,
            reminder_at timestamptz,
            next_at timestamptz,
            status text NOT NULL DEFAULT 'scheduled',
            delivery text NOT NULL DEFAULT 'pending',
            requested_at timestamptz,
            sent_at timestamptz,
            reminders_sent integer NOT NULL DEFAULT 0,
            answered_at timestamptz,
            answered_with_comment boolean NOT NULL DEFAULT false,
            stop_reason text,
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        "CREATE INDEX survey_invitations_next ON actions.survey_invitations (next_at) WHERE next_at IS NOT NULL"
    )
    op.execute("CREATE INDEX survey_invitations_customer ON actions.survey_invitations (customer_id, due_at)")
    op.execute("CREATE INDEX survey_invitations_survey ON actions.survey_invitations (survey_id, due_at)")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS actions.survey_invitations")
    op.execute("DROP TABLE IF EXISTS actions.survey_sets")
