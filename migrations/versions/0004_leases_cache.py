"""jobs: leases of the server running them; trials: cross-job result cache

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cellar_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_owner", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("cellar_trials", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cache_hit", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("cache_key", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_cellar_trials_cache_key"), ["cache_key"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("cellar_trials", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cellar_trials_cache_key"))
        batch_op.drop_column("cache_key")
        batch_op.drop_column("cache_hit")
    with op.batch_alter_table("cellar_jobs", schema=None) as batch_op:
        batch_op.drop_column("lease_expires_at")
        batch_op.drop_column("lease_owner")
