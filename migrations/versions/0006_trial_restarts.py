"""Interrupted trials run again in place: a count of a trial's interruptions, and the sampler's
state (Optuna's system attributes of each trial and of the study) so that a resumed study is the
one that stopped

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("cellar_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sampler_attrs", JSON, nullable=True))
    with op.batch_alter_table("cellar_trials", schema=None) as batch_op:
        batch_op.add_column(sa.Column("interruptions", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("sampler_attrs", JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cellar_trials", schema=None) as batch_op:
        batch_op.drop_column("sampler_attrs")
        batch_op.drop_column("interruptions")
    with op.batch_alter_table("cellar_jobs", schema=None) as batch_op:
        batch_op.drop_column("sampler_attrs")
