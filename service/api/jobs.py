"""``/v1/jobs``: submit, list, read, cancel, extend, delete; a job's Pareto set and parameter importance.

A job belongs to the key that submitted it: a key without scope ``admin`` cancels, extends and
deletes only its own."""

from __future__ import annotations

import math
import shutil
from collections import OrderedDict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import FileResponse
from sqlalchemy.orm import Session

from search_spaces.datasets import get_dataset

from ..errors import InvalidRequestError
from ..jobs.artifacts import ArtifactStore
from ..jobs.spec import JobCreate, JobExtension
from ..store import Job, JobStatus, Store, TabularTable, Trial, TrialState, lifecycle, queries, tables, utcnow
from ..tabular.jobs import fit_to_table
from .cache import cached_json
from .deps import Caller, ManagerDep, ReadAccess, SettingsDep, StoreDep, WriteAccess, WriterDep
from .deps import check_dataset_files, check_owner
from .errors import responses
from .ratelimit import check_active_jobs, check_trials
from .schemas import MAX_INT, ImportancePublic, JobPublic, JobsPublic, ParetoPublic, TrialPublic
from .views import best_trials, counted_results, job_public, pareto_public, trial_public

__all__ = ["job_view", "router"]

router = APIRouter(prefix="/v1", tags=["jobs"], responses=responses(422, 503))


def _table(session: Session, name: str) -> TabularTable:
    table = tables.get_table(session, name)
    if table is None:
        known = tables.table_names(session)
        raise InvalidRequestError(
            f"no results table {name!r} in the store; "
            + (f"it has: {', '.join(known)}" if known else "import one with `cellar table import --from SOURCE` or FILE"),
            field=("body", "executor", "table"),
        )
    return table


def job_view(store: Store, job_id: int) -> JobPublic:
    with store.read() as session:
        job = queries.get_job(session, job_id)
        counts = queries.trial_counts(session, [job_id])
        best, front = shown_views(session, [job], counts)[job_id]
        return job_public(job, counts[job_id], best, front)


# A job's view shows its best and non-dominated complete trials. Complete is a trial's last state
# and nothing of a complete trial changes after, so both the ranking (until another trial of the
# job completes) and each shown trial's view are kept here, keyed by the job's identity (its id and
# creation time: SQLite may give a deleted job's id to the next one). A job may hold 100,000 trials.
# Cache hits are the exception: deleting the job of a hit's original gives the hit the original's
# epochs and no ``duplicate_of`` (their ranking stays), so their views are loaded every time.
_Key = tuple[int, Any]
#: (job, complete trials) -> (the best trial's id, the non-dominated ones' ids)
_ranked: OrderedDict[tuple[_Key, int], tuple[int | None, list[int]]] = OrderedDict()
#: (job, trial id) -> the trial's view (``trial_public``)
_views: OrderedDict[tuple[_Key, int], TrialPublic] = OrderedDict()
_KEPT = 4096


def _identity(job: Job) -> _Key:
    return (job.job_id, job.created_at)


def _keep(cache: OrderedDict[Any, Any], key: Any, value: Any) -> None:
    cache[key] = value
    while len(cache) > _KEPT:
        cache.popitem(last=False)


def _ranking(session: Session, jobs: list[Job], counts: dict[int, dict[str, int]]) -> dict[int, tuple[int | None, list[int]]]:
    """Per job, (its best complete trial's id, its non-dominated ones'), ranked on their values alone."""
    keys = {job.job_id: (_identity(job), counts[job.job_id]["complete"]) for job in jobs}
    ranked = {job.job_id: found for job in jobs if (found := _ranked.get(keys[job.job_id])) is not None}
    missing = [job for job in jobs if job.job_id not in ranked]
    if missing:
        results = queries.trial_outcomes(session, [job.job_id for job in missing], state=TrialState.COMPLETE)
        for job in missing:
            best, front = best_trials(job, results[job.job_id])
            ranked[job.job_id] = (best.trial_id if best is not None else None, [t.trial_id for t in front])
            _keep(_ranked, keys[job.job_id], ranked[job.job_id])
    return ranked


def shown_trials(session: Session, jobs: list[Job], counts: dict[int, dict[str, int]]) -> dict[int, list[Trial]]:
    """Per job, the complete trials its view shows (the best and the non-dominated ones), loaded."""
    wanted = {job_id: list(dict.fromkeys(i for i in (best, *front) if i is not None))
              for job_id, (best, front) in _ranking(session, jobs, counts).items()}  # fmt: skip
    loaded = queries.trials_by_id(session, [i for ids in wanted.values() for i in ids])
    return {job_id: [loaded[i] for i in ids if i in loaded] for job_id, ids in wanted.items()}


