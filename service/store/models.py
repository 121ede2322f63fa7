"""The store's tables (SQLAlchemy 2). Table names carry a ``cellar_`` prefix so they can never
collide with Optuna's (``studies``, ``trials``, ...) in a shared database."""

from __future__ import annotations

from datetime import datetime, UTC
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from search_spaces.metrics import metric_direction

__all__ = [
    "Architecture",
    "Base",
    "Job",
    "JobStatus",
    "Source",
    "Trial",
    "TrialEpoch",
    "TrialState",
    "signed_score",
    "utcnow",
]


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("store datetimes must be timezone-aware")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


JSONType = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSONType, list[Any]: JSONType}


class JobStatus:
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ACTIVE = (QUEUED, RUNNING)
    FINISHED = (SUCCEEDED, FAILED, CANCELLED)


class TrialState:
    RUNNING = "running"
    COMPLETE = "complete"
    PRUNED = "pruned"
    FAILED = "failed"
    FINISHED = (COMPLETE, PRUNED, FAILED)


class Job(Base):
    """A search job: its full spec and its state machine (queued -> running -> finished)."""

    __tablename__ = "cellar_jobs"

    job_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), index=True)
    search_space: Mapped[str] = mapped_column(String(32))
    dataset: Mapped[str] = mapped_column(String(100))
    task: Mapped[str] = mapped_column(String(64))
    metric: Mapped[str] = mapped_column(String(32))
    #: the sampler's study-wide state (Optuna's study system attributes, e.g. NSGA-II's parent
    #: populations), so that a study rebuilt on resume is the one that stopped
    sampler_attrs: Mapped[dict[str, Any] | None]
    spec: Mapped[dict[str, Any]]
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    #: the server running the job, and until when its claim holds; a server renews its leases while
    #: it runs and another (or the same one restarted) may take a job over once the lease expired
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None]
    #: the issued API key that submitted it (``cellar_api_keys.key_id``, a plain id: keys are never
    #: deleted); null: the bootstrap key (``CELLAR_API_KEY``), or submitted before keys existed
    owner_key_id: Mapped[int | None] = mapped_column(Integer, nullable=True)

    trials: Mapped[list[Trial]] = relationship(back_populates="job", order_by="Trial.number")

    __table_args__ = (Index("ix_cellar_jobs_task_dataset_metric", "task", "dataset", "metric"),)


class Architecture(Base):
    """A concrete network: a search space's encoding at given space parameters, for one input and
    output shape. Its ``nn_code`` is the standalone source the workers trained."""

    __tablename__ = "cellar_architectures"

    architecture_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    search_space: Mapped[str] = mapped_column(String(32))
    space_params: Mapped[dict[str, Any]]
    encoding: Mapped[str] = mapped_column(Text)
    #: sha256 over (space, space params, encoding, shapes): one row per concrete network
    arch_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: sha256 of the isomorphism key with the same context: shared by equivalent networks
    dedup_hash: Mapped[str] = mapped_column(String(64), index=True)
    in_shape: Mapped[list[Any]]
    out_shape: Mapped[list[Any]]
    num_params: Mapped[int | None] = mapped_column(BigInteger)
    flops: Mapped[int | None] = mapped_column(BigInteger)
    nn_name: Mapped[str] = mapped_column(String(200), index=True)
    #: None for models known only by name (LEMUR statistics imported without their model files)
    nn_code: Mapped[str | None] = mapped_column(Text)
    #: MinHash signature of ``nn_code`` (LEMUR's: 128 values, 7-token shingles), filled when first
    #: needed by a similarity query (``service.lemur.similarity``)
    code_minhash: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class NnStat(Base):
    """LEMUR's architecture statistics (its ``nn_stat``) of one network built with one
    hyperparameter set: what the worker measured on the model it trained (layers, parameters,
    FLOPs, memory, ...). The code-only statistics are derived from ``nn_code`` when read."""

    __tablename__ = "cellar_nn_stats"

    architecture_id: Mapped[int] = mapped_column(
        ForeignKey("cellar_architectures.architecture_id", ondelete="CASCADE"), primary_key=True
    )
    prm_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    stats: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Source(Base):
    """Source text of a metric or transform, stored once and referenced by the trials that used it."""

    __tablename__ = "cellar_sources"

    source_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(100))
    code_md5: Mapped[str] = mapped_column(String(32))
    code: Mapped[str] = mapped_column(Text)

    __table_args__ = (UniqueConstraint("kind", "name", "code_md5"),)


