"""Console: its own schema, with one-time sign-in links (stored as SHA-256, used once, short-lived).

A link is consumed by a POST (mail scanners fetch GETs), in one statement that also checks expiry,
so two tabs racing on the same link sign in once.

Revision ID: 0009_console
Revises: 0008_identity
Create Date: 2026-12-04
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009_console"
down_revision: str | None = "0008_identity"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS console")
    op.execute(
        """
        CREATE TABLE console.sign_in_links (
            link_hash bytea PRIMARY KEY CHECK (length(link_hash) = 32),
            user_id text NOT NULL REFERENCES identity.users (user_id) ON DELETE CASCADE,
            created_by text NOT NULL,
            created_at timestamptz NOT NULL,
            expires_at timestamptz NOT NULL CHECK (expires_at > created_at),
            used_at timestamptz
        )
        """
    )
    op.execute("CREATE INDEX sign_in_links_expires ON console.sign_in_links (expires_at)")


def downgrade() -> None:
    op.execute("DROP SCHEMA IF EXISTS console CASCADE")