def shown_views(
    session: Session, jobs: list[Job], counts: dict[int, dict[str, int]]
) -> dict[int, tuple[TrialPublic | None, list[TrialPublic]]]:
    """Per job, the views of its best trial and of its non-dominated ones; only the trials whose
    view is not kept yet are loaded."""
    ranked = _ranking(session, jobs, counts)
    by_id = {job.job_id: job for job in jobs}
    key = {job.job_id: _identity(job) for job in jobs}
    need = [i for job_id, (best, front) in ranked.items() for i in {best, *front}
            if i is not None and (key[job_id], i) not in _views]  # fmt: skip
    loaded: dict[int, TrialPublic] = {}
    for trial in queries.trials_by_id(session, need).values():
        loaded[trial.trial_id] = trial_public(trial, by_id[trial.job_id].metric)
        if not trial.cache_hit:  # a hit changes when its original's job is deleted (lifecycle.delete_job)
            _keep(_views, (key[trial.job_id], trial.trial_id), loaded[trial.trial_id])
    shown: dict[int, tuple[TrialPublic | None, list[TrialPublic]]] = {}
    for job_id, (best, front) in ranked.items():
        views = {i: loaded.get(i) or _views.get((key[job_id], i)) for i in {best, *front} if i is not None}
        shown[job_id] = (views.get(best) if best is not None else None, [v for i in front if (v := views[i]) is not None])
    return shown


@router.post(
    "/jobs", status_code=status.HTTP_201_CREATED, dependencies=[WriteAccess], responses=responses(401, 422, 403, 429)
)
def submit_job(
    body: JobCreate, store: StoreDep, manager: ManagerDep, settings: SettingsDep, response: Response, caller: WriterDep
) -> JobPublic:
    """Submit a search job. It is queued at once and started by the job manager; the key that
    submits it owns it (only it, or an admin key, may cancel, extend or delete it). A key may own
    ``CELLAR_KEY_MAX_ACTIVE_JOBS`` queued or running jobs at once (another is a 429) of at most
    ``CELLAR_KEY_MAX_TRIALS_PER_JOB`` trials each (more is a 422)."""
    check_trials(caller, body.budget.max_trials, settings)
    info = get_dataset(body.dataset).info
    with store.write() as session:
        if body.executor is not None:  # simulated on a results table: no dataset files needed
            body = fit_to_table(body, _table(session, body.executor.table))
        else:
            check_dataset_files(body.dataset, settings)
        check_active_jobs(session, caller, settings)
        job = queries.create_job(
            session,
            name=body.name or f"{body.search_space.kind}-{body.dataset}",
            search_space=body.search_space.kind,
            dataset=body.dataset,
            task=info.task,
            metric=info.metric,
            spec=body.model_dump(mode="json"),
        )
        job.owner_key_id = caller.key_id
        job_id = job.job_id
    # a folder left by an earlier job of the same id (SQLite reuses the highest id once deleted)
    ArtifactStore(settings.artifacts_dir).remove_job(job_id)
    if manager is not None:
        manager.wake()
    response.headers["Location"] = f"/v1/jobs/{job_id}"
    return job_view(store, job_id)


