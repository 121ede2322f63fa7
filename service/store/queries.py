"""Queries beside the models: jobs, trials, architectures and sources as the API reads and writes them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Select, func, select, union, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from search_spaces import nn_id
from search_spaces._codegen import module_source
from search_spaces.metrics import METRICS, metric_module
from search_spaces.transforms import transform_source

from ..errors import ConflictError, NotFoundError
from .models import Architecture, Job, JobStatus, Source, Trial, TrialState, utcnow

__all__ = [
    "complete_trials",
    "create_job",
    "find_architecture",
    "get_job",
    "get_or_create_architecture",
    "get_or_create_source",
    "get_trial",
    "get_trial_by_number",
    "list_jobs",
    "list_trials",
    "metric_source_id",
    "request_cancel",
    "submitted_models",
    "submitted_result",
    "trial_progress",
    "trial_outcomes",
    "trials_by_id",
    "transform_source_id",
    "trial_counts",
    "trial_log",
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


#: the range of an Integer column (PostgreSQL's integer; SQLite's is wider): an id or a number
#: outside it names no row, and the database would refuse it as a parameter
_INTEGER = range(-(2**31), 2**31)


def get_job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id) if job_id in _INTEGER else None
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


def complete_trials(session: Session, job_ids: Sequence[int]) -> dict[int, list[Trial]]:
    """Per job, its complete trials with their architectures and epochs."""
    rows = session.scalars(_trial_query().where(Trial.job_id.in_(list(job_ids)), Trial.state == TrialState.COMPLETE)).all()
    grouped: dict[int, list[Trial]] = {job_id: [] for job_id in job_ids}
    for trial in rows:
        grouped[trial.job_id].append(trial)
    return grouped


def trial_outcomes(session: Session, job_ids: Sequence[int], *, state: str | None = None) -> dict[int, list[Any]]:
    """Per job, its trials (those in ``state``, if given) as bare rows in number order: ``trial_id``,
    ``number``, ``state``, ``values``, ``duplicate_of_trial_id``, ``cache_hit`` and the start of
    its ``error`` (300 characters): how they ended and what ranking them needs, without loading
    trials, architectures and epochs (a job may hold 100,000 trials)."""
    query = select(
        Trial.job_id, Trial.trial_id, Trial.number, Trial.state, Trial.values, Trial.duplicate_of_trial_id,
        Trial.cache_hit, func.substr(Trial.error, 1, 300).label("error"),
    ).where(Trial.job_id.in_(list(job_ids)))
    if state is not None:
        query = query.where(Trial.state == state)
    grouped: dict[int, list[Any]] = {job_id: [] for job_id in job_ids}
    for row in session.execute(query.order_by(Trial.job_id, Trial.number)):
        grouped[row.job_id].append(row)
    return grouped


def trials_by_id(session: Session, trial_ids: Iterable[int]) -> dict[int, Trial]:
    """The trials with these ids, with their architectures and epochs."""
    ids = sorted(set(trial_ids))
    found: dict[int, Trial] = {}
    for start in range(0, len(ids), 500):
        for trial in session.scalars(_trial_query().where(Trial.trial_id.in_(ids[start : start + 500]))):
            found[trial.trial_id] = trial
    return found


def trial_progress(
    session: Session, job_id: int, *, watched: Sequence[int], after_number: int | None
) -> tuple[list[Trial], int]:
    """What an event stream needs to see a job's trials move: the trials that are running, those in
    ``watched`` (running when last seen) and those numbered above ``after_number`` (none with
    None), each with its epoch rows; and the job's highest trial number (-1 without trials).
    Bounded by the trials in flight, not by the job's size."""
    # one select per reason, each on its own index (state, primary key, (job_id, number)): an OR
    # under ``job_id`` walked every trial of the job
    arms = [select(Trial.trial_id).where(Trial.job_id == job_id, Trial.state == TrialState.RUNNING)]
    if watched:
        arms.append(select(Trial.trial_id).where(Trial.job_id == job_id, Trial.trial_id.in_(list(watched))))
    if after_number is not None:
        arms.append(select(Trial.trial_id).where(Trial.job_id == job_id, Trial.number > after_number))
    moving = arms[0] if len(arms) == 1 else union(*arms)
    query = _trial_query().where(Trial.trial_id.in_(moving.scalar_subquery())).order_by(Trial.number)
    highest = session.scalar(select(func.max(Trial.number)).where(Trial.job_id == job_id))
    return list(session.scalars(query).all()), -1 if highest is None else highest


def submitted_models(
    session: Session, *, status: str | None = None, failure: str | None = None, limit: int = 100, offset: int = 0
) -> tuple[list[Trial], int]:
    """Submitted models (``POST /v1/models``), newest first, with their job, architecture and
    epochs; ``status`` ok or failed, ``failure`` a failure kind (the stored failure's ``kind``)."""
    where = [Trial.origin == "submitted"]
    if status == "ok":
        where.append(Trial.error.is_(None))
    elif status == "failed":
        where.append(Trial.error.is_not(None))
    if failure is not None:
        where.append(Trial.error.like(f'{{"kind": "{failure}"%'))  # the failure as submissions.py writes it
    total = session.scalar(select(func.count()).select_from(Trial).where(*where)) or 0
    rows = session.scalars(
        _trial_query().options(selectinload(Trial.job)).where(*where).order_by(Trial.trial_id.desc()).limit(limit).offset(offset)
    ).all()
    return list(rows), total


def get_trial(session: Session, trial_id: int) -> Trial:
    trial = session.scalars(_trial_query().where(Trial.trial_id == trial_id)).first() if trial_id in _INTEGER else None
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
    try:
        # another transaction (a second server, a simulation written at once) may insert the same
        # row meanwhile: PostgreSQL then refuses ours once theirs commits, and theirs is the row
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        found = session.scalars(select(model).filter_by(**key)).first()
        if found is None:
            raise
        return found
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


def trial_log(session: Session, job_id: int, number: int) -> str:
    """What trial ``number`` of the job printed ("" when nothing, or before it ran)."""
    trial = get_trial_by_number(session, job_id, number)
    return session.scalar(select(Trial.log).where(Trial.trial_id == trial.trial_id)) or ""


def get_trial_by_number(session: Session, job_id: int, number: int) -> Trial:
    """Trial ``number`` (0, 1, ... in the order the job asked them) of job ``job_id``."""
    job = get_job(session, job_id)
    query = _trial_query().where(Trial.job_id == job_id, Trial.number == number)
    trial = session.scalars(query).first() if number in _INTEGER else None
    if trial is None:
        count = session.scalar(select(func.count()).select_from(Trial).where(Trial.job_id == job_id)) or 0
        numbers = f"its trials are numbered 0 to {count - 1}" if count else "it has no trials yet"
        raise NotFoundError(f"job {job.job_id} has no trial number {number}; {numbers}")
    return trial


def find_architecture(session: Session, arch_hash: str) -> Architecture | None:
    return session.scalars(select(Architecture).where(Architecture.arch_hash == arch_hash)).first()


def submitted_result(session: Session, cache_key: str) -> Trial | None:
    """The first complete submission (``POST /v1/models``) trained under ``cache_key``."""
    return session.scalars(
        select(Trial)
        .where(Trial.cache_key == cache_key, Trial.origin == "submitted", Trial.state == TrialState.COMPLETE)
        .order_by(Trial.trial_id)
        .limit(1)
    ).first()
