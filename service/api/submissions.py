"""``/v1/submissions``: submitted model code trained asynchronously, on Ray workers.

``POST /v1/submissions`` stores up to 1,000 models at once and answers ``202`` with their ids at
once; each trains in its own sandbox on a Ray worker (``gpus`` by request), and its result is kept
with the submission (``GET /v1/submissions/{id}``) and, with ``save_to_db``, in the store like any
run. ``GET /v1/submissions/events?ids=...`` streams each one's changes until all are done.
``POST /v1/models`` (LEMUR's ``check_nn``) is the same queue, answered when the model is done.
Submissions survive a restart of the server: queued and running ones train again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from ..errors import InvalidRequestError, NotFoundError
from ..lemur.dispatch import SubmissionQueue
from ..lemur.schemas import ModelResult, ModelSubmission
from ..store import QueuedModel, Store, SubmissionStatus
from ..store.queue import list_submissions
from .deps import BOOTSTRAP, ReadAccess, SettingsDep, StoreDep, WriteAccess, check_dataset_files
from .schemas import MAX_INT
from .errors import responses
from .events import _sse
from .ratelimit import check_models_per_hour

__all__ = ["SubmissionView", "router", "submission_view"]

router = APIRouter(prefix="/v1", tags=["models"], responses=responses(422, 503))

_SHUTDOWN = _sse("shutdown", {"detail": "the server is shutting down; the submissions go on: follow them again once a server is back"})


class SubmissionBatch(BaseModel):
    """``POST /v1/submissions``: models to train, each as ``POST /v1/models`` takes it."""

    model_config = ConfigDict(extra="forbid")

    models: list[ModelSubmission] = Field(min_length=1, max_length=1000)


class SubmissionView(BaseModel):
    id: int = Field(description="the submission's id")
    status: Literal["queued", "running", "done"]
    name: str = Field(description="<prefix>-<nn_id>, as the result names it")
    gpus: float
    attempts: int = Field(description="how many times a server began training it (a server that stopped counts)")
    worker: str | None = Field(description="host:pid of the process that followed its sandbox")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    result: ModelResult | None = Field(description="once done: what POST /v1/models answers")


class SubmissionList(BaseModel):
    data: list[SubmissionView]
    count: int = Field(description="how many submissions match (data holds one page of them)")


def submission_view(row: QueuedModel) -> SubmissionView:
    return SubmissionView(
        id=row.submission_id, status=row.status, name=row.name, gpus=row.gpus, attempts=row.attempts,
        worker=row.worker, created_at=row.created_at, started_at=row.started_at, finished_at=row.finished_at,
        result=ModelResult.model_validate(row.result) if row.result is not None else None,
    )  # fmt: skip


def _queue(request: Request) -> SubmissionQueue:
    return request.app.state.queue


def _check_gpus(queue: SubmissionQueue, submissions: list[ModelSubmission], batch: bool) -> None:
    wanted = max((s.gpus for s in submissions), default=0.0)
    if wanted <= 0:
        return
    first = next(i for i, s in enumerate(submissions) if s.gpus == wanted)
    field = ("body", "models", first, "gpus") if batch else ("body", "gpus")
    have = queue.gpu_capacity()
    if have is None:
        raise InvalidRequestError(
            f"gpus={wanted:g} needs Ray: this server trains submitted models on its own threads, on the CPU "
            "(model_executor is 'local', or no job manager runs on Ray); submit with gpus=0",
            field=field,
        )
    if have < wanted:
        raise InvalidRequestError(
            f"gpus={wanted:g} is more than the Ray cluster's {have:g} GPU(s); ask for at most {have:g}, or 0 for a CPU",
            field=field,
        )


def enqueue(request: Request, submissions: list[ModelSubmission], settings: Any, *, batch: bool) -> list[QueuedModel]:
    """Check the submissions against this server, then store them in the queue (a threadpool call),
    owned by the caller's key. ``batch``: they came as ``POST /v1/submissions``'s ``models`` (errors
    name ``body.models.<i>``)."""
    for submission in submissions:
        check_dataset_files(submission.dataset, settings)
    queue = _queue(request)
    _check_gpus(queue, submissions, batch)
    caller = getattr(request.state, "caller", BOOTSTRAP)  # set by WriteAccess
    store: Store = request.app.state.store
    with store.read() as session:
        check_models_per_hour(session, caller, len(submissions), settings)
    return queue.submit(submissions, owner_key_id=caller.key_id)


@router.post("/submissions", status_code=202, dependencies=[WriteAccess], responses=responses(401, 403, 422, 429))
def submit_models(batch: SubmissionBatch, request: Request, settings: SettingsDep) -> SubmissionList:
    """Queue model code to train (each as ``POST /v1/models`` takes it) and answer at once with the
    submissions' ids. One whose code, ``prm``, dataset and seed trained before is done already.
    Each model counts against the key's ``CELLAR_KEY_MAX_MODELS_PER_HOUR`` (past it: a 429)."""
    rows = enqueue(request, batch.models, settings, batch=True)
    return SubmissionList(data=[submission_view(r) for r in rows], count=len(rows))


