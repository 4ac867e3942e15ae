"""Collector: survey invitations waiting for the web widget (the in-app channel).

An in-app invitation is registered with its signed answer link (the one its email would carry); the
widget of the proven customer (a publishable key and the site's HMAC proof of the customer id) asks for
it and answers through that link, so the re-click and idempotency rules are the email link's.

Revision ID: 0023_survey_inapp
Revises: 0020_scorer_invitations
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0023_survey_inapp"
down_revision: str | None = "0020_scorer_invitations"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE collector.inapp_surveys (
            request_id  text PRIMARY KEY,
            customer_id text NOT NULL,
            survey_id   text NOT NULL,
            token       text NOT NULL,
            locale      text,
            created_at  timestamptz NOT NULL DEFAULT now(),
            expires_at  timestamptz NOT NULL
        )
        """
    )
    # The widget asks for a customer's unexpired invitations, newest first.
    op.execute(
        "CREATE INDEX inapp_surveys_by_customer ON collector.inapp_surveys (customer_id, created_at DESC)"
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS collector.inapp_surveys")
