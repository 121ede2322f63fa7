"""Submitted models as a queue: waiting, training (claimed under a lease) and done, with the result;
the training metric per epoch where the model's learn() returns it

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "cellar_submissions",
        sa.Column("submission_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("request", JSON, nullable=False),
        sa.Column("gpus", sa.Float(), nullable=False),
        sa.Column("result", JSON, nullable=True),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("owner", sa.String(length=100), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("worker", sa.String(length=100), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["cellar_trials.trial_id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("submission_id"),
    )
    op.create_index("ix_cellar_submissions_status", "cellar_submissions", ["status"])
    with op.batch_alter_table("cellar_trial_epochs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("train_metric", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cellar_trial_epochs", schema=None) as batch_op:
        batch_op.drop_column("train_metric")
    op.drop_index("ix_cellar_submissions_status", table_name="cellar_submissions")
    op.drop_table("cellar_submissions")