class Trial(Base):
    """One candidate of a job: what was sampled, how it was trained, how it ended."""

    __tablename__ = "cellar_trials"

    trial_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: indexed with ``state`` (``ix_cellar_trials_job_id_state``): a job's counts by state are read
    #: from the index alone
    job_id: Mapped[int] = mapped_column(ForeignKey("cellar_jobs.job_id", ondelete="CASCADE"))
    #: the Optuna trial number within the job's study
    number: Mapped[int] = mapped_column(Integer)
    architecture_id: Mapped[int | None] = mapped_column(
        ForeignKey("cellar_architectures.architecture_id"), index=True
    )
    state: Mapped[str] = mapped_column(String(16), index=True)
    #: Optuna's sampled parameters and their distributions (JSON), enough to replay the study
    params: Mapped[dict[str, Any]]
    distributions: Mapped[dict[str, Any]]
    #: LEMUR's ``prm``: the hyperparameters the model was trained with
    prm: Mapped[dict[str, Any]]
    #: LEMUR's ``uid`` of ``prm`` as imported (None: computed from ``prm``, see ``queries.prm_id``)
    prm_id: Mapped[str | None] = mapped_column(String(64))
    #: None where it is not known (imported LEMUR statistics)
    seed: Mapped[int | None] = mapped_column(BigInteger)
    split: Mapped[dict[str, Any] | None]
    epochs: Mapped[int] = mapped_column(Integer)
    values: Mapped[list[Any] | None]
    val_metric: Mapped[float | None] = mapped_column(Float)
    test_metric: Mapped[float | None] = mapped_column(Float)
    loss: Mapped[float | None] = mapped_column(Float)
    train_seconds: Mapped[float | None] = mapped_column(Float)
    #: forward milliseconds for a training-sized batch, measured on the trial's worker
    latency_ms: Mapped[float | None] = mapped_column(Float)
    #: zero-cost proxies of the untrained network (``workers.proxies``), those the job asked for
    proxies: Mapped[dict[str, Any] | None]
    duplicate_of_trial_id: Mapped[int | None] = mapped_column(ForeignKey("cellar_trials.trial_id"))
    #: the result came from another job's trial (``duplicate_of``) trained under the same protocol
    cache_hit: Mapped[bool] = mapped_column(Boolean, default=False)
    #: sha256 over the architecture's dedup hash and the training protocol (dataset, prm, epochs,
    #: seed, split): equal keys train the same function the same way, so the result is reusable
    cache_key: Mapped[str | None] = mapped_column(String(64), index=True)
    #: where the configuration came from: ``sampler``, ``initial`` (the job's list) or ``retry``
    origin: Mapped[str] = mapped_column(String(16), default="sampler")
    #: for a retry, the trial whose configuration it runs again
    retry_of_trial_id: Mapped[int | None] = mapped_column(ForeignKey("cellar_trials.trial_id"))
    #: this trial was interrupted (not by its own fault) and its configuration handed to a retry;
    #: it does not count towards ``max_trials``
    requeued: Mapped[bool] = mapped_column(Boolean, default=False)
    #: times the server running the job went away while this trial ran (stopped or crashed); the
    #: trial then ran again from its start, in place, with the same number and configuration
    interruptions: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: what the trial printed and warned, as its worker captured it (bounded there); loaded on demand
    log: Mapped[str | None] = mapped_column(Text, deferred=True)
    #: the sampler's per-trial state (Optuna's system attributes, e.g. NSGA-II's generation), so
    #: that a study rebuilt on resume is the one that stopped
    sampler_attrs: Mapped[dict[str, Any] | None]
    #: where an imported run came from (``lemur:<config>:<uid>:<n>``): a second import skips it
    import_key: Mapped[str | None] = mapped_column(String(400), unique=True)
    metric_source_id: Mapped[int | None] = mapped_column(ForeignKey("cellar_sources.source_id"))
    transform_source_id: Mapped[int | None] = mapped_column(ForeignKey("cellar_sources.source_id"))
    worker: Mapped[str | None] = mapped_column(String(200))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]

    job: Mapped[Job] = relationship(back_populates="trials")
    architecture: Mapped[Architecture | None] = relationship()
    epoch_rows: Mapped[list[TrialEpoch]] = relationship(
        order_by="TrialEpoch.epoch", cascade="all, delete-orphan", passive_deletes=True
    )

    __table_args__ = (UniqueConstraint("job_id", "number"), Index("ix_cellar_trials_job_id_state", "job_id", "state"))


