"""What an API key holds now, for its quotas (``service.api.ratelimit``): its active jobs and the
models it submitted lately. ``key_id`` None is the bootstrap key (rows without an owner)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from .models import Job, JobStatus
from .queue import QueuedModel

__all__ = ["active_jobs", "models_submitted_since", "nth_model_since"]


def _owned_by(column: InstrumentedAttribute[int | None], key_id: int | None) -> ColumnElement[bool]:
    return column.is_(None) if key_id is None else column == key_id


def active_jobs(session: Session, key_id: int | None) -> int:
    """How many queued or running jobs the key owns."""
    query = select(func.count()).select_from(Job).where(
        _owned_by(Job.owner_key_id, key_id), Job.status.in_(JobStatus.ACTIVE)
    )
    return session.scalar(query) or 0


def models_submitted_since(session: Session, key_id: int | None, since: datetime) -> int:
    """How many models (``cellar_submissions`` rows, cached ones included) the key submitted since ``since``."""
    query = select(func.count()).select_from(QueuedModel).where(
        _owned_by(QueuedModel.owner_key_id, key_id), QueuedModel.created_at >= since
    )
    return session.scalar(query) or 0


def nth_model_since(session: Session, key_id: int | None, since: datetime, n: int) -> datetime | None:
    """When the key submitted its ``n``-th model (from 0, oldest first) since ``since``: once that
    one is an hour old, ``n + 1`` fewer count against the key."""
    query = (
        select(QueuedModel.created_at)
        .where(_owned_by(QueuedModel.owner_key_id, key_id), QueuedModel.created_at >= since)
        .order_by(QueuedModel.created_at, QueuedModel.submission_id)
        .offset(n)
        .limit(1)
    )
    return session.scalar(query)
