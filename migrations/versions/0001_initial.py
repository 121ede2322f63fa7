"""initial schema: jobs, architectures, trials, epochs, sources

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# JSON columns are JSONB on PostgreSQL (indexable, compared by value)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('cellar_architectures',
    sa.Column('architecture_id', sa.Integer(), nullable=False),
    sa.Column('search_space', sa.String(length=32), nullable=False),
    sa.Column('space_params', JSON, nullable=False),
    sa.Column('encoding', sa.Text(), nullable=False),
    sa.Column('arch_hash', sa.String(length=64), nullable=False),
    sa.Column('dedup_hash', sa.String(length=64), nullable=False),
    sa.Column('in_shape', JSON, nullable=False),
    sa.Column('out_shape', JSON, nullable=False),
    sa.Column('num_params', sa.BigInteger(), nullable=True),
    sa.Column('flops', sa.BigInteger(), nullable=True),
    sa.Column('nn_name', sa.String(length=200), nullable=False),
    sa.Column('nn_code', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('architecture_id', name=op.f('pk_cellar_architectures')),
    sa.UniqueConstraint('arch_hash', name=op.f('uq_cellar_architectures_arch_hash'))
    )
    with op.batch_alter_table('cellar_architectures', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cellar_architectures_dedup_hash'), ['dedup_hash'], unique=False)
        batch_op.create_index(batch_op.f('ix_cellar_architectures_nn_name'), ['nn_name'], unique=False)

    op.create_table('cellar_jobs',
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('search_space', sa.String(length=32), nullable=False),
    sa.Column('dataset', sa.String(length=100), nullable=False),
    sa.Column('task', sa.String(length=64), nullable=False),
    sa.Column('metric', sa.String(length=32), nullable=False),
    sa.Column('spec', JSON, nullable=False),
    sa.Column('cancel_requested', sa.Boolean(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('job_id', name=op.f('pk_cellar_jobs'))
    )
    with op.batch_alter_table('cellar_jobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cellar_jobs_status'), ['status'], unique=False)
        batch_op.create_index('ix_cellar_jobs_task_dataset_metric', ['task', 'dataset', 'metric'], unique=False)

    op.create_table('cellar_sources',
    sa.Column('source_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('code_md5', sa.String(length=32), nullable=False),
    sa.Column('code', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('source_id', name=op.f('pk_cellar_sources')),
    sa.UniqueConstraint('kind', 'name', 'code_md5', name=op.f('uq_cellar_sources_kind'))
    )
    op.create_table('cellar_trials',
    sa.Column('trial_id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('architecture_id', sa.Integer(), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('params', JSON, nullable=False),
    sa.Column('distributions', JSON, nullable=False),
    sa.Column('prm', JSON, nullable=False),
    sa.Column('seed', sa.BigInteger(), nullable=False),
    sa.Column('split', JSON, nullable=True),
    sa.Column('epochs', sa.Integer(), nullable=False),
    sa.Column('values', JSON, nullable=True),
    sa.Column('val_metric', sa.Float(), nullable=True),
    sa.Column('test_metric', sa.Float(), nullable=True),
    sa.Column('loss', sa.Float(), nullable=True),
    sa.Column('train_seconds', sa.Float(), nullable=True),
    sa.Column('duplicate_of_trial_id', sa.Integer(), nullable=True),
    sa.Column('origin', sa.String(length=16), nullable=False),
    sa.Column('retry_of_trial_id', sa.Integer(), nullable=True),
    sa.Column('requeued', sa.Boolean(), nullable=False),
    sa.Column('metric_source_id', sa.Integer(), nullable=True),
    sa.Column('transform_source_id', sa.Integer(), nullable=True),
    sa.Column('worker', sa.String(length=200), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['architecture_id'], ['cellar_architectures.architecture_id'], name=op.f('fk_cellar_trials_architecture_id_cellar_architectures')),
    sa.ForeignKeyConstraint(['duplicate_of_trial_id'], ['cellar_trials.trial_id'], name=op.f('fk_cellar_trials_duplicate_of_trial_id_cellar_trials')),
    sa.ForeignKeyConstraint(['retry_of_trial_id'], ['cellar_trials.trial_id'], name=op.f('fk_cellar_trials_retry_of_trial_id_cellar_trials')),
    sa.ForeignKeyConstraint(['job_id'], ['cellar_jobs.job_id'], name=op.f('fk_cellar_trials_job_id_cellar_jobs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['metric_source_id'], ['cellar_sources.source_id'], name=op.f('fk_cellar_trials_metric_source_id_cellar_sources')),
    sa.ForeignKeyConstraint(['transform_source_id'], ['cellar_sources.source_id'], name=op.f('fk_cellar_trials_transform_source_id_cellar_sources')),
    sa.PrimaryKeyConstraint('trial_id', name=op.f('pk_cellar_trials')),
    sa.UniqueConstraint('job_id', 'number', name=op.f('uq_cellar_trials_job_id'))
    )
    with op.batch_alter_table('cellar_trials', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cellar_trials_architecture_id'), ['architecture_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_cellar_trials_job_id'), ['job_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_cellar_trials_state'), ['state'], unique=False)

    op.create_table('cellar_trial_epochs',
    sa.Column('trial_id', sa.Integer(), nullable=False),
    sa.Column('epoch', sa.Integer(), nullable=False),
    sa.Column('loss', sa.Float(), nullable=True),
    sa.Column('val_loss', sa.Float(), nullable=True),
    sa.Column('val_metric', sa.Float(), nullable=True),
    sa.Column('elapsed_seconds', sa.Float(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['trial_id'], ['cellar_trials.trial_id'], name=op.f('fk_cellar_trial_epochs_trial_id_cellar_trials'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('trial_id', 'epoch', name=op.f('pk_cellar_trial_epochs'))
    )


def downgrade() -> None:
    op.drop_table('cellar_trial_epochs')
    with op.batch_alter_table('cellar_trials', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cellar_trials_state'))
        batch_op.drop_index(batch_op.f('ix_cellar_trials_job_id'))
        batch_op.drop_index(batch_op.f('ix_cellar_trials_architecture_id'))

    op.drop_table('cellar_trials')
    op.drop_table('cellar_sources')
    with op.batch_alter_table('cellar_jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_cellar_jobs_task_dataset_metric')
        batch_op.drop_index(batch_op.f('ix_cellar_jobs_status'))

    op.drop_table('cellar_jobs')
    with op.batch_alter_table('cellar_architectures', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cellar_architectures_nn_name'))
        batch_op.drop_index(batch_op.f('ix_cellar_architectures_dedup_hash'))

    op.drop_table('cellar_architectures')