class TrialEpoch(Base):
    """The metrics of one trial after one epoch (epochs count from 1).

    It also carries copies of its trial's ``task, dataset, metric`` (from the job) and model name
    ``nn``, and ``score``, the metric signed so that higher is better: LEMUR-style queries filter,
    rank and order on this one table through its composite indexes, then join the few rows they
    return to their trials. A ``before_insert`` hook fills the copies for rows added through the
    ORM; bulk writers (the LEMUR import) set them.
    """

    __tablename__ = "cellar_trial_epochs"

    trial_id: Mapped[int] = mapped_column(
        ForeignKey("cellar_trials.trial_id", ondelete="CASCADE"), primary_key=True
    )
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    loss: Mapped[float | None] = mapped_column(Float)
    val_loss: Mapped[float | None] = mapped_column(Float)
    val_metric: Mapped[float | None] = mapped_column(Float)
    #: the metric on the training data, where the model's ``learn`` returned it (LEMUR's
    #: ``(train_accuracy, train_loss)``)
    train_metric: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: seconds of training since the trial started, cumulative (LEMUR's duration, in seconds);
    #: None where unknown (some LEMUR records have no duration)
    elapsed_seconds: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    task: Mapped[str] = mapped_column(String(64))
    dataset: Mapped[str] = mapped_column(String(100))
    metric: Mapped[str] = mapped_column(String(32))
    nn: Mapped[str] = mapped_column(String(200))
    score: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (
        Index("ix_cellar_trial_epochs_lemur", "task", "dataset", "metric", "nn", "epoch", "score"),
        Index("ix_cellar_trial_epochs_nn", "nn", "epoch"),
    )


def signed_score(metric: str, value: float | None) -> float | None:
    """``value`` signed so that higher is better for ``metric`` (LEMUR's name)."""
    if value is None:
        return None
    return -value if metric_direction(metric) == "minimize" else value


@event.listens_for(TrialEpoch, "before_insert")
def _fill_lemur_columns(mapper: Any, connection: Any, row: TrialEpoch) -> None:
    if row.task is None or row.dataset is None or row.metric is None or row.nn is None:
        found = connection.execute(
            select(Job.task, Job.dataset, Job.metric, Architecture.nn_name, Trial.duplicate_of_trial_id)
            .select_from(Trial)
            .join(Job, Job.job_id == Trial.job_id)
            .outerjoin(Architecture, Architecture.architecture_id == Trial.architecture_id)
            .where(Trial.trial_id == row.trial_id)
        ).first()
        if found is None:
            raise ValueError(f"trial {row.trial_id} of an epoch row does not exist")
        if found[4] is not None:
            # its result is its original's: listing its epochs too would count one training twice
            raise ValueError(f"trial {row.trial_id} duplicates trial {found[4]} and has no epochs of its own")
        row.task, row.dataset, row.metric = found[0], found[1], found[2]
        row.nn = found[3] if found[3] is not None else ""
    row.score = signed_score(row.metric, row.val_metric)


@event.listens_for(TrialEpoch, "before_update")
def _update_score(mapper: Any, connection: Any, row: TrialEpoch) -> None:
    row.score = signed_score(row.metric, row.val_metric)
