"""Queries beside the models: every read and write the API and the manager make."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Select, and_, func, literal, or_, select, true, update
from sqlalchemy.orm import Session, selectinload

from search_spaces import nn_id
from search_spaces._codegen import module_source
from search_spaces.metrics import METRICS, metric_module
from search_spaces.transforms import transform_source

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
    "lemur_row_id",
    "metric_source_id",
    "list_jobs",
    "list_trials",
    "prm_id",
    "request_cancel",
    "trial_counts",
    "transform_source_id",
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


def metric_source_id(session: Session, name: str) -> int | None:
    """The stored source of the metric Cellar runs for LEMUR's ``name``; None for one it has no code for."""
    if name not in METRICS:
        return None
    return get_or_create_source(session, kind="metric", name=name, code=module_source(metric_module(name))).source_id


def transform_source_id(session: Session, name: str) -> int | None:
    """The stored source of the transform ``name``; None for a name Cellar does not implement."""
    try:
        code = transform_source(name)
    except ValueError:  # UnknownTransformError
        return None
    return get_or_create_source(session, kind="transform", name=name, code=code).source_id


# ---- LEMUR-style data ---------------------------------------------------------------------------
def prm_id(prm: dict[str, Any]) -> str:
    """LEMUR's ``uid`` of a hyperparameter set: md5 of its sorted dict text without whitespace
    (``epoch``, the length of the run, is not a hyperparameter there)."""
    only = {k: prm[k] for k in sorted(prm) if k != "epoch"}
    return nn_id(str(only))


def lemur_row_id(*values: Any) -> str:
    """LEMUR's ``id`` of a statistics row: md5 of the list ``[transform, prm_id, task, dataset,
    metric, nn, epoch, duration, accuracy]`` as Python prints it, whitespace removed. Imported
    rows keep the ids LEMUR gives them; Cellar's own rows get theirs by the same rule."""
    return nn_id(str(list(values)))


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

    Filtering, ranking, ordering and paging run on the epoch table alone, whose copies of task,
    dataset, metric and nn sit under composite indexes; only the page's rows are then joined to
    their trials, models and sources.
    """
    E = TrialEpoch
    filters = []
    for column, values in (
        (E.task, query.task),
        (E.dataset, query.dataset),
        (E.metric, query.metric),
        (E.nn, query.nn),
        (E.epoch, query.epoch),
    ):
        if values:
            values = list(values)
            filters.append(column == values[0] if len(values) == 1 else column.in_(values))
    if query.nn_prefixes:
        filters.append(or_(*(E.nn.startswith(p, autoescape=True) for p in query.nn_prefixes)))
    keys = (E.trial_id, E.epoch, E.task, E.dataset, E.metric, E.nn)
    group = (E.task, E.dataset, E.metric, E.nn, E.epoch)
    if query.unique_nn:
        # a model's best row: the rows at its highest score (rows without a value cannot be
        # best), the earliest run and epoch among ties. A model's best row is also at the best of
        # its own (task, ..., epoch) group, so with only_best_accuracy too the answer is the same.
        best = select(E.nn, func.max(E.score).label("top")).where(*filters).group_by(E.nn).subquery()
        tied = (
            select(
                *keys,
                func.row_number().over(partition_by=E.nn, order_by=(E.trial_id, E.epoch)).label("nn_rank"),
            )
            .join(best, and_(E.nn == best.c.nn, E.score == best.c.top))
            .where(*filters)
            .subquery()
        )
        chosen = select(*(tied.c[k.key] for k in keys)).where(tied.c.nn_rank == literal(1)).subquery()
    elif query.only_best_accuracy:
        # LEMUR's rule, in the metric's direction: in each (task, dataset, metric, nn, epoch) group
        # the rows at the group's best value, ties kept; a covering scan of the composite index
        # finds each group's best, then an index seek its rows
        best = select(*group, func.max(E.score).label("top")).where(*filters).group_by(*group).subquery()
        matches = [column == best.c[column.key] for column in group]
        chosen = select(*keys).join(best, and_(*matches, E.score == best.c.top)).where(*filters).subquery()
    else:
        chosen = select(*keys).where(and_(true(), *filters)).subquery()
    page = select(chosen).order_by(
        chosen.c.task, chosen.c.dataset, chosen.c.metric, chosen.c.nn, chosen.c.epoch, chosen.c.trial_id
    )
    if query.max_rows:
        page = page.limit(query.max_rows)
    if query.offset:
        page = page.offset(query.offset)
    page = page.subquery()

    detail = (
        select(
            page.c.trial_id.label("run_id"),
            page.c.epoch,
            page.c.task,
            page.c.dataset,
            page.c.metric,
            page.c.nn,
            E.val_metric.label("accuracy"),
            E.elapsed_seconds,
            Trial.prm,
            Trial.prm_id,
            Trial.seed,
            Trial.split,
            Trial.created_at,
            Trial.job_id,
            Trial.architecture_id,
            Architecture.search_space,
            Architecture.encoding.label("arch"),
            Trial.metric_source_id,
            Trial.transform_source_id,
        )
        .select_from(page)
        .join(E, and_(E.trial_id == page.c.trial_id, E.epoch == page.c.epoch))
        .join(Trial, Trial.trial_id == page.c.trial_id)
        .outerjoin(Architecture, Architecture.architecture_id == Trial.architecture_id)
        .order_by(page.c.task, page.c.dataset, page.c.metric, page.c.nn, page.c.epoch, page.c.trial_id)
    )
    found = session.execute(detail).mappings().all()
    # model, metric and transform sources are few and long: read (and hash) each once, not per row
    source_ids = {r[k] for r in found for k in ("metric_source_id", "transform_source_id")} - {None}
    sources = {
        source_id: (code, md5)
        for source_id, code, md5 in session.execute(
            select(Source.source_id, Source.code, Source.code_md5).where(Source.source_id.in_(source_ids))
        )
    }
    arch_ids = {r["architecture_id"] for r in found} - {None}
    models = {
        arch_id: (code, nn_id(code) if code is not None else None)
        for arch_id, code in session.execute(
            select(Architecture.architecture_id, Architecture.nn_code).where(Architecture.architecture_id.in_(arch_ids))
        )
    }
    none = (None, None)
    rows = []
    for row in found:
        metric_code, metric_id = sources.get(row["metric_source_id"], none)
        transform_code, transform_id = sources.get(row["transform_source_id"], none)
        prm = dict(row["prm"] or {})
        code, code_id = models.get(row["architecture_id"], none)
        elapsed = row["elapsed_seconds"]
        duration = int(round(elapsed * 1e9)) if elapsed is not None else None
        uid = row["prm_id"] or prm_id(prm)
        rows.append(
            {
                "id": lemur_row_id(
                    prm.get("transform"), uid, row["task"], row["dataset"], row["metric"], row["nn"],
                    row["epoch"], duration, row["accuracy"],
                ),
                "task": row["task"],
                "dataset": row["dataset"],
                "metric": row["metric"],
                "metric_code": metric_code,
                "metric_id": metric_id,
                "nn": row["nn"],
                "nn_code": code,
                "nn_id": code_id,
                "epoch": row["epoch"],
                "accuracy": row["accuracy"],
                "duration": duration,
                "prm_id": uid,
                "transform_code": transform_code,
                "transform_id": transform_id,
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
