"""LEMUR's architecture statistics per network and hyperparameter set, and each model code's
MinHash signature for LEMUR's similarity queries

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("cellar_architectures", schema=None) as batch_op:
        batch_op.add_column(sa.Column("code_minhash", sa.LargeBinary(), nullable=True))
    op.create_table(
        "cellar_nn_stats",
        sa.Column("architecture_id", sa.Integer(), nullable=False),
        sa.Column("prm_id", sa.String(length=64), nullable=False),
        sa.Column("stats", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["architecture_id"], ["cellar_architectures.architecture_id"], ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("architecture_id", "prm_id"),
    )


def downgrade() -> None:
    op.drop_table("cellar_nn_stats")
    with op.batch_alter_table("cellar_architectures", schema=None) as batch_op:
        batch_op.drop_column("code_minhash")
