"""Scorer: survey invitations and their answers, counted per segment for the response rate.

``scorer.survey_responses`` holds one row per invitation id, from ``csat.surveys.invited.v1`` (metric,
segment keys, when it was sent) and from the first rating carrying it as ``survey_id`` (when it was
answered); whichever comes first inserts the row, so the two topics may arrive in any order. A row is
counted once as invited (when its invitation arrives) and once as answered (when both are known), into
``scorer.response_counts``: per metric, segment key and hour of the invitation, so answered / invited
over a window is the share of that window's invitations answered so far, exactly; ``commented``
counts the answers that came with a comment (the completion rate: commented / answered).

Revision ID: 0020_scorer_invitations
Revises: 0022_survey_sms
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0020_scorer_invitations"
down_revision: str | None = "0022_survey_sms"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE scorer.survey_responses (
            invitation_id text PRIMARY KEY,
            metric text,
            segment jsonb,
            keys text,
            invited_at timestamptz,
            answered_at timestamptz,
            commented boolean NOT NULL DEFAULT false
        )
        """
    )
    op.execute(
        "CREATE INDEX survey_responses_invited ON scorer.survey_responses (metric, invited_at)"
        " WHERE invited_at IS NOT NULL"
    )
    op.execute(
        """
        CREATE TABLE scorer.response_counts (
            metric text NOT NULL,
            segment_key text NOT NULL,
            bucket_start timestamptz NOT NULL,
            invited bigint NOT NULL DEFAULT 0,
            answered bigint NOT NULL DEFAULT 0,
            commented bigint NOT NULL DEFAULT 0,
            PRIMARY KEY (metric, segment_key, bucket_start)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE scorer.response_counts")
    op.execute("DROP TABLE scorer.survey_responses")
