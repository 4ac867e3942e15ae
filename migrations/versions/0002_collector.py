"""Collector: sources and their API keys (hashes only), idempotency records, outstanding SMS surveys.

Revision ID: 0002_collector
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002_collector"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS collector")
    op.execute(
        """
        CREATE TABLE collector.sources (
            source_id text PRIMARY KEY CHECK (source_id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
            name text NOT NULL,
            allowed_origins text[] NOT NULL DEFAULT '{}',
            rate_per_s real CHECK (rate_per_s IS NULL OR rate_per_s >= 0),
            rate_burst integer CHECK (rate_burst IS NULL OR rate_burst >= 1),
            disabled boolean NOT NULL DEFAULT false,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    # Only a SHA-256 of each key is kept; the key itself is shown once, when it is created.
    op.execute(
        """
        CREATE TABLE collector.api_keys (
            key_id text PRIMARY KEY,
            source_id text NOT NULL REFERENCES collector.sources (source_id) ON DELETE CASCADE,
            key_hash bytea NOT NULL UNIQUE,
            created_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz,
            revoked_at timestamptz
        )
        """
    )
    op.execute("CREATE INDEX api_keys_source ON collector.api_keys (source_id)")
    # One row per client-chosen rating id: 'pending' while its publish is in flight, then 'accepted'.
    op.execute(
        """
        CREATE TABLE collector.idempotency (
            rating_id text PRIMARY KEY,
            source_id text NOT NULL,
            fingerprint bytea NOT NULL,
            state text NOT NULL CHECK (state IN ('pending', 'accepted')),
            claimed_at timestamptz NOT NULL DEFAULT now(),
            accepted_at timestamptz
        )
        """
    )
    op.execute("CREATE INDEX idempotency_claimed ON collector.idempotency (claimed_at)")
    # SMS surveys awaiting a reply, found by a keyed hash of the phone number (never the number).
    op.execute(
        """
        CREATE TABLE collector.sms_surveys (
            request_id text PRIMARY KEY,
            phone_hash bytea NOT NULL,
            customer_id text NOT NULL,
            survey_id text,
            metric text NOT NULL,
            scale text NOT NULL,
            locale text,
            touchpoint text,
            segment jsonb NOT NULL DEFAULT '{}'::jsonb,
            account jsonb,
            created_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz NOT NULL,
            answered_at timestamptz,
            rating_id text
        )
        """
    )
    op.execute(
        "CREATE INDEX sms_surveys_open ON collector.sms_surveys (phone_hash, created_at DESC) "
        "WHERE answered_at IS NULL"
    )


def downgrade() -> None:
    for table in ("sms_surveys", "idempotency", "api_keys", "sources"):
        op.execute(f"DROP TABLE IF EXISTS collector.{table}")
