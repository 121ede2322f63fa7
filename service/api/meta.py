"""``/healthz``, ``/readyz``, ``/v1/search-spaces``, ``/v1/datasets``, ``/v1/strategies``."""

from __future__ import annotations

import asyncio
import functools
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter

from search_spaces import DatasetUnavailableError, search_space_class, search_space_kinds
from search_spaces.datasets import dataset_names, default_training, get_dataset

from .. import __version__
from ..jobs import strategies
from ..errors import StoreError
from ..jobs.manager import JobManager
from ..settings import Settings
from ..store import current_revision, head_revision
from .deps import ReadAccess, StoreDep, get_manager, get_settings_dep
from .errors import responses
from .schemas import DatasetPublic, HealthPublic, SearchSpacePublic, StrategiesPublic, StrategyPublic

router = APIRouter(tags=["meta"], responses=responses(422))


@router.get("/healthz", response_model=HealthPublic, responses={503: {"model": HealthPublic, "description": "the store cannot be reached"}})
async def healthz(request: Request, store: StoreDep, manager: Annotated[JobManager | None, Depends(get_manager)]) -> JSONResponse:
    """Liveness, with the store's and the executor's state. 503 when the store is unreachable.

    Cheap enough to poll, and answered from the event loop, so that a probe never waits for a
    thread behind slower reads: the store is asked for its version as the cached reads ask it
    (SQLite: a ``PRAGMA`` on its file; PostgreSQL: one query on the cache's own connection, shared
    by the probes that arrive together), the executor's status is the one kept for a second (only a
    stale one is asked for in a thread). The store's revision is the one checked when the server
    started (it refuses to start on any other than its head); ``/readyz`` asks it again."""
    try:
        await request.app.state.read_cache.version.read()  # an in-memory SQLite store: nothing to reach
        revision = request.app.state.revision
        store_status = {"status": "ok", "url": store.display_url, "revision": revision, "head": head_revision()}
    except StoreError as error:
        store_status = {"status": "error", "url": store.display_url, "error": str(error)}
    executor = manager.status(ask=False) if manager is not None else {"status": "disabled"}
    if executor is None:
        executor = await _executor_status(request.app, manager)  # type: ignore[arg-type]
    ok = store_status["status"] == "ok" and executor.get("status") in ("ok", "starting", "disabled")
    body = HealthPublic(status="ok" if ok else "degraded", version=__version__, store=store_status, executor=executor)
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if store_status["status"] == "ok" else 503)


async def _executor_status(app: Any, manager: JobManager) -> dict[str, Any]:
    """The executor's status when the one kept is stale: one thread asks it (not one per probe
    that arrives meanwhile); until it answers, probes get the stale status, and only the very first
    probe, with nothing kept, waits for it."""
    asking = getattr(app.state, "asking_executor", None)
    if asking is None or asking.done():
        asking = app.state.asking_executor = asyncio.ensure_future(run_in_threadpool(manager.status))
    kept = manager.status(ask=False, stale=True)
    return kept if kept is not None else await asyncio.shield(asking)


@router.get(
    "/readyz",
    response_model=HealthPublic,
    responses={503: {"model": HealthPublic, "description": "not ready: the store or the executor is not"}},
)
def readyz(request: Request, store: StoreDep, manager: Annotated[JobManager | None, Depends(get_manager)]) -> JSONResponse:
    """Readiness, for a load balancer or an orchestrator: 200 only when the store answers at the
    revision this server needs (asked again on each call: another process may have migrated it
    since the start) and the executor is ready (Ray started, or no job manager here). 503 with
    what is not, otherwise. ``/healthz`` stays the cheap liveness probe."""
    head = head_revision()
    try:
        revision = current_revision(store)
        store_status = {"status": "ok", "url": store.display_url, "revision": revision, "head": head}
        if revision != head:
            store_status.update(status="error", error=f"the store is at revision {revision}, this server needs {head}")
    except StoreError as error:
        store_status = {"status": "error", "url": store.display_url, "error": str(error)}
    executor = manager.status() if manager is not None else {"status": "disabled"}
    ready = store_status["status"] == "ok" and executor.get("status") in ("ok", "disabled")
    body = HealthPublic(status="ok" if ready else "not ready", version=__version__, store=store_status, executor=executor)
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if ready else 503)


