"""Submitted models waiting, training and done (``POST /v1/submissions``, ``POST /v1/models``).

A row is one submission. ``queued`` rows are claimed by a server's dispatcher (``running``, with
its name in ``owner`` and a lease it renews); a finished one holds its result (``done``). A server
that stops cleanly puts its running rows back in the queue; one that dies leaves leases that
expire, and the next dispatcher claims those rows again. The result and the stored run are written
in one transaction, so a finished result is never lost and never half-written.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Float, ForeignKey, Integer, String, func, or_, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from .models import Base, utcnow

__all__ = [
    "QueuedModel",
    "SubmissionStatus",
    "claim_submissions",
    "hand_back_submissions",
    "list_submissions",
    "renew_submission_leases",
]


class SubmissionStatus:
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    ALL = (QUEUED, RUNNING, DONE)


class QueuedModel(Base):
    """One submitted model: the request, where it stands, and (once done) its result."""

    __tablename__ = "cellar_submissions"

    submission_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    #: ``<prefix>-<nn_id>``, as the result names it
    name: Mapped[str] = mapped_column(String(100))
    #: the ``ModelSubmission`` as it was accepted (defaults filled in)
    request: Mapped[dict[str, Any]]
    #: GPUs it asked for (fractions allowed); 0 trains on a CPU
    gpus: Mapped[float] = mapped_column(Float, default=0.0)
    #: the ``ModelResult``, once done
    result: Mapped[dict[str, Any] | None]
    #: the stored run (with ``save_to_db``); kept as a plain id, the run may be deleted later
    run_id: Mapped[int | None] = mapped_column(
        ForeignKey("cellar_trials.trial_id", ondelete="SET NULL"), nullable=True
    )
    owner: Mapped[str | None] = mapped_column(String(100), nullable=True)
    #: the issued API key that submitted it (``cellar_api_keys.key_id``, a plain id: keys are never
    #: deleted); null: the bootstrap key
    owner_key_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(nullable=True)
    #: ``host:pid`` of the process that trained it (a Ray worker, or the server's own thread)
    worker: Mapped[str | None] = mapped_column(String(100), nullable=True)
    #: how many times a dispatcher claimed it (a server that died mid-training counts one)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)


def claim_submissions(session: Session, *, owner: str, lease_s: float, limit: int) -> list[QueuedModel]:
    """Up to ``limit`` rows to train, oldest first: queued ones, and running ones whose server's
    lease expired. Each is marked running under ``owner`` (another server skips locked rows)."""
    now = utcnow()
    expired = (QueuedModel.status == SubmissionStatus.RUNNING) & (QueuedModel.lease_until < now)
    rows = session.scalars(
        select(QueuedModel)
        .where(or_(QueuedModel.status == SubmissionStatus.QUEUED, expired))
        .order_by(QueuedModel.submission_id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    for row in rows:
        row.status, row.owner = SubmissionStatus.RUNNING, owner
        row.lease_until = now + timedelta(seconds=lease_s)
        row.attempts += 1
        row.started_at = now
    return list(rows)


def renew_submission_leases(session: Session, ids: list[int], *, owner: str, lease_s: float) -> None:
    if ids:
        session.execute(
            update(QueuedModel)
            .where(QueuedModel.submission_id.in_(ids), QueuedModel.owner == owner)
            .values(lease_until=utcnow() + timedelta(seconds=lease_s))
        )


def hand_back_submissions(session: Session, ids: list[int], *, owner: str, count_attempt: bool = False) -> None:
    """Rows this server was training go back to the queue at once: on a clean stop (the claim does
    not count as an attempt), or when their worker died (``count_attempt``)."""
    if ids:
        session.execute(
            update(QueuedModel)
            .where(
                QueuedModel.submission_id.in_(ids),
                QueuedModel.owner == owner,
                QueuedModel.status == SubmissionStatus.RUNNING,
            )
            .values(
                status=SubmissionStatus.QUEUED, owner=None, lease_until=None,
                attempts=QueuedModel.attempts - (0 if count_attempt else 1),
            )
        )


def list_submissions(
    session: Session, *, ids: list[int] | None, status: str | None, limit: int, offset: int
) -> tuple[list[QueuedModel], int]:
    """Submissions in the order they came (one page), and how many match."""
    query = select(QueuedModel)
    if ids is not None:
        query = query.where(QueuedModel.submission_id.in_(ids))
    if status is not None:
        query = query.where(QueuedModel.status == status)
    count = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(QueuedModel.submission_id).limit(limit).offset(offset)).all()
    return list(rows), count
