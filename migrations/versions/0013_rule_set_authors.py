"""Actions: who saved each revision of the rules (a principal's log name: ``person:<id>``, ``token:<id>``).

The revision history shows who changed the rules and when; the file's revisions and those saved with
a key have no author.

Revision ID: 0013_rule_set_authors
Revises: 0012_claims_and_caps (the actions branch)
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013_rule_set_authors"
down_revision: str | None = "0012_claims_and_caps"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE actions.rule_sets ADD COLUMN author text")


def downgrade() -> None:
    op.execute("ALTER TABLE actions.rule_sets DROP COLUMN IF EXISTS author")
