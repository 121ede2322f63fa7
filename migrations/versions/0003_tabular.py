"""results tables: per-epoch results of an exhaustively trained space, for the tabular executor

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# JSON columns are JSONB on PostgreSQL (indexable, compared by value)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cellar_tabular_tables",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("search_space", sa.String(length=32), nullable=False),
        sa.Column("space_params", JSON, nullable=False),
        sa.Column("dataset", sa.String(length=100), nullable=False),
        sa.Column("metric", sa.String(length=32), nullable=False),
        sa.Column("epochs", sa.Integer(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("training", JSON, nullable=False),
        sa.Column("cellar_version", sa.String(length=32), nullable=False),
        sa.Column("origin", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_cellar_tabular_tables")),
    )
    op.create_table(
        "cellar_tabular_results",
        sa.Column("result_id", sa.Integer(), nullable=False),
        sa.Column("table_name", sa.String(length=200), nullable=False),
        sa.Column("search_space", sa.String(length=32), nullable=False),
        sa.Column("space_params", JSON, nullable=False),
        sa.Column("dataset", sa.String(length=100), nullable=False),
        sa.Column("metric", sa.String(length=32), nullable=False),
        sa.Column("arch", sa.Text(), nullable=False),
        sa.Column("dedup_hash", sa.String(length=64), nullable=False),
        sa.Column("original", sa.Text(), nullable=False),
        sa.Column("params", sa.BigInteger(), nullable=False),
        sa.Column("flops", sa.BigInteger(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("curve", JSON, nullable=False),
        sa.Column("test_metric", sa.Float(), nullable=False),
        sa.Column("train_seconds", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["table_name"],
            ["cellar_tabular_tables.name"],
            name=op.f("fk_cellar_tabular_results_table_name_cellar_tabular_tables"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("result_id", name=op.f("pk_cellar_tabular_results")),
        sa.UniqueConstraint("table_name", "arch", name=op.f("uq_cellar_tabular_results_table_name")),
    )
    with op.batch_alter_table("cellar_tabular_results", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cellar_tabular_results_table_name"), ["table_name"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("cellar_tabular_results", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cellar_tabular_results_table_name"))
    op.drop_table("cellar_tabular_results")
    op.drop_table("cellar_tabular_tables")