def _json(model: Any, value: Any) -> bytes:
    """``value`` (validated as ``model``) as the JSON FastAPI would have rendered for it."""
    return bytes(JSONResponse(TypeAdapter(model).dump_python(value, mode="json")).body)


@functools.cache
def _search_spaces() -> bytes:
    value = [SearchSpacePublic(**search_space_class(kind).schema()) for kind in search_space_kinds()]
    return _json(list[SearchSpacePublic], value)


@router.get("/v1/search-spaces", dependencies=[ReadAccess], response_model=list[SearchSpacePublic])
async def search_spaces() -> Response:
    """Every registered search space with its parameter schema (made once: it changes with a release).
    ``async``, as the answers from memory are: they never wait for a thread behind slower reads."""
    return Response(_search_spaces(), media_type="application/json")


#: /v1/datasets as last made, and the availability of each dataset's files it was made for
_datasets_cache: dict[tuple[str | None, tuple[bool, ...]], bytes] = {}


@router.get("/v1/datasets", dependencies=[ReadAccess], response_model=list[DatasetPublic])
async def datasets(settings: Annotated[Settings, Depends(get_settings_dep)]) -> Response:
    """Every dataset with its shapes and task, and whether this server has its files.

    Made again (in a thread) only when a dataset's files appear or go; a few ``stat`` calls on the
    event loop tell. Reading the shapes of file datasets from their files is what takes the time."""
    names = dataset_names()
    present = tuple(_present(get_dataset(name), settings.data_dir) for name in names)
    key = (str(settings.data_dir) if settings.data_dir else None, present)
    answer = _datasets_cache.get(key)
    if answer is None:  # two requests may both make it: the same bytes
        answer = await run_in_threadpool(lambda: _json(list[DatasetPublic], [_dataset(name, settings) for name in names]))
        _datasets_cache.clear()
        _datasets_cache[key] = answer
    return Response(answer, media_type="application/json")


def _present(dataset: Any, data_dir: Any) -> bool:
    try:
        dataset.check_available(data_dir)
    except DatasetUnavailableError:
        return False
    return True


def _dataset(name: str, settings: Settings) -> DatasetPublic:
    dataset = get_dataset(name)
    try:
        info = dataset.describe(settings.data_dir)  # file datasets: shapes from their files
        available, reason = True, None
    except DatasetUnavailableError as error:
        info, available, reason = dataset.info, False, str(error)
    except (OSError, ValueError) as error:  # present but unreadable: say so, keep listing
        info, available, reason = dataset.info, False, f"files present but unreadable: {error}"
    training = default_training(info.task)
    return DatasetPublic(**info.public(), training=training, available=available, reason=reason)


@functools.cache
def _strategies() -> bytes:
    samplers = strategies.sampler_schemas()
    pruners = strategies.pruner_schemas()
    value = StrategiesPublic(
        samplers=[
            StrategyPublic(name=name, params=schema, multi_objective=name in strategies.MULTI_OBJECTIVE_SAMPLERS)
            for name, schema in samplers.items()
        ],
        pruners=[StrategyPublic(name=name, params=schema, multi_objective=True) for name, schema in pruners.items()],
    )
    return _json(StrategiesPublic, value)


@router.get("/v1/strategies", dependencies=[ReadAccess], response_model=StrategiesPublic)
async def list_strategies() -> Response:
    """Samplers and pruners by name, with the JSON schema of their parameters (made once)."""
    return Response(_strategies(), media_type="application/json")
