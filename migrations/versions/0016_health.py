"""Actions: accounts and their contacts, usage observations, health models, current health and history.

``health_ratings`` keeps the answers the health model reads with their exact normalised value and
positivity (``actions.ratings`` stores ``normalized`` as ``real``); ``health_current`` holds one row
per subject (an account, or a customer without one) with its explanation, ``health_history`` the steps
of its score and band; ``health_models`` the versioned models saved through the admin API.

Revision ID: 0016_health
Revises: 0013_rule_set_authors
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016_health"
down_revision: str | None = "0018_gdpr"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE actions.accounts (
            account_id text PRIMARY KEY,
            name text,
            owner_email text,
            owner_name text,
            value double precision,
            tier text,
            updated_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX accounts_owner ON actions.accounts (lower(owner_email))")
    op.execute(
        """
        CREATE TABLE actions.account_members (
            account_id text NOT NULL,
            customer_id text NOT NULL,
            joined_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (customer_id, account_id)
        )
        """
    )
    op.execute("CREATE INDEX account_members_account ON actions.account_members (account_id)")
    op.execute(
        """
        CREATE TABLE actions.usage_observations (
            observation_id text PRIMARY KEY,
            account_id text,
            customer_id text,
            observed_at timestamptz NOT NULL,
            received_at timestamptz NOT NULL,
            signals jsonb NOT NULL,
            source text
        )
        """
    )
    op.execute("CREATE INDEX usage_account ON actions.usage_observations (account_id, observed_at)")
    op.execute("CREATE INDEX usage_customer ON actions.usage_observations (customer_id, observed_at)")
    op.execute(
        """
        CREATE TABLE actions.health_ratings (
            rating_id text PRIMARY KEY,
            customer_id text NOT NULL,
            metric text NOT NULL,
            score integer NOT NULL,
            normalized double precision NOT NULL,
            positive boolean NOT NULL,
            occurred_at timestamptz NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX health_ratings_customer ON actions.health_ratings (customer_id, occurred_at)")
    op.execute(
        """
        CREATE TABLE actions.health_models (
            version integer PRIMARY KEY,
            document jsonb NOT NULL,
            origin text NOT NULL,
            author text,
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE actions.health_current (
            subject_kind text NOT NULL CHECK (subject_kind IN ('account', 'customer')),
            subject_id text NOT NULL,
            at timestamptz NOT NULL,
            score double precision,
            band text,
            band_since timestamptz,
            transitions integer NOT NULL DEFAULT 0,
            delta_30d double precision,
            model_version integer,
            explanation jsonb NOT NULL DEFAULT '[]'::jsonb,
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (subject_kind, subject_id)
        )
        """
    )
    op.execute("CREATE INDEX health_current_band ON actions.health_current (band)")
    op.execute(
        """
        CREATE TABLE actions.health_history (
            subject_kind text NOT NULL,
            subject_id text NOT NULL,
            at timestamptz NOT NULL,
            score double precision,
            band text,
            PRIMARY KEY (subject_kind, subject_id, at)
        )
        """
    )


def downgrade() -> None:
    for table in (
        "health_history",
        "health_current",
        "health_models",
        "health_ratings",
        "usage_observations",
        "account_members",
        "accounts",
    ):
        op.execute(f"DROP TABLE IF EXISTS actions.{table}")
