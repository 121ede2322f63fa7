"""A job's life after it ends: removing it, or extending its budget so that its search goes on."""

from __future__ import annotations

import copy
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, selectinload

from ..errors import ConflictError, InvalidRequestError
from .models import Job, JobStatus, Trial, TrialEpoch, utcnow
from .queries import get_job

__all__ = ["delete_job", "extend_job"]


def _locked(session: Session, job_id: int) -> Job:
    """The job, its row locked until the transaction ends (PostgreSQL; SQLite writes one at a time),
    so that a manager cannot start it between this check and the change."""
    get_job(session, job_id)  # the 404
    return session.scalars(select(Job).where(Job.job_id == job_id).with_for_update()).one()


def delete_job(session: Session, job_id: int) -> int:
    """Remove a job that is not running, with its trials and their epochs. Other jobs' cache hits
    on its trials keep their results: each gets the original's epochs as its own and stops pointing
    at it. Returns how many such trials were kept that way."""
    job = _locked(session, job_id)
    if job.status == JobStatus.RUNNING:
        raise ConflictError(
            f"job {job_id} is running; cancel it (POST /v1/jobs/{job_id}/cancel) and delete it once it has ended"
        )
    originals = select(Trial.trial_id).where(Trial.job_id == job_id)
    hits = session.scalars(
        select(Trial)
        .where(Trial.duplicate_of_trial_id.in_(originals), Trial.job_id != job_id)
        .options(selectinload(Trial.epoch_rows))
    ).all()
    for hit in hits:
        source = session.scalars(
            select(TrialEpoch).where(TrialEpoch.trial_id == hit.duplicate_of_trial_id).order_by(TrialEpoch.epoch)
        ).all()
        hit.duplicate_of_trial_id = None  # the result stays, as a cache hit whose original is gone
        session.flush()
        for row in source:
            session.add(
                TrialEpoch(
                    trial_id=hit.trial_id,
                    epoch=row.epoch,
                    loss=row.loss,
                    val_loss=row.val_loss,
                    val_metric=row.val_metric,
                    elapsed_seconds=row.elapsed_seconds,
                )
            )
    session.flush()
    session.execute(delete(TrialEpoch).where(TrialEpoch.trial_id.in_(originals)))
    # references between the job's own trials (duplicates, retries) go first
    session.execute(
        update(Trial).where(Trial.job_id == job_id).values(duplicate_of_trial_id=None, retry_of_trial_id=None)
    )
    session.execute(delete(Trial).where(Trial.job_id == job_id))
    session.execute(delete(Job).where(Job.job_id == job_id))
    return len(hits)


def extend_job(
    session: Session, job_id: int, *, max_trials: int | None, more_seconds: float | None, now: datetime
) -> Job:
    """Give an ended job more trials (``max_trials``, a new total) or more time (``more_seconds``
    from now) and queue it again: a manager resumes its search where it stopped."""
    job = _locked(session, job_id)
    if job.status not in JobStatus.FINISHED:
        raise ConflictError(f"job {job_id} is {job.status}; only a job that has ended can be extended")
    spec = copy.deepcopy(job.spec)
    budget = spec.setdefault("budget", {})
    asked = session.scalar(
        select(func.count()).select_from(Trial).where(Trial.job_id == job_id, Trial.requeued.is_(False))
    ) or 0
    if max_trials is not None:
        if max_trials <= asked:
            raise InvalidRequestError(
                f"max_trials: the job has asked {asked} trials already; give a larger total, e.g. {asked + 10}",
                field=("body", "max_trials"),
            )
        budget["max_trials"] = max_trials
    elif budget.get("max_trials") is not None and asked >= budget["max_trials"]:
        raise InvalidRequestError(
            f"max_trials: the job stopped at its max_trials ({budget['max_trials']}); more time alone would not "
            f"run another trial: give max_trials too, e.g. {asked + 10}",
            field=("body", "max_trials"),
        )
    if more_seconds is not None:
        started = job.started_at or now
        budget["time_limit_s"] = (now - started).total_seconds() + more_seconds
    elif budget.get("time_limit_s") is not None and job.started_at is not None:
        spent = (now - job.started_at).total_seconds()
        if spent >= budget["time_limit_s"]:
            raise InvalidRequestError(
                f"time_limit_s: the job's time limit ({budget['time_limit_s']:g} s since it started) has passed; "
                "more trials alone would not run one: give time_limit_s too (seconds more, from now)",
                field=("body", "time_limit_s"),
            )
    job.spec = spec
    job.status = JobStatus.QUEUED
    job.finished_at = None
    job.error = None
    job.cancel_requested = False
    job.updated_at = utcnow()
    session.flush()
    return job
