"""Zero-cost proxies of each trial's untrained network (``proxies``, JSON; null: none asked for)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("cellar_trials", schema=None) as batch_op:
        batch_op.add_column(sa.Column("proxies", JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cellar_trials", schema=None) as batch_op:
        batch_op.drop_column("proxies")
