"""Per-key overrides of the rate limit and quotas (``limits``, JSON; null: the server's settings)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("cellar_api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("limits", JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cellar_api_keys", schema=None) as batch_op:
        batch_op.drop_column("limits")
