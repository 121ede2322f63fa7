"""A job's trial counts by state from an index alone: ``(job_id, state)`` replaces ``(job_id)``

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_cellar_trials_job_id_state", "cellar_trials", ["job_id", "state"])
    op.drop_index("ix_cellar_trials_job_id", table_name="cellar_trials")


def downgrade() -> None:
    op.create_index("ix_cellar_trials_job_id", "cellar_trials", ["job_id"])
    op.drop_index("ix_cellar_trials_job_id_state", table_name="cellar_trials")
