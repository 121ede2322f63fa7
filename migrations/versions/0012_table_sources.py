"""Results tables from third-party benchmarks: where a table's numbers come from (``source``),
tables that record only the final epoch (``final_only``), per-seed validation metrics and
source-specific values per cell, and cells without a test metric

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("cellar_tabular_tables", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source", JSON, nullable=True))
        batch_op.add_column(sa.Column("final_only", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("cellar_tabular_results", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seed_metrics", JSON, nullable=True))
        batch_op.add_column(sa.Column("extra", JSON, nullable=True))
        batch_op.alter_column("test_metric", existing_type=sa.Float(), nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("cellar_tabular_results", schema=None) as batch_op:
        batch_op.alter_column("test_metric", existing_type=sa.Float(), nullable=False)
        batch_op.drop_column("extra")
        batch_op.drop_column("seed_metrics")
    with op.batch_alter_table("cellar_tabular_tables", schema=None) as batch_op:
        batch_op.drop_column("final_only")
        batch_op.drop_column("source")