def _ids(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InvalidRequestError(f"ids must be submission ids separated by commas, e.g. 1,2,3; got {text!r}",
                                  field=("query", "ids")) from None  # fmt: skip
    if not 1 <= len(ids) <= 1000:
        raise InvalidRequestError("ids must name from 1 to 1000 submissions", field=("query", "ids"))
    if not all(1 <= i <= MAX_INT for i in ids):
        raise InvalidRequestError(f"ids must be submission ids from 1 to {MAX_INT}; got {text!r}", field=("query", "ids"))
    return ids


def _listed(store: Store, ids: list[int] | None, status: str | None, limit: int, offset: int) -> SubmissionList:
    with store.read() as session:
        rows, count = list_submissions(session, ids=ids, status=status, limit=limit, offset=offset)
        return SubmissionList(data=[submission_view(r) for r in rows], count=count)


@router.get("/submissions", dependencies=[ReadAccess])
def submissions_page(
    store: StoreDep,
    ids: Annotated[str | None, Query(description="only these submissions: ids separated by commas")] = None,
    status: Annotated[Literal["queued", "running", "done"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
) -> SubmissionList:
    """Submissions in the order they came, with their results once done."""
    return _listed(store, _ids(ids), status, limit, offset)


@router.get(
    "/submissions/events",
    dependencies=[ReadAccess],
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "`submission` events; a last `shutdown` event when the server stops first",
        }
    }
    | responses(404, 422),
    response_class=StreamingResponse,
)
async def submission_events(
    store: StoreDep,
    settings: SettingsDep,
    request: Request,
    ids: Annotated[str, Query(description="the submissions to follow: ids separated by commas")],
) -> StreamingResponse:
    """Server-sent events: a ``submission`` event (the submission as ``GET /v1/submissions/{id}``
    shows it) for each one now, then whenever one changes, until all are done."""
    wanted = _ids(ids) or []
    first = await run_in_threadpool(_listed, store, wanted, None, 1000, 0)
    missing = sorted(set(wanted) - {view.id for view in first.data})
    if missing:
        raise NotFoundError(f"no submission has id {', '.join(map(str, missing))}; POST /v1/submissions returns ids")
    shutdown = request.app.state.shutdown

    async def stream() -> AsyncIterator[str]:
        told: dict[int, str] = {}
        page = first
        while True:
            for view in page.data:
                text = view.model_dump_json()
                if told.get(view.id) != text:
                    told[view.id] = text
                    yield _sse("submission", text)
            if all(view.status == SubmissionStatus.DONE for view in page.data) or await request.is_disconnected():
                return
            if await shutdown.wait(settings.events_poll_s):
                yield _SHUTDOWN
                return
            page = await run_in_threadpool(_listed, store, wanted, None, 1000, 0)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


@router.get("/submissions/{submission_id}", dependencies=[ReadAccess], responses=responses(404, 422))
def get_submission(submission_id: Annotated[int, Path(ge=1, le=MAX_INT)], request: Request) -> SubmissionView:
    """One submission: where it stands and, once done, its result."""
    row = _queue(request).get(submission_id)
    if row is None:
        raise NotFoundError(f"no submission has id {submission_id}; POST /v1/submissions returns ids")
    return submission_view(row)
