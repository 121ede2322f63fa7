"""The job runner's statements: a job's trials as they are asked, trained, reported and ended.

The runner persists every report before it changes anything in memory, so each function here is
one step that can simply be run again after a store outage.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, selectinload

from ..lemur.contract import prm_id
from .models import Job, JobStatus, NnStat, Trial, TrialEpoch, TrialState, utcnow

__all__ = [
    "append_log",
    "cached_trial",
    "complete_trial",
    "end_trial",
    "finish_job",
    "job_trials",
    "mark_started",
    "record_epoch",
    "record_nn_stats",
    "record_setup",
    "restart_interrupted",
    "save_study_attrs",
    "save_trial_attrs",
    "trial_by_number",
    "trained_results",
]


def restart_interrupted(session: Session, job_id: int, *, started_at: datetime) -> list[int]:
    """Trials a previous server left running run again from their start, in place: their partial
    epochs are dropped and their interruptions counted. Returns their numbers."""
    interrupted = list(
        session.scalars(
            select(Trial).where(Trial.job_id == job_id, Trial.state == TrialState.RUNNING).order_by(Trial.number)
        )
    )
    if not interrupted:
        return []
    ids = [t.trial_id for t in interrupted]
    session.execute(delete(TrialEpoch).where(TrialEpoch.trial_id.in_(ids)))
    session.execute(
        update(Trial)
        .where(Trial.trial_id.in_(ids))
        .values(
            interruptions=Trial.interruptions + 1,
            started_at=started_at,
            heartbeat_at=utcnow(),
            loss=None,
            val_metric=None,
            train_seconds=None,
            error=None,
            log=None,
        )
    )
    session.expire_all()
    return [t.number for t in interrupted]


def job_trials(session: Session, job_id: int) -> list[Trial]:
    """Every trial of the job in number order, with its architecture and epochs loaded."""
    return list(
        session.scalars(
            select(Trial)
            .options(selectinload(Trial.architecture), selectinload(Trial.epoch_rows))
            .where(Trial.job_id == job_id)
            .order_by(Trial.number)
        ).all()
    )


def trained_results(session: Session, job_id: int) -> list[Trial]:
    """The job's complete trials that it trained itself (no duplicates, no cache hits), bare."""
    return list(
        session.scalars(
            select(Trial).where(
                Trial.job_id == job_id, Trial.state == TrialState.COMPLETE, Trial.duplicate_of_trial_id.is_(None)
            )
        ).all()
    )


def trial_by_number(session: Session, job_id: int, number: int) -> Trial | None:
    return session.scalars(select(Trial).where(Trial.job_id == job_id, Trial.number == number)).first()


def cached_trial(session: Session, cache_key: str, *, other_than_job: int) -> Trial | None:
    """The first complete, trained (not itself a copy) trial of another job with ``cache_key``."""
    return session.scalars(
        select(Trial)
        .where(
            Trial.cache_key == cache_key,
            Trial.job_id != other_than_job,
            Trial.state == TrialState.COMPLETE,
            Trial.duplicate_of_trial_id.is_(None),
        )
        .order_by(Trial.trial_id)
        .limit(1)
    ).first()


def record_setup(session: Session, trial_id: int, data: dict[str, Any]) -> None:
    """The worker built the model: where, on which split, how large and how fast."""
    trial = session.get(Trial, trial_id)
    if trial is None:
        raise LookupError(f"trial {trial_id} vanished from the store")
    trial.worker = data.get("worker")
    trial.split = data.get("split")
    trial.latency_ms = data.get("latency_ms")
    trial.proxies = data.get("proxies")
    trial.heartbeat_at = utcnow()
    if trial.architecture is not None and trial.architecture.num_params is None:
        trial.architecture.num_params = int(data["num_params"])
        trial.architecture.flops = data.get("flops")
    if trial.architecture_id is not None and data.get("nn_stats"):
        record_nn_stats(session, trial.architecture_id, trial.prm_id or prm_id(trial.prm or {}), data["nn_stats"])


def record_nn_stats(session: Session, architecture_id: int, uid: str, stats: dict[str, Any]) -> None:
    """LEMUR's ``nn_stat`` of a network built with the hyperparameter set ``uid`` (first one kept)."""
    if session.get(NnStat, (architecture_id, uid)) is None:
        session.add(NnStat(architecture_id=architecture_id, prm_id=uid, stats=stats))


