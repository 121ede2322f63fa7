"""Job leases and the job manager's statements: which server runs which job, and until when.

A server claims a job by writing its name and an expiry into the job's row (``lease_owner``,
``lease_expires_at``) and renews the claim while it runs the job. Another server (or the same one
restarted) takes a job over only once its lease expired, so a job never runs twice at once. A
server that stops cleanly hands its jobs back (``hand_back``): the next one resumes them at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from .models import Job, JobStatus, Trial, TrialState, utcnow

__all__ = [
    "adoptable_jobs",
    "cancel_flags",
    "claim_job",
    "expired_leases",
    "fail_job",
    "hand_back",
    "lease_holders",
    "note_waiting",
    "renew_leases",
]


def _free_for(owner: str, now: datetime):  # noqa: ANN202 - a SQL expression
    """Jobs nobody holds, this server holds, or whose holder let its lease expire."""
    return or_(Job.lease_owner.is_(None), Job.lease_owner == owner, Job.lease_expires_at < now)


def adoptable_jobs(session: Session, *, owner: str, running: Sequence[int], limit: int) -> list[int]:
    """Active jobs this server may start or resume, running ones (resumed) first, then by id."""
    now = utcnow()
    return list(
        session.scalars(
            select(Job.job_id)
            .where(Job.status.in_(JobStatus.ACTIVE), Job.job_id.not_in(list(running) or [-1]), _free_for(owner, now))
            .order_by(Job.status.desc(), Job.job_id)
            .limit(limit)
        ).all()
    )


def lease_holders(session: Session, *, owner: str) -> list[tuple[int, str, datetime]]:
    """Active jobs another server holds a live lease on: (job id, holder, expiry)."""
    now = utcnow()
    rows = session.execute(
        select(Job.job_id, Job.lease_owner, Job.lease_expires_at).where(
            Job.status.in_(JobStatus.ACTIVE),
            Job.lease_owner.is_not(None),
            Job.lease_owner != owner,
            Job.lease_expires_at >= now,
        )
    ).all()
    return [(job_id, holder, expires) for job_id, holder, expires in rows]


def claim_job(session: Session, job_id: int, *, owner: str, lease_s: float) -> bool:
    """Mark the job running under this server's lease; False if it was cancelled or another
    server holds it (since the manager read it)."""
    now = utcnow()
    claimed = session.execute(
        update(Job)
        .where(Job.job_id == job_id, Job.status.in_(JobStatus.ACTIVE), _free_for(owner, now))
        .values(
            status=JobStatus.RUNNING,
            error=None,
            updated_at=now,
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=lease_s),
        )
    )
    return claimed.rowcount > 0


def renew_leases(session: Session, job_ids: Sequence[int], *, owner: str, lease_s: float) -> set[int]:
    """Extend this server's leases on ``job_ids`` and heartbeat their running trials; returns
    the jobs this server still holds (another may have taken over one it let expire)."""
    now = utcnow()
    session.execute(
        update(Job)
        .where(Job.job_id.in_(job_ids), Job.lease_owner == owner)
        .values(lease_expires_at=now + timedelta(seconds=lease_s))
    )
    session.execute(
        update(Trial).where(Trial.job_id.in_(job_ids), Trial.state == TrialState.RUNNING).values(heartbeat_at=now)
    )
    return set(session.scalars(select(Job.job_id).where(Job.job_id.in_(job_ids), Job.lease_owner == owner)))


def expired_leases(session: Session, job_ids: Sequence[int], *, owner: str) -> dict[int, tuple[str, datetime]]:
    """Of ``job_ids``, those whose lease another server let expire: it went away without handing
    them back (killed, lost, stalled). Job id -> (that server, when its lease expired)."""
    if not job_ids:
        return {}
    rows = session.execute(
        select(Job.job_id, Job.lease_owner, Job.lease_expires_at).where(
            Job.job_id.in_(list(job_ids)), Job.lease_owner.is_not(None), Job.lease_owner != owner,
            Job.lease_expires_at < utcnow(),
        )
    ).all()
    return {job_id: (holder, expired_at) for job_id, holder, expired_at in rows}


def hand_back(session: Session, *, owner: str) -> tuple[list[int], int]:
    """A clean stop: give back every lease this server holds. The running trials of those jobs stay
    ``running``: the server that resumes a job runs them again from their start, in place (same
    number, same configuration). Returns the jobs handed back and how many trials were running."""
    released = sorted(
        session.scalars(
            update(Job)
            .where(Job.lease_owner == owner)
            .values(lease_owner=None, lease_expires_at=None, updated_at=utcnow())
            .returning(Job.job_id)
        ).all()
    )
    if not released:
        return [], 0
    running = session.scalar(
        select(func.count()).select_from(Trial).where(Trial.job_id.in_(released), Trial.state == TrialState.RUNNING)
    )
    return released, int(running or 0)


def fail_job(session: Session, job_id: int, message: str) -> None:
    """End an active job as failed with ``message``; its running trials fail with it."""
    now = utcnow()
    session.execute(
        update(Trial)
        .where(Trial.job_id == job_id, Trial.state == TrialState.RUNNING)
        .values(state=TrialState.FAILED, error=f"job failed: {message}", finished_at=now)
    )
    session.execute(
        update(Job)
        .where(Job.job_id == job_id, Job.status.in_(JobStatus.ACTIVE))
        .values(status=JobStatus.FAILED, error=message, finished_at=now, lease_owner=None, lease_expires_at=None)
    )


def note_waiting(session: Session, job_id: int, note: str) -> None:
    """Tell a queued job's readers why it waits (its ``error`` field while queued)."""
    session.execute(
        update(Job)
        .where(Job.job_id == job_id, Job.status == JobStatus.QUEUED, Job.error.is_distinct_from(note))
        .values(error=note, updated_at=utcnow())
    )


def cancel_flags(session: Session, job_ids: Sequence[int]) -> dict[int, bool]:
    """Job id -> whether a cancel was requested."""
    if not job_ids:
        return {}
    rows = session.execute(select(Job.job_id, Job.cancel_requested).where(Job.job_id.in_(list(job_ids)))).all()
    return {job_id: bool(flag) for job_id, flag in rows}
