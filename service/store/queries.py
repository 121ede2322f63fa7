"""Queries beside the models: every read and write the API and the manager make."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Select, and_, case, func, literal, or_, select, update
from sqlalchemy.orm import Session, aliased, selectinload

from search_spaces import nn_id
from search_spaces.metrics import METRICS

from ..errors import ConflictError, NotFoundError
from .models import Architecture, Job, JobStatus, Source, Trial, TrialEpoch, utcnow

__all__ = [
    "DataQuery",
    "create_job",
    "data_rows",
    "get_job",
    "get_or_create_architecture",
    "get_or_create_source",
    "get_trial",
    "list_jobs",
    "list_trials",
    "prm_id",
    "request_cancel",
    "trial_counts",
]


# ---- jobs ---------------------------------------------------------------------------------------
def create_job(
    session: Session, *, name: str, search_space: str, dataset: str, task: str, metric: str, spec: dict[str, Any]
) -> Job:
    job = Job(
        name=name,
        status=JobStatus.QUEUED,
        search_space=search_space,
        dataset=dataset,
        task=task,
        metric=metric,
        spec=spec,
        cancel_requested=False,
    )
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFoundError(f"job {job_id} does not exist; GET /v1/jobs lists the jobs")
    return job


def list_jobs(
    session: Session, *, status: str | None = None, limit: int = 100, offset: int = 0
) -> tuple[list[Job], int]:
    query = select(Job)
    count = select(func.count()).select_from(Job)
    if status is not None:
        query = query.where(Job.status == status)
        count = count.where(Job.status == status)
    jobs = session.scalars(query.order_by(Job.job_id.desc()).limit(limit).offset(offset)).all()
    return list(jobs), session.scalar(count) or 0


def trial_counts(session: Session, job_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """Per job: trials in each state, and the total."""
    counts: dict[int, dict[str, int]] = {
        job_id: {"total": 0, "running": 0, "complete": 0, "pruned": 0, "failed": 0} for job_id in job_ids
    }
    if not job_ids:
        return counts
    rows = session.execute(
        select(Trial.job_id, Trial.state, func.count())
        .where(Trial.job_id.in_(job_ids))
        .group_by(Trial.job_id, Trial.state)
    )
    for job_id, state, n in rows:
        counts[job_id][state] = counts[job_id].get(state, 0) + n
        counts[job_id]["total"] += n
    return counts


def request_cancel(session: Session, job_id: int) -> Job:
    """Cancel a queued job at once; ask the manager to stop a running one."""
    job = get_job(session, job_id)
    if job.status in JobStatus.FINISHED:
        raise ConflictError(f"job {job_id} is already {job.status}; only queued or running jobs can be cancelled")
    # conditional updates: the manager may move the job between our read and this write
    queued = session.execute(
        update(Job)
        .where(Job.job_id == job_id, Job.status == JobStatus.QUEUED)
        .values(status=JobStatus.CANCELLED, cancel_requested=True, finished_at=utcnow(), updated_at=utcnow())
    )
    if queued.rowcount == 0:
        session.execute(
            update(Job)
            .where(Job.job_id == job_id, Job.status == JobStatus.RUNNING)
            .values(cancel_requested=True, updated_at=utcnow())
        )
    session.refresh(job)
    return job


# ---- trials -------------------------------------------------------------------------------------
def _trial_query() -> Select[tuple[Trial]]:
    return select(Trial).options(selectinload(Trial.architecture), selectinload(Trial.epoch_rows))


def list_trials(session: Session, job_id: int, *, state: str | None = None) -> list[Trial]:
    get_job(session, job_id)
    query = _trial_query().where(Trial.job_id == job_id)
    if state is not None:
        query = query.where(Trial.state == state)
    return list(session.scalars(query.order_by(Trial.number)).all())


def get_trial(session: Session, trial_id: int) -> Trial:
    trial = session.scalars(_trial_query().where(Trial.trial_id == trial_id)).first()
    if trial is None:
        raise NotFoundError(f"trial {trial_id} does not exist; GET /v1/jobs/{{id}}/trials lists a job's trials")
    return trial


# ---- architectures and sources ------------------------------------------------------------------
_Row = TypeVar("_Row", Architecture, Source)


def _get_or_create(session: Session, model: type[_Row], key: dict[str, Any], **fields: Any) -> _Row:
    """The row of ``model`` matching ``key``, inserted with ``fields`` if there is none."""
    found = session.scalars(select(model).filter_by(**key)).first()
    if found is not None:
        return found
    row = model(**key, **fields)
    session.add(row)
    session.flush()
    return row


def get_or_create_architecture(session: Session, *, arch_hash: str, **fields: Any) -> Architecture:
    """The architecture with ``arch_hash`` (space, parameters, encoding and shapes), stored once."""
    return _get_or_create(session, Architecture, {"arch_hash": arch_hash}, **fields)


def get_or_create_source(session: Session, *, kind: str, name: str, code: str) -> Source:
    """A metric's or transform's source text, stored once per distinct text."""
    return _get_or_create(session, Source, {"kind": kind, "name": name, "code_md5": nn_id(code)}, code=code)


# ---- LEMUR-style data ---------------------------------------------------------------------------
def prm_id(prm: dict[str, Any]) -> str:
    """LEMUR's ``uid`` of a hyperparameter set: md5 of its sorted dict text without whitespace
    (``epoch``, the length of the run, is not a hyperparameter there)."""
    only = {k: prm[k] for k in sorted(prm) if k != "epoch"}
    return nn_id(str(only))


@dataclass(frozen=True)
class DataQuery:
    """LEMUR's ``data()`` filters. ``None`` means no filter; sequences mean any of the values."""

    task: Sequence[str] | None = None
    dataset: Sequence[str] | None = None
    metric: Sequence[str] | None = None
    nn: Sequence[str] | None = None
    epoch: Sequence[int] | None = None
    #: model names starting with any of these (LEMUR's ``nn_prefixes``, e.g. ``("rag-", "unq-")``)
    nn_prefixes: Sequence[str] | None = None
    only_best_accuracy: bool = False
    #: one row per model name: its best row (the metric's direction), earliest run and epoch on ties
    unique_nn: bool = False
    max_rows: int | None = None
    offset: int = 0


