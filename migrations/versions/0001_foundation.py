"""Foundation: offsets, ratings and counters, rule decisions, deliveries and the local outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for schema in ("ops", "scorer", "actions", "notifier", "collector"):
        op.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")

    op.execute(
        """
        CREATE TABLE ops.consumer_offsets (
            consumer_group text NOT NULL,
            topic text NOT NULL,
            partition integer NOT NULL,
            next_offset bigint NOT NULL DEFAULT 0,
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (consumer_group, topic, partition)
        )
        """
    )

    # Scorer: every rating once, and counters per (metric, segment, hour bucket, scale, score).
    op.execute(
        """
        CREATE TABLE scorer.ratings (
            rating_id text PRIMARY KEY,
            metric text NOT NULL,
            scale text NOT NULL,
            score smallint NOT NULL,
            sentiment text NOT NULL,
            customer_id text NOT NULL,
            segment jsonb NOT NULL DEFAULT '{}'::jsonb,
            touchpoint text,
            comment text,
            account_id text,
            account_tier text,
            account_value numeric,
            source text,
            occurred_at timestamptz NOT NULL,
            received_at timestamptz NOT NULL,
            stored_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX ratings_customer_time ON scorer.ratings (customer_id, occurred_at)")
    op.execute("CREATE INDEX ratings_metric_time ON scorer.ratings (metric, occurred_at)")
    op.execute("CREATE INDEX ratings_segment ON scorer.ratings USING gin (segment jsonb_path_ops)")
    op.execute(
        """
        CREATE TABLE scorer.score_counts (
            metric text NOT NULL,
            segment_key text NOT NULL,
            bucket_start timestamptz NOT NULL,
            scale text NOT NULL,
            score smallint NOT NULL,
            n bigint NOT NULL,
            PRIMARY KEY (metric, segment_key, bucket_start, scale, score)
        )
        """
    )

    # Actions: customer context, each customer's rating history, and decisions (once per rule+rating).
    op.execute(
        """
        CREATE TABLE actions.customers (
            customer_id text PRIMARY KEY,
            email text,
            phone text,
            locale text,
            timezone text,
            tier text,
            value numeric,
            owner_email text,
            owner_name text,
            consent jsonb NOT NULL DEFAULT '{}'::jsonb,
            opted_out boolean NOT NULL DEFAULT false,
            attributes jsonb NOT NULL DEFAULT '{}'::jsonb,
            updated_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE actions.ratings (
            rating_id text PRIMARY KEY,
            customer_id text NOT NULL,
            metric text NOT NULL,
            scale text NOT NULL,
            score smallint NOT NULL,
            normalized real NOT NULL,
            sentiment text NOT NULL,
            occurred_at timestamptz NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX action_ratings_customer ON actions.ratings (customer_id, occurred_at)")
    op.execute(
        """
        CREATE TABLE actions.decisions (
            decision_id text PRIMARY KEY,
            rule_id text NOT NULL,
            action text NOT NULL,
            rating_id text,
            customer_id text,
            notification_id text,
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX decisions_customer_rule ON actions.decisions (customer_id, rule_id, created_at)")

    # Notifier: one delivery record per notification id (the dedupe record), and the local outbox.
    op.execute(
        """
        CREATE TABLE notifier.deliveries (
            notification_id text PRIMARY KEY,
            channel text NOT NULL,
            provider text NOT NULL,
            status text NOT NULL,
            attempts integer NOT NULL DEFAULT 0,
            rule_id text,
            customer_id text,
            provider_message_id text,
            last_error text,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            sent_at timestamptz
        )
        """
    )
    op.execute(
        """
        CREATE TABLE notifier.outbox (
            id bigserial PRIMARY KEY,
            notification_id text NOT NULL UNIQUE,
            channel text NOT NULL,
            recipient text NOT NULL,
            subject text,
            body text NOT NULL,
            rule_id text,
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )


def downgrade() -> None:
    for schema in ("collector", "notifier", "actions", "scorer", "ops"):
        op.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
