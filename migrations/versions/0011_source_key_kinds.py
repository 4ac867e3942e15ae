"""Collector: publishable and secret source keys, and each source's identity-secret version.

A browser key is public, so what it posts is a claim; a server's secret key posts facts. Keys made
before the split (``csk_``) were handed to browsers and servers alike: they count as publishable until
an admin issues an ``sk_`` key for the servers. The identity secret a site's server signs customer ids
with is derived from a platform key and this version, never stored; rotating it bumps the version.

Revision ID: 0011_source_key_kinds
Revises: 0010_scorer_drift
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011_source_key_kinds"
down_revision: str | None = "0010_scorer_drift"
branch_labels: str | Sequence[str] | None = None
#: The migrations are one branch per schema: the collector's tables must exist first.
depends_on: str | Sequence[str] | None = "0002_collector"


def upgrade() -> None:
    op.execute(
        "ALTER TABLE collector.api_keys ADD COLUMN kind text NOT NULL DEFAULT 'publishable' "
        "CHECK (kind IN ('publishable', 'secret'))"
    )
    op.execute(
        "ALTER TABLE collector.sources "
        "ADD COLUMN identity_version integer NOT NULL DEFAULT 1 CHECK (identity_version >= 1), "
        "ADD COLUMN identity_rotated_at timestamptz"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE collector.sources DROP COLUMN identity_rotated_at, DROP COLUMN identity_version")
    op.execute("ALTER TABLE collector.api_keys DROP COLUMN kind")