def append_log(session: Session, trial_id: int, text: str) -> None:
    """Add what a trial printed during one call to its log."""
    session.execute(update(Trial).where(Trial.trial_id == trial_id).values(log=func.coalesce(Trial.log, "") + text))


def record_epoch(session: Session, trial_id: int, data: dict[str, Any]) -> None:
    """One epoch's metrics (written again unchanged if the report is handled twice)."""
    session.merge(
        TrialEpoch(
            trial_id=trial_id,
            epoch=int(data["epoch"]),
            loss=data.get("loss"),
            val_loss=data.get("val_loss"),
            val_metric=data.get("val_metric"),
            train_metric=data.get("train_metric"),
            elapsed_seconds=float(data["elapsed_seconds"]),
        )
    )
    session.execute(
        update(Trial)
        .where(Trial.trial_id == trial_id)
        .values(
            loss=data.get("loss"),
            val_metric=data.get("val_metric"),
            train_seconds=float(data["elapsed_seconds"]),
            heartbeat_at=utcnow(),
        )
    )


def complete_trial(
    session: Session, trial_id: int, *, values: list[float], data: dict[str, Any], finished_at: datetime
) -> str | None:
    """Mark a trial complete with its objective values; returns its architecture's dedup hash."""
    trial = session.get(Trial, trial_id)
    if trial is None:
        raise LookupError(f"trial {trial_id} vanished from the store")
    trial.state = TrialState.COMPLETE
    trial.values = values
    trial.test_metric = data.get("test_metric")
    trial.train_seconds = data.get("train_seconds")
    trial.finished_at = finished_at
    trial.heartbeat_at = finished_at
    return trial.architecture.dedup_hash if trial.architecture is not None else None


def end_trial(
    session: Session, trial_id: int, *, state: str, error: str | None, finished_at: datetime, requeued: bool = False
) -> None:
    """A trial that ended without completing: pruned, failed or stopped."""
    session.execute(
        update(Trial)
        .where(Trial.trial_id == trial_id)
        .values(state=state, error=error, finished_at=finished_at, heartbeat_at=utcnow(), requeued=requeued)
    )


def finish_job(session: Session, job_id: int, *, cancelled: bool, finished_at: datetime, error: str | None = None) -> str:
    """End a job: cancelled, failed (``error``, or no trial completed) or succeeded; the lease is
    given back. Returns the status."""
    job = session.get(Job, job_id)
    if job is None:
        raise LookupError(f"job {job_id} vanished from the store")
    states = list(session.scalars(select(Trial.state).where(Trial.job_id == job_id)))
    if cancelled:
        job.status, job.error = JobStatus.CANCELLED, None
    elif error is not None:
        job.status, job.error = JobStatus.FAILED, error
    elif states.count(TrialState.COMPLETE) == 0:
        first_error = session.scalars(
            select(Trial.error).where(Trial.job_id == job_id, Trial.error.is_not(None)).order_by(Trial.number)
        ).first()
        job.status = JobStatus.FAILED
        job.error = f"no trial completed ({len(states)} ended without a result)" + (
            f"; first error: {first_error[:2000]}" if first_error else ""
        )
    else:
        job.status, job.error = JobStatus.SUCCEEDED, None
    job.finished_at = finished_at
    job.lease_owner, job.lease_expires_at = None, None
    return job.status


def mark_started(session: Session, job_id: int, now: datetime) -> datetime:
    """The job's start time: ``now`` unless it started before (a resumed job keeps its own)."""
    job = session.get(Job, job_id)
    if job is None:
        raise LookupError(f"job {job_id} vanished from the store")
    job.started_at = job.started_at or now
    return job.started_at


def save_study_attrs(session: Session, job_id: int, attrs: dict[str, Any]) -> None:
    """The sampler's study-wide state, written with each new trial (replayed on resume)."""
    session.execute(update(Job).where(Job.job_id == job_id).values(sampler_attrs=attrs or None))


def save_trial_attrs(session: Session, trial_id: int, attrs: dict[str, Any]) -> None:
    """A trial's sampler and pruner state as it ended (ASHA's rungs are written while it trains)."""
    session.execute(update(Trial).where(Trial.trial_id == trial_id).values(sampler_attrs=attrs or None))
