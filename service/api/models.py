"""``/v1/models``: LEMUR's ``check_nn`` over HTTP: train submitted model code in a sandbox."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.concurrency import run_in_threadpool

from ..errors import NotFoundError, ServiceStoppingError
from ..lemur.schemas import ModelResult, ModelResults, ModelSubmission
from ..lemur.submissions import ModelChecker
from ..store import SubmissionStatus
from .deps import ReadAccess, SettingsDep, WriteAccess
from .schemas import MAX_INT
from .errors import responses
from .submissions import enqueue

router = APIRouter(prefix="/v1", tags=["models"], responses=responses(422, 503))


def _checker(request: Request) -> ModelChecker:
    return request.app.state.models


@router.post("/models", dependencies=[WriteAccess], responses=responses(401, 403, 422, 429))
async def submit_model(submission: ModelSubmission, request: Request, settings: SettingsDep) -> ModelResult:
    """Check and train ``nn_code`` in a sandboxed worker process and answer when it is done.

    A model that fails (does not parse, breaks the contract, does not fit the data, diverges,
    runs out of memory or time, raises) is still a 200 answer: ``status`` is ``failed`` and
    ``failure`` says which stage failed and why. The same code with the same ``prm`` (dataset,
    seed) that trained before is answered from the store (``cached``) without training. It goes
    through the queue of ``POST /v1/submissions``: on Ray workers where the server runs Ray, and
    counts against the key's ``CELLAR_KEY_MAX_MODELS_PER_HOUR`` (past it: a 429).
    """
    (row,) = await run_in_threadpool(enqueue, request, [submission], settings, batch=False)
    queue, shutdown = request.app.state.queue, request.app.state.shutdown
    while row is not None and row.status != SubmissionStatus.DONE:
        if await shutdown.wait(0.25):
            raise ServiceStoppingError(
                f"the server is stopping; submission {row.submission_id} stays queued and trains once a server "
                f"is back: GET /v1/submissions/{row.submission_id} for its result"
            )
        row = await run_in_threadpool(queue.get, row.submission_id)
    if row is None:  # deleted meanwhile (its store was wiped)
        raise NotFoundError("the submission was deleted before it finished")
    return ModelResult.model_validate(row.result)


@router.get("/models", dependencies=[ReadAccess], responses=responses(422))
def list_models(
    request: Request,
    status: Annotated[Literal["ok", "failed"] | None, Query()] = None,
    failure: Annotated[
        Literal["syntax", "contract", "shape", "nan_loss", "oom", "timeout", "runtime", "accuracy"] | None,
        Query(description="only failures of this kind"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
) -> ModelResults:
    """Stored submissions (``check_nn`` with ``save_to_db``), newest first, with their results and
    failure kinds."""
    data, count = _checker(request).stored(status=status, failure=failure, limit=limit, offset=offset)
    return ModelResults(data=data, count=count)


@router.get("/models/{run_id}", dependencies=[ReadAccess], responses=responses(404, 422))
def get_model(run_id: Annotated[int, Path(ge=1, le=MAX_INT)], request: Request) -> ModelResult:
    """A stored submission's result, by its ``run_id``."""
    result = _checker(request).get(run_id)
    if result is None:
        raise NotFoundError(f"no submitted model has run_id {run_id}; POST /v1/models returns it")
    return result
