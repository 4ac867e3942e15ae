"""Actions: versioned rule sets, CSM alerts, durable timers, nurture enrolments, richer decisions.

Revision ID: 0004_actions
Revises: 0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004_actions"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Every change to the rules is a new version; each replica follows the newest one.
    op.execute(
        """
        CREATE TABLE actions.rule_sets (
            version integer PRIMARY KEY,
            document jsonb NOT NULL,
            origin text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )

    # CSM alerts: a record with a status, an owner and a due time (the rule's SLA).
    op.execute(
        """
        CREATE TABLE actions.alerts (
            alert_id text PRIMARY KEY,
            rule_id text NOT NULL,
            rating_id text,
            customer_id text,
            owner_email text NOT NULL,
            owner_name text,
            priority text NOT NULL,
            status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'acknowledged', 'resolved')),
            due_at timestamptz,
            escalated_at timestamptz,
            acknowledged_at timestamptz,
            acknowledged_by text,
            resolved_at timestamptz,
            resolved_by text,
            note text,
            context jsonb NOT NULL DEFAULT '{}'::jsonb,
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX alerts_status_owner ON actions.alerts (status, owner_email, created_at)")
    op.execute("CREATE INDEX alerts_customer ON actions.alerts (customer_id, created_at)")

    # Durable timers: SLA escalations, "no answer to the re-survey", nurture steps, delayed actions.
    op.execute(
        """
        CREATE TABLE actions.timers (
            timer_id text PRIMARY KEY,
            kind text NOT NULL,
            ref text,
            customer_id text,
            due_at timestamptz NOT NULL,
            payload jsonb NOT NULL DEFAULT '{}'::jsonb,
            status text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'fired', 'cancelled')),
            outcome text,
            created_at timestamptz NOT NULL DEFAULT now(),
            fired_at timestamptz
        )
        """
    )
    op.execute("CREATE INDEX timers_due ON actions.timers (due_at) WHERE status = 'pending'")
    op.execute("CREATE INDEX timers_kind_ref ON actions.timers (kind, ref) WHERE status = 'pending'")
    op.execute("CREATE INDEX timers_customer ON actions.timers (customer_id) WHERE status = 'pending'")

    op.execute(
        """
        CREATE TABLE actions.enrolments (
            customer_id text NOT NULL,
            sequence text NOT NULL,
            rule_id text NOT NULL,
            rating_id text,
            status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'completed', 'stopped')),
            steps integer NOT NULL,
            enrolled_at timestamptz NOT NULL DEFAULT now(),
            ends_at timestamptz NOT NULL,
            PRIMARY KEY (customer_id, sequence)
        )
        """
    )

    # What the verbatim analysis found, and whether a later rating answered a re-survey.
    op.execute("ALTER TABLE actions.ratings ADD COLUMN has_comment boolean NOT NULL DEFAULT false")
    op.execute("ALTER TABLE actions.ratings ADD COLUMN survey_id text")
    op.execute("ALTER TABLE actions.ratings ADD COLUMN themes text[] NOT NULL DEFAULT '{}'")
    op.execute("ALTER TABLE actions.ratings ADD COLUMN comment_sentiment text")

    # Decisions say what happened (notified, scheduled, skipped_<why>) and whether a customer got it.
    op.execute("ALTER TABLE actions.decisions ADD COLUMN outcome text")
    op.execute("ALTER TABLE actions.decisions ADD COLUMN channel text")
    op.execute("ALTER TABLE actions.decisions ADD COLUMN customer_facing boolean NOT NULL DEFAULT false")
    op.execute("ALTER TABLE actions.decisions ADD COLUMN ref text")
    op.execute(
        "CREATE INDEX decisions_customer_facing ON actions.decisions (customer_id, created_at) "
        "WHERE customer_facing AND notification_id IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS actions.decisions_customer_facing")
    for column in ("outcome", "channel", "customer_facing", "ref"):
        op.execute(f"ALTER TABLE actions.decisions DROP COLUMN IF EXISTS {column}")
    for column in ("has_comment", "survey_id", "themes", "comment_sentiment"):
        op.execute(f"ALTER TABLE actions.ratings DROP COLUMN IF EXISTS {column}")
    for table in ("enrolments", "timers", "alerts", "rule_sets"):
        op.execute(f"DROP TABLE IF EXISTS actions.{table}")
