"""``/v1/models``: LEMUR's ``check_nn`` over HTTP: train submitted model code in a sandbox."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ..errors import NotFoundError
from ..schemas import ModelResult, ModelSubmission
from ..submissions import ModelChecker
from .deps import ReadAccess, WriteAccess

router = APIRouter(prefix="/v1", tags=["models"])


def _checker(request: Request) -> ModelChecker:
    return request.app.state.models


@router.post("/models", dependencies=[WriteAccess])
def submit_model(submission: ModelSubmission, request: Request) -> ModelResult:
    """Check and train ``nn_code`` in a sandboxed worker process and answer when it is done.

    A model that fails (does not parse, breaks the contract, does not fit the data, diverges,
    runs out of memory or time, raises) is still a 200 answer: ``status`` is ``failed`` and
    ``failure`` says which stage failed and why. The same code with the same ``prm`` (dataset,
    seed) that trained before is answered from the store (``cached``) without training.
    """
    return _checker(request).check(submission)


@router.get("/models/{run_id}", dependencies=[ReadAccess])
def get_model(run_id: int, request: Request) -> ModelResult:
    """A stored submission's result, by its ``run_id``."""
    result = _checker(request).get(run_id)
    if result is None:
        raise NotFoundError(f"no submitted model has run_id {run_id}; POST /v1/models returns it")
    return result
