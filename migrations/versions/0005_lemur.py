"""LEMUR-scale queries and imports: epoch rows carry task, dataset, metric, nn and a signed score
under composite indexes; trials take an import key and LEMUR's prm uid; seed and nn_code may be
unknown (imported statistics)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

#: kept here, not imported: a migration must not change when the application's list does
_LOWER_IS_BETTER = ("rmse", "ppl", "mse", "mae", "loss", "wer", "cer")


def upgrade() -> None:
    with op.batch_alter_table("cellar_trials", schema=None) as batch_op:
        batch_op.add_column(sa.Column("prm_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("import_key", sa.String(length=400), nullable=True))
        batch_op.alter_column("seed", existing_type=sa.BigInteger(), nullable=True)
        batch_op.create_unique_constraint(batch_op.f("uq_cellar_trials_import_key"), ["import_key"])
    with op.batch_alter_table("cellar_architectures", schema=None) as batch_op:
        batch_op.alter_column("nn_code", existing_type=sa.Text(), nullable=True)

    with op.batch_alter_table("cellar_trial_epochs", schema=None) as batch_op:
        batch_op.alter_column("elapsed_seconds", existing_type=sa.Float(), nullable=True)
        for name, kind in (
            ("task", sa.String(length=64)),
            ("dataset", sa.String(length=100)),
            ("metric", sa.String(length=32)),
            ("nn", sa.String(length=200)),
        ):
            batch_op.add_column(sa.Column(name, kind, nullable=True))
        batch_op.add_column(sa.Column("score", sa.Float(), nullable=True))

    # fill the copies of existing rows from their trials
    epochs = sa.table(
        "cellar_trial_epochs",
        sa.column("trial_id"),
        sa.column("task"),
        sa.column("dataset"),
        sa.column("metric"),
        sa.column("nn"),
        sa.column("score"),
        sa.column("val_metric"),
    )
    trials = sa.table("cellar_trials", sa.column("trial_id"), sa.column("job_id"), sa.column("architecture_id"))
    jobs = sa.table("cellar_jobs", sa.column("job_id"), sa.column("task"), sa.column("dataset"), sa.column("metric"))
    archs = sa.table("cellar_architectures", sa.column("architecture_id"), sa.column("nn_name"))

    def of_job(column: str) -> sa.ScalarSelect:
        return (
            sa.select(jobs.c[column])
            .select_from(trials.join(jobs, jobs.c.job_id == trials.c.job_id))
            .where(trials.c.trial_id == epochs.c.trial_id)
            .scalar_subquery()
        )

    nn = (
        sa.select(archs.c.nn_name)
        .select_from(trials.join(archs, archs.c.architecture_id == trials.c.architecture_id))
        .where(trials.c.trial_id == epochs.c.trial_id)
        .scalar_subquery()
    )
    op.execute(
        epochs.update().values(
            task=of_job("task"), dataset=of_job("dataset"), metric=of_job("metric"), nn=sa.func.coalesce(nn, "")
        )
    )
    op.execute(
        epochs.update().values(
            score=sa.case((epochs.c.metric.in_(_LOWER_IS_BETTER), -epochs.c.val_metric), else_=epochs.c.val_metric)
        )
    )

    with op.batch_alter_table("cellar_trial_epochs", schema=None) as batch_op:
        for name, kind in (
            ("task", sa.String(length=64)),
            ("dataset", sa.String(length=100)),
            ("metric", sa.String(length=32)),
            ("nn", sa.String(length=200)),
        ):
            batch_op.alter_column(name, existing_type=kind, nullable=False)
        batch_op.create_index(
            "ix_cellar_trial_epochs_lemur", ["task", "dataset", "metric", "nn", "epoch", "score"], unique=False
        )
        batch_op.create_index("ix_cellar_trial_epochs_nn", ["nn", "epoch"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("cellar_trial_epochs", schema=None) as batch_op:
        batch_op.drop_index("ix_cellar_trial_epochs_nn")
        batch_op.drop_index("ix_cellar_trial_epochs_lemur")
        for name in ("score", "nn", "metric", "dataset", "task"):
            batch_op.drop_column(name)
        batch_op.alter_column("elapsed_seconds", existing_type=sa.Float(), nullable=False)
    with op.batch_alter_table("cellar_architectures", schema=None) as batch_op:
        batch_op.alter_column("nn_code", existing_type=sa.Text(), nullable=False)
    with op.batch_alter_table("cellar_trials", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_cellar_trials_import_key"), type_="unique")
        batch_op.alter_column("seed", existing_type=sa.BigInteger(), nullable=False)
        batch_op.drop_column("import_key")
        batch_op.drop_column("prm_id")
