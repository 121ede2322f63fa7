"""Scoped API keys the server issues (stored as SHA-256 hashes), and the key that created each job
and submission

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

#: tables whose rows get the key that created them
_OWNED = ("cellar_jobs", "cellar_submissions")


def upgrade() -> None:
    op.create_table(
        "cellar_api_keys",
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("scopes", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key_id", name="pk_cellar_api_keys"),
    )
    # a plain id, no foreign key: keys are revoked, never deleted, and on SQLite a foreign key
    # would mean copying cellar_jobs (whose DROP, with foreign keys on, cascades to its trials)
    for table in _OWNED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("owner_key_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    for table in reversed(_OWNED):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("owner_key_id")
    op.drop_table("cellar_api_keys")
