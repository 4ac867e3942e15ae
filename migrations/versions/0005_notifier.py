"""Notifier: durable delivery schedule, suppression list, daily caps and an event outbox.

Revision ID: 0005_notifier
Revises: 0001
Create Date: 2026-11-24

- ``notifier.deliveries`` becomes the durable schedule: the request itself, when the next attempt is
  due (retries, quiet hours), and a lease for the attempt in flight (crash recovery).
- ``notifier.suppressions``: opt-outs (one-click unsubscribe, Twilio STOP, Postmark inactive recipients)
  by customer or by a SHA-256 of the address, so the list itself holds no readable contact details.
- ``notifier.daily_counts``: customer-facing messages per customer and local day (the daily cap).
- ``notifier.event_outbox``: outcome and dead-letter events written with the state change they report,
  relayed to Kafka afterwards (a crash cannot lose an outcome).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005_notifier"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE notifier.deliveries
            ADD COLUMN request jsonb,
            ADD COLUMN transactional boolean NOT NULL DEFAULT false,
            ADD COLUMN next_attempt_at timestamptz,
            ADD COLUMN claim_token text,
            ADD COLUMN lease_until timestamptz,
            ADD COLUMN reason text,
            ADD COLUMN counted_day date,
            ADD COLUMN event_id text,
            ADD COLUMN source_topic text,
            ADD COLUMN source_partition integer,
            ADD COLUMN source_offset bigint
        """
    )
    op.execute(
        "CREATE INDEX deliveries_due ON notifier.deliveries (next_attempt_at) WHERE status = 'pending'"
    )
    op.execute(
        "CREATE INDEX deliveries_in_flight ON notifier.deliveries (lease_until) WHERE status = 'sending'"
    )
    op.execute("CREATE INDEX deliveries_status_time ON notifier.deliveries (status, updated_at)")
    op.execute(
        """
        CREATE TABLE notifier.suppressions (
            scope text NOT NULL CHECK (scope IN ('customer', 'email', 'sms')),
            key text NOT NULL,
            reason text NOT NULL,
            source text NOT NULL,
            customer_id text,
            notification_id text,
            created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (scope, key)
        )
        """
    )
    op.execute("CREATE INDEX suppressions_customer ON notifier.suppressions (customer_id)")
    op.execute(
        """
        CREATE TABLE notifier.daily_counts (
            customer_id text NOT NULL,
            day date NOT NULL,
            sent integer NOT NULL DEFAULT 0,
            PRIMARY KEY (customer_id, day)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE notifier.event_outbox (
            id bigserial PRIMARY KEY,
            topic text NOT NULL,
            key bytea,
            value bytea NOT NULL,
            headers jsonb NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("ALTER TABLE notifier.outbox ADD COLUMN headers jsonb NOT NULL DEFAULT '{}'::jsonb")


def downgrade() -> None:
    op.execute("ALTER TABLE notifier.outbox DROP COLUMN headers")
    op.execute("DROP TABLE notifier.event_outbox")
    op.execute("DROP TABLE notifier.daily_counts")
    op.execute("DROP TABLE notifier.suppressions")
    op.execute("DROP INDEX notifier.deliveries_status_time")
    op.execute("DROP INDEX notifier.deliveries_in_flight")
    op.execute("DROP INDEX notifier.deliveries_due")
    op.execute(
        """
        ALTER TABLE notifier.deliveries
            DROP COLUMN request, DROP COLUMN transactional, DROP COLUMN next_attempt_at,
            DROP COLUMN claim_token, DROP COLUMN lease_until, DROP COLUMN reason, DROP COLUMN counted_day,
            DROP COLUMN event_id, DROP COLUMN source_topic, DROP COLUMN source_partition,
            DROP COLUMN source_offset
        """
    )