def data_rows(session: Session, query: DataQuery) -> list[dict[str, Any]]:
    """Per-epoch results with LEMUR's columns, filtered, ordered by task, dataset, metric, nn, epoch.

    ``only_best_accuracy`` keeps, in each (task, dataset, metric, nn, epoch) group, the rows at the
    group's best value; unlike LEMUR, "best" follows the metric's direction (lowest for metrics
    that are minimised). Ties keep every tied row, as LEMUR does. ``unique_nn`` then keeps one row
    per model name: its best, the earliest run and epoch among ties. ``nn_prefixes`` are bound
    ``LIKE`` patterns with ``%`` and ``_`` escaped (LEMUR pastes them into its SQL).
    """
    metric_source = aliased(Source)
    transform_source = aliased(Source)
    minimised = [name for name, (_, direction) in METRICS.items() if direction == "minimize"]
    score = case((Job.metric.in_(minimised), -TrialEpoch.val_metric), else_=TrialEpoch.val_metric)
    columns = [
        TrialEpoch.trial_id.label("run_id"),
        TrialEpoch.epoch,
        TrialEpoch.val_metric.label("accuracy"),
        TrialEpoch.elapsed_seconds,
        Trial.prm,
        Trial.seed,
        Trial.created_at,
        Job.job_id,
        Job.task,
        Job.dataset,
        Job.metric,
        Architecture.nn_name.label("nn"),
        Architecture.nn_code,
        Architecture.search_space,
        Architecture.encoding.label("arch"),
        metric_source.code.label("metric_code"),
        metric_source.code_md5.label("metric_id"),
        transform_source.code.label("transform_code"),
        transform_source.code_md5.label("transform_id"),
    ]
    filters = [Trial.duplicate_of_trial_id.is_(None)]
    for column, values in (
        (Job.task, query.task),
        (Job.dataset, query.dataset),
        (Job.metric, query.metric),
        (Architecture.nn_name, query.nn),
        (TrialEpoch.epoch, query.epoch),
    ):
        if values:
            filters.append(column.in_(list(values)))
    if query.nn_prefixes:
        filters.append(or_(*(Architecture.nn_name.startswith(p, autoescape=True) for p in query.nn_prefixes)))
    if query.only_best_accuracy or query.unique_nn:
        # rows without a value cannot be best (LEMUR's MAX ignores NULLs; PostgreSQL sorts them first)
        filters.append(TrialEpoch.val_metric.is_not(None))
    base = (
        select(*columns, score.label("score"))
        .select_from(TrialEpoch)
        .join(Trial, Trial.trial_id == TrialEpoch.trial_id)
        .join(Job, Job.job_id == Trial.job_id)
        .join(Architecture, Architecture.architecture_id == Trial.architecture_id)
        .outerjoin(metric_source, metric_source.source_id == Trial.metric_source_id)
        .outerjoin(transform_source, transform_source.source_id == Trial.transform_source_id)
        .where(and_(*filters))
    )
    if query.only_best_accuracy or query.unique_nn:
        # a model's best row is also at the best of its own (task, ..., epoch) group, so one pass
        # over both windows gives either filter and their combination
        ranked = base.add_columns(
            func.rank()
            .over(
                partition_by=(Job.task, Job.dataset, Job.metric, Architecture.nn_name, TrialEpoch.epoch),
                order_by=score.desc().nulls_last(),
            )
            .label("best_rank"),
            func.row_number()
            .over(
                partition_by=Architecture.nn_name,
                order_by=(score.desc().nulls_last(), TrialEpoch.trial_id, TrialEpoch.epoch),
            )
            .label("nn_rank"),
        ).subquery()
        keep = []
        if query.only_best_accuracy:
            keep.append(ranked.c.best_rank == literal(1))
        if query.unique_nn:
            keep.append(ranked.c.nn_rank == literal(1))
        source = (
            select(*[c for c in ranked.c if c.name not in ("best_rank", "nn_rank")]).where(and_(*keep)).subquery()
        )
    else:
        source = base.subquery()
    ordered = select(source).order_by(
        source.c.task, source.c.dataset, source.c.metric, source.c.nn, source.c.epoch, source.c.run_id
    )
    if query.max_rows:
        ordered = ordered.limit(query.max_rows)
    if query.offset:
        ordered = ordered.offset(query.offset)
    rows = []
    for row in session.execute(ordered).mappings():
        prm = dict(row["prm"] or {})
        rows.append(
            {
                "id": hashlib.md5(f"cellar:{row['run_id']}:{row['epoch']}".encode()).hexdigest(),
                "task": row["task"],
                "dataset": row["dataset"],
                "metric": row["metric"],
                "metric_code": row["metric_code"],
                "metric_id": row["metric_id"],
                "nn": row["nn"],
                "nn_code": row["nn_code"],
                "nn_id": nn_id(row["nn_code"]),
                "epoch": row["epoch"],
                "accuracy": row["accuracy"],
                "duration": int(round(row["elapsed_seconds"] * 1e9)),
                "prm_id": prm_id(prm),
                "transform_code": row["transform_code"],
                "transform_id": row["transform_id"],
                "prm": prm,
                "run_id": row["run_id"],
                "job_id": row["job_id"],
                "seed": row["seed"],
                "split": "val",
                "created_at": row["created_at"],
                "search_space": row["search_space"],
                "arch": row["arch"],
            }
        )
    return rows
