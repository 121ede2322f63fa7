"""``/v1/jobs`` and ``/v1/trials``."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from search_spaces import DatasetUnavailableError
from search_spaces.datasets import get_dataset

from ..errors import InvalidRequestError
from ..manager import JobManager
from ..settings import Settings
from ..schemas import JobCreate, JobPublic, JobsPublic, ParetoPublic, TrialPublic, TrialsPublic
from ..store import JobStatus, Store, Trial, TrialState
from ..store import queries
from .deps import ReadAccess, StoreDep, WriteAccess, get_manager, get_settings_dep
from .views import job_public, pareto_public, trial_public

router = APIRouter(prefix="/v1", tags=["jobs"])

ManagerDep = Annotated[JobManager | None, Depends(get_manager)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


def _complete_trials(session, job_ids: list[int]) -> dict[int, list[Trial]]:  # noqa: ANN001
    rows = session.scalars(
        select(Trial)
        .options(selectinload(Trial.architecture), selectinload(Trial.epoch_rows))
        .where(Trial.job_id.in_(job_ids), Trial.state == TrialState.COMPLETE)
    ).all()
    grouped: dict[int, list[Trial]] = {job_id: [] for job_id in job_ids}
    for trial in rows:
        grouped[trial.job_id].append(trial)
    return grouped


def _job_view(store: Store, job_id: int) -> JobPublic:
    with store.read() as session:
        job = queries.get_job(session, job_id)
        counts = queries.trial_counts(session, [job_id])[job_id]
        return job_public(job, counts, _complete_trials(session, [job_id])[job_id])


@router.post("/jobs", status_code=status.HTTP_201_CREATED, dependencies=[WriteAccess])
def submit_job(
    body: JobCreate, store: StoreDep, manager: ManagerDep, settings: SettingsDep, response: Response
) -> JobPublic:
    """Submit a search job. It is queued at once and started by the job manager."""
    dataset = get_dataset(body.dataset)
    try:
        dataset.check_available(settings.data_dir)
    except DatasetUnavailableError as error:
        raise InvalidRequestError(str(error), field=("body", "dataset")) from None
    info = dataset.info
    with store.write() as session:
        job = queries.create_job(
            session,
            name=body.name or f"{body.search_space.kind}-{body.dataset}",
            search_space=body.search_space.kind,
            dataset=body.dataset,
            task=info.task,
            metric=info.metric,
            spec=body.model_dump(mode="json"),
        )
        job_id = job.job_id
    if manager is not None:
        manager.wake()
    response.headers["Location"] = f"/v1/jobs/{job_id}"
    return _job_view(store, job_id)


@router.get("/jobs", dependencies=[ReadAccess])
def list_jobs(
    store: StoreDep,
    status_: Annotated[
        Literal["queued", "running", "succeeded", "failed", "cancelled"] | None, Query(alias="status")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> JobsPublic:
    with store.read() as session:
        jobs, total = queries.list_jobs(session, status=status_, limit=limit, offset=offset)
        ids = [job.job_id for job in jobs]
        counts = queries.trial_counts(session, ids)
        complete = _complete_trials(session, ids)
        return JobsPublic(data=[job_public(j, counts[j.job_id], complete[j.job_id]) for j in jobs], count=total)


@router.get("/jobs/{job_id}", dependencies=[ReadAccess])
def get_job(job_id: int, store: StoreDep) -> JobPublic:
    return _job_view(store, job_id)


@router.get("/jobs/{job_id}/pareto", dependencies=[ReadAccess])
def get_pareto(
    job_id: int,
    store: StoreDep,
    reference: Annotated[
        list[float] | None,
        Query(description="hypervolume reference point, one value per objective: ?reference=0&reference=200000"),
    ] = None,
) -> ParetoPublic:
    """The non-dominated complete trials of a job (any number of objectives) and their hypervolume."""
    with store.read() as session:
        job = queries.get_job(session, job_id)
        objectives = job.spec.get("objectives", [])
        if reference is not None and (
            len(reference) != len(objectives) or not all(math.isfinite(v) for v in reference)
        ):
            raise InvalidRequestError(
                f"reference: give one finite value per objective ({len(objectives)}: "
                f"{', '.join(o['metric'] for o in objectives)}), got {reference}",
                field=("query", "reference"),
            )
        return pareto_public(job, _complete_trials(session, [job_id])[job_id], reference)


@router.get("/jobs/{job_id}/trials", dependencies=[ReadAccess])
def list_trials(
    job_id: int,
    store: StoreDep,
    state: Annotated[Literal["running", "complete", "pruned", "failed"] | None, Query()] = None,
) -> TrialsPublic:
    with store.read() as session:
        metric = queries.get_job(session, job_id).metric
        trials = queries.list_trials(session, job_id, state=state)
        return TrialsPublic(data=[trial_public(t, metric) for t in trials], count=len(trials))


@router.post("/jobs/{job_id}/cancel", dependencies=[WriteAccess])
def cancel_job(job_id: int, store: StoreDep, manager: ManagerDep) -> JobPublic:
    """Stop a job: running trials end within seconds, finished ones stay."""
    with store.write() as session:
        queries.request_cancel(session, job_id)
    if manager is not None:
        manager.wake()
    return _job_view(store, job_id)


@router.get("/jobs/{job_id}/events", dependencies=[ReadAccess])
async def job_events(job_id: int, store: StoreDep, request: Request) -> StreamingResponse:
    """Server-sent events: a ``job`` event with the job's state whenever it changes, until it ends."""
    first = await run_in_threadpool(_job_view, store, job_id)  # 404 before the stream starts

    async def stream() -> AsyncIterator[str]:
        view, last = first, None
        while True:
            snapshot = view.model_dump_json()
            if snapshot != last:
                yield f"event: job\ndata: {snapshot}\n\n"
                last = snapshot
            if view.status in JobStatus.FINISHED or await request.is_disconnected():
                return
            await asyncio.sleep(0.5)
            view = await run_in_threadpool(_job_view, store, job_id)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


@router.get("/trials/{trial_id}", dependencies=[ReadAccess])
def get_trial(trial_id: int, store: StoreDep) -> TrialPublic:
    """One trial, with its ``nn_code``."""
    with store.read() as session:
        trial = queries.get_trial(session, trial_id)
        return trial_public(trial, queries.get_job(session, trial.job_id).metric, with_code=True)


__all__ = ["router"]