@router.get("/jobs", dependencies=[ReadAccess], responses=responses(422), response_model=JobsPublic)
async def list_jobs(
    request: Request,
    store: StoreDep,
    status_: Annotated[
        Literal["queued", "running", "succeeded", "failed", "cancelled"] | None, Query(alias="status")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
) -> Response:
    def build() -> JobsPublic:
        with store.read() as session:
            jobs, total = queries.list_jobs(session, status=status_, limit=limit, offset=offset)
            counts = queries.trial_counts(session, [job.job_id for job in jobs])
            shown = shown_views(session, list(jobs), counts)
            return JobsPublic(data=[job_public(j, counts[j.job_id], *shown[j.job_id]) for j in jobs], count=total)

    return await cached_json(request, build)


@router.get("/jobs/{job_id}", dependencies=[ReadAccess], responses=responses(404, 422), response_model=JobPublic)
async def get_job(job_id: int, store: StoreDep, request: Request) -> Response:
    return await cached_json(request, lambda: job_view(store, job_id), job=job_id)


@router.get("/jobs/{job_id}/pareto", dependencies=[ReadAccess], responses=responses(404, 422), response_model=ParetoPublic)
async def get_pareto(
    job_id: int,
    store: StoreDep,
    request: Request,
    reference: Annotated[
        list[float] | None,
        Query(description="hypervolume reference point, one value per objective: ?reference=0&reference=200000"),
    ] = None,
) -> Response:
    """The non-dominated complete trials of a job (any number of objectives) and their hypervolume."""

    def build() -> ParetoPublic:
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
            shown = shown_trials(session, [job], queries.trial_counts(session, [job_id]))[job_id]
            return pareto_public(job, shown, reference)

    return await cached_json(request, build, job=job_id)


@router.get(
    "/jobs/{job_id}/importance", dependencies=[ReadAccess], responses=responses(404, 422), response_model=ImportancePublic
)
async def get_importance(
    job_id: int,
    store: StoreDep,
    request: Request,
    evaluator: Annotated[
        Literal["fanova", "mean_decrease_impurity"], Query(description="Optuna's importance evaluator")
    ] = "fanova",
) -> Response:
    """How much each search parameter matters to each objective, by Optuna's importance evaluators
    on the job's complete trials (``optuna.importance.get_param_importances``)."""
    from ..jobs.importance import param_importances

    def build() -> ImportancePublic:
        with store.read() as session:
            job = queries.get_job(session, job_id)
            objectives = job.spec.get("objectives", [])
            trials = counted_results(queries.complete_trials(session, [job_id])[job_id])
        answers = param_importances(objectives, trials, evaluator=evaluator)  # seeded: the same trials, the same answer
        return ImportancePublic(
            job_id=job_id,
            evaluator=evaluator,
            trials=len(trials),
            objectives=[{**o, "importances": a} for o, a in zip(objectives, answers)],
        )

    return await cached_json(request, build, job=job_id)


def _check_owner(session: Session, job_id: int, caller: Caller, action: str) -> None:
    check_owner(caller, queries.get_job(session, job_id).owner_key_id, f"job {job_id}", action)


@router.post(
    "/jobs/{job_id}/cancel", dependencies=[WriteAccess], responses=responses(401, 404, 409, 422, 403)
)
def cancel_job(job_id: int, store: StoreDep, manager: ManagerDep, caller: WriterDep) -> JobPublic:
    """Stop a job: running trials end within seconds, finished ones stay."""
    with store.write() as session:
        _check_owner(session, job_id, caller, "cancel")
        queries.request_cancel(session, job_id)
    if manager is not None:
        manager.wake()
    return job_view(store, job_id)


@router.delete(
    "/jobs/{job_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[WriteAccess],
    responses=responses(401, 404, 409, 422, 403),
)
def delete_job(job_id: int, store: StoreDep, settings: SettingsDep, caller: WriterDep) -> Response:
    """Remove a job that is not running, with its trials, their epochs and its kept weights. Other
    jobs' cache hits on its trials keep their results (each takes the original's epochs)."""
    with store.write() as session:
        _check_owner(session, job_id, caller, "delete")
        lifecycle.delete_job(session, job_id)
    ArtifactStore(settings.artifacts_dir).remove_job(job_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/jobs/{job_id}/extend", dependencies=[WriteAccess], responses=responses(401, 404, 409, 422, 403, 429)
)
def extend_job(
    job_id: int, body: JobExtension, store: StoreDep, manager: ManagerDep, settings: SettingsDep, caller: WriterDep
) -> JobPublic:
    """Give a job that has ended more trials (a new ``max_trials``) or more time (``time_limit_s``
    seconds more, from now): it is queued again and its search goes on where it stopped, the study
    rebuilt from its stored trials. The caller's quotas apply as to a new job."""
    if body.max_trials is not None:
        check_trials(caller, body.max_trials, settings, field=("body", "max_trials"))
    with store.write() as session:
        _check_owner(session, job_id, caller, "extend")
        if queries.get_job(session, job_id).status not in JobStatus.ACTIVE:  # it would be queued again
            check_active_jobs(session, caller, settings)
        lifecycle.extend_job(session, job_id, max_trials=body.max_trials, more_seconds=body.time_limit_s, now=utcnow())
    if manager is not None:
        manager.wake()
    return job_view(store, job_id)


@router.get(
    "/jobs/{job_id}/optuna",
    dependencies=[ReadAccess],
    response_class=FileResponse,
    responses={200: {"content": {"application/vnd.sqlite3": {}}, "description": "an Optuna SQLite storage"}}
    | responses(404, 422),
)
def export_optuna(job_id: int, store: StoreDep) -> FileResponse:
    """The job's study as an Optuna storage (a SQLite file): ``optuna.load_study(study_name=None,
    storage="sqlite:///FILE")`` and ``optuna-dashboard sqlite:///FILE`` read it. Parameters with
    their distributions, states, values, per-epoch validation metrics as intermediate values."""
    import tempfile
    from pathlib import Path

    from starlette.background import BackgroundTask

    from ..jobs.optuna_export import write_study

    folder = Path(tempfile.mkdtemp(prefix="cellar-optuna-"))
    path = folder / f"cellar-job-{job_id}.db"
    try:
        with store.read() as session:
            job = queries.get_job(session, job_id)
            storage = optuna_storage(f"sqlite:///{path}")
            write_study(job, queries.list_trials(session, job_id), storage)
        storage.engine.dispose()
    except Exception:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return FileResponse(
        path,
        media_type="application/vnd.sqlite3",
        filename=path.name,
        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
    )


def optuna_storage(url: str) -> Any:
    """An Optuna RDB storage at ``url`` (its own tables, created there)."""
    import optuna

    return optuna.storages.RDBStorage(url)
