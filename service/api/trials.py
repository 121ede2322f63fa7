"""A job's trials: ``/v1/jobs/{job_id}/trials`` (all, or one by its number) and ``/v1/trials/{trial_id}``.

A trial has a number in its job (0, 1, ... in the order the job asked them: what ``cellar trials``
shows) and a global id (``id``, unique in the store). Both reach it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from sqlalchemy.orm import Session

from ..store import Trial, queries
from .deps import ReadAccess, StoreDep
from .errors import responses
from .schemas import TrialPublic, TrialsPublic
from .views import drawing, trial_public

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["trials"], responses=responses(422, 503))

JobId = Annotated[int, Path(description="the job's id")]


@router.get("/jobs/{job_id}/trials", dependencies=[ReadAccess], responses=responses(404, 422))
def list_trials(
    job_id: JobId,
    store: StoreDep,
    state: Annotated[Literal["running", "complete", "pruned", "failed"] | None, Query()] = None,
) -> TrialsPublic:
    """The job's trials in number order, with their per-epoch metrics (without ``nn_code``)."""
    with store.read() as session:
        metric = queries.get_job(session, job_id).metric
        trials = queries.list_trials(session, job_id, state=state)
        return TrialsPublic(data=[trial_public(t, metric) for t in trials], count=len(trials))


@router.get("/jobs/{job_id}/trials/{number}", dependencies=[ReadAccess], responses=responses(404, 422))
def get_job_trial(
    job_id: JobId,
    number: Annotated[int, Path(ge=0, description="the trial's number in its job: 0, 1, ...")],
    store: StoreDep,
) -> TrialPublic:
    """Trial ``number`` of the job, with its ``nn_code`` and its ``drawing``."""
    with store.read() as session:
        trial = queries.get_trial_by_number(session, job_id, number)
        return _with_code(session, trial)


@router.get("/trials/{trial_id}", dependencies=[ReadAccess], responses=responses(404, 422))
def get_trial(
    trial_id: Annotated[int, Path(description="the trial's global id (its `id`), not its number in the job")],
    store: StoreDep,
) -> TrialPublic:
    """One trial by its global id, with its ``nn_code`` and its ``drawing``."""
    with store.read() as session:
        return _with_code(session, queries.get_trial(session, trial_id))


def _with_code(session: Session, trial: Trial) -> TrialPublic:
    job = queries.get_job(session, trial.job_id)
    public = trial_public(trial, job.metric, with_code=True)
    public.drawing = drawing(job, trial)
    return public
