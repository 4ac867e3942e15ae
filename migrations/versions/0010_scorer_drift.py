"""Scorer drift alerts: each (metric, segment)'s detector state, folded one closed UTC day at a time.

A row is everything ``services.scorer.drift.DriftState`` carries from one day to the next: the last
day folded, the Shiryaev-Roberts and CUSUM statistics, the current excursion (since when, the
baseline in force then and the answers since, as counts per value of the metric's grid), the
episode of the last alarm and what it detected, and the calibration in force (its baseline counts,
status and the tuned drop). ``status`` and ``evaluated_at`` are what the API lists and filters on.
``csat replay`` deletes every row: the next round refolds each segment from its first day.

Revision ID: 0010_scorer_drift
Revises: 0009_console
Create Date: 2026-12-04
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010_scorer_drift"
down_revision: str | None = "0009_console"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = "('warming_up', 'too_small', 'monitoring', 'drop_detected')"


def upgrade() -> None:
    op.execute(
        f"""
        CREATE TABLE scorer.drift_state (
            metric text NOT NULL,
            segment_key text COLLATE "C" NOT NULL,
            day date NOT NULL,
            log_sr double precision NOT NULL,
            cusum double precision NOT NULL,
            since date,
            before_counts bigint[],
            after_counts bigint[],
            floor date,
            episode_since date,
            alarms integer NOT NULL DEFAULT 0,
            last_drop jsonb,
            cal_day date,
            cal_status text CHECK (cal_status IN {STATUSES}),
            cal_baseline bigint[],
            cal_baseline_days integer,
            cal_rate double precision,
            cal_mean double precision,
            cal_watched_drop double precision,
            cal_delay_min_drop double precision,
            cal_delay_watched double precision,
            cal_theta double precision,
            cal_offset double precision,
            status text NOT NULL CHECK (status IN {STATUSES}),
            evaluated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (metric, segment_key)
        )
        """
    )
    op.execute("CREATE INDEX drift_state_status ON scorer.drift_state (status, metric, segment_key)")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS scorer.drift_state")
