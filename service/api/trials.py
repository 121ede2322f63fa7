"""A job's trials: ``/v1/jobs/{job_id}/trials`` (all, or one by its number) and ``/v1/trials/{trial_id}``.

A trial has a number in its job (0, 1, ... in the order the job asked them: what ``cellar trials``
shows) and a global id (``id``, unique in the store). Both reach it.
"""

from __future__ import annotations

import pathlib
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import FileResponse, PlainTextResponse

from sqlalchemy.orm import Session

from ..store import Trial, queries
from ..errors import NotFoundError
from ..jobs.artifacts import ArtifactStore
from .cache import cache_key, cached_json, json_bytes
from .deps import ReadAccess, SettingsDep, StoreDep
from .errors import responses
from .schemas import TrialPublic, TrialsPublic
from .views import drawing, trial_public

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["trials"], responses=responses(422, 503))


def _json_errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses(*codes)`` for a route that answers text: FastAPI would list its errors (the
    router's too) as text, yet they are JSON (``ErrorPublic``)."""
    content = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorPublic"}}}
    return {code: {"description": error["description"], "content": content} for code, error in responses(*codes).items()}


JobId = Annotated[int, Path(description="the job's id")]


@router.get(
    "/jobs/{job_id}/trials", dependencies=[ReadAccess], responses=responses(404, 422), response_model=TrialsPublic
)
async def list_trials(
    job_id: JobId,
    store: StoreDep,
    request: Request,
    state: Annotated[Literal["running", "complete", "pruned", "failed"] | None, Query()] = None,
) -> Response:
    """The job's trials in number order, with their per-epoch metrics (without ``nn_code``)."""

    def build() -> TrialsPublic:
        with store.read() as session:
            metric = queries.get_job(session, job_id).metric
            trials = queries.list_trials(session, job_id, state=state)
            return TrialsPublic(data=[trial_public(t, metric) for t in trials], count=len(trials))

    return await cached_json(request, build, job=job_id)


@router.get(
    "/jobs/{job_id}/trials/{number}", dependencies=[ReadAccess], responses=responses(404, 422), response_model=TrialPublic
)
async def get_job_trial(
    job_id: JobId,
    number: Annotated[int, Path(ge=0, description="the trial's number in its job: 0, 1, ...")],
    store: StoreDep,
    settings: SettingsDep,
    request: Request,
) -> Response:
    """Trial ``number`` of the job, with its ``nn_code``, its ``drawing`` and whether its weights are kept."""
    artifacts = ArtifactStore(settings.artifacts_dir)

    def build() -> tuple[pathlib.Path, bytes, bytes]:
        # both answers: whether the weights are kept is asked of the disk on every request, as
        # the job manager keeps and drops them without a change to the store
        with store.read() as session:
            trial = queries.get_trial_by_number(session, job_id, number)
            public = _with_code(session, trial)
            trained = _trained(session, trial)
        path = artifacts.weights(trained.job_id, trained.number)
        kept, dropped = (json_bytes(public.model_copy(update={"weights": flag})) for flag in (True, False))
        return path, kept, dropped

    cache = request.app.state.read_cache
    path, kept, dropped = await cache.aget(cache_key(request), build, size=lambda a: len(a[1]) * 2, job=job_id)
    return Response(kept if path.is_file() else dropped, media_type="application/json")


@router.get(
    "/jobs/{job_id}/trials/{number}/log",
    dependencies=[ReadAccess],
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}, "description": "the trial's output"}} | _json_errors(404, 422, 503),
)
def get_log(
    job_id: JobId,
    number: Annotated[int, Path(ge=0, description="the trial's number in its job: 0, 1, ...")],
    store: StoreDep,
) -> PlainTextResponse:
    """What the trial's model printed (stdout, stderr) and warned while it was built, trained and
    tested, as its worker captured it (at most 64 KiB a trial; empty when it printed nothing)."""
    with store.read() as session:
        return PlainTextResponse(queries.trial_log(session, job_id, number))


@router.get(
    "/jobs/{job_id}/trials/{number}/weights",
    dependencies=[ReadAccess],
    response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "torch.save of the trained network"}}
    | responses(404, 422),
)
def get_weights(
    job_id: JobId,
    number: Annotated[int, Path(ge=0, description="the trial's number in its job: 0, 1, ...")],
    store: StoreDep,
    settings: SettingsDep,
) -> FileResponse:
    """The trial's trained weights, as ``torch.save`` of ``{"state_dict", "in_shape", "out_shape",
    "prm", "nn"}``: ``Net(in_shape, out_shape, prm, device).load_state_dict(state_dict)`` in its
    ``nn_code`` rebuilds the trained network. A duplicate's are its original's."""
    artifacts = ArtifactStore(settings.artifacts_dir)
    with store.read() as session:
        trial = queries.get_trial_by_number(session, job_id, number)
        trained = _trained(session, trial)
        keep = queries.get_job(session, job_id).spec.get("keep_weights")
        name = trial.architecture.nn_name if trial.architecture else f"job{job_id}-trial{number}"
    path = artifacts.weights(trained.job_id, trained.number)
    if not path.is_file():
        kept = sorted(artifacts.kept(job_id))
        policy = "none (keep_weights 0)" if keep == 0 else f"the best {keep}" if keep else "the best 3 (or the Pareto set)"
        raise NotFoundError(
            f"job {job_id} trial {number} ({trial.state}) has no weights kept: the job keeps {policy}; "
            f"trials with weights: {', '.join(map(str, kept)) or 'none'}"
        )
    return FileResponse(path, media_type="application/octet-stream", filename=f"{name}.pt")


@router.get("/trials/{trial_id}", dependencies=[ReadAccess], responses=responses(404, 422))
def get_trial(
    trial_id: Annotated[int, Path(description="the trial's global id (its `id`), not its number in the job")],
    store: StoreDep,
    settings: SettingsDep,
) -> TrialPublic:
    """One trial by its global id, with its ``nn_code`` and its ``drawing``."""
    with store.read() as session:
        return _with_code(session, queries.get_trial(session, trial_id), ArtifactStore(settings.artifacts_dir))


def _with_code(session: Session, trial: Trial, artifacts: ArtifactStore | None = None) -> TrialPublic:
    """The trial's view with its code and drawing; whether its weights are kept when ``artifacts``
    is given (else false)."""
    job = queries.get_job(session, trial.job_id)
    public = trial_public(trial, job.metric, with_code=True)
    public.drawing = drawing(job, trial)
    if artifacts is not None:
        trained = _trained(session, trial)
        public.weights = artifacts.weights(trained.job_id, trained.number).is_file()
    return public


def _trained(session: Session, trial: Trial) -> Trial:
    """The trial whose training stands for ``trial``: its original when it is a duplicate or a
    cache hit (whose weights are the original's), else itself."""
    return queries.get_trial(session, trial.duplicate_of_trial_id) if trial.duplicate_of_trial_id else trial

