"""``/healthz``, ``/v1/search-spaces``, ``/v1/datasets``, ``/v1/strategies``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

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
def healthz(store: StoreDep, manager: Annotated[JobManager | None, Depends(get_manager)]) -> JSONResponse:
    """Liveness, with the store's and the executor's state. 503 when the store is unreachable."""
    try:
        revision = current_revision(store)
        store_status = {"status": "ok", "url": store.display_url, "revision": revision, "head": head_revision()}
    except StoreError as error:
        store_status = {"status": "error", "url": store.display_url, "error": str(error)}
    executor = manager.status() if manager is not None else {"status": "disabled"}
    ok = store_status["status"] == "ok" and executor.get("status") in ("ok", "starting", "disabled")
    body = HealthPublic(status="ok" if ok else "degraded", version=__version__, store=store_status, executor=executor)
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if store_status["status"] == "ok" else 503)


@router.get("/v1/search-spaces", dependencies=[ReadAccess])
def search_spaces() -> list[SearchSpacePublic]:
    """Every registered search space with its parameter schema."""
    return [SearchSpacePublic(**search_space_class(kind).schema()) for kind in search_space_kinds()]


@router.get("/v1/datasets", dependencies=[ReadAccess])
def datasets(settings: Annotated[Settings, Depends(get_settings_dep)]) -> list[DatasetPublic]:
    """Every dataset with its shapes and task, and whether this server has its files."""
    result = []
    for name in dataset_names():
        dataset = get_dataset(name)
        try:
            info = dataset.describe(settings.data_dir)  # file datasets: shapes from their files
            available, reason = True, None
        except DatasetUnavailableError as error:
            info, available, reason = dataset.info, False, str(error)
        except (OSError, ValueError) as error:  # present but unreadable: say so, keep listing
            info, available, reason = dataset.info, False, f"files present but unreadable: {error}"
        training = default_training(info.task)
        result.append(DatasetPublic(**info.public(), training=training, available=available, reason=reason))
    return result


@router.get("/v1/strategies", dependencies=[ReadAccess])
def list_strategies() -> StrategiesPublic:
    """Samplers and pruners by name, with the JSON schema of their parameters."""
    samplers = strategies.sampler_schemas()
    pruners = strategies.pruner_schemas()
    return StrategiesPublic(
        samplers=[
            StrategyPublic(name=name, params=schema, multi_objective=name in strategies.MULTI_OBJECTIVE_SAMPLERS)
            for name, schema in samplers.items()
        ],
        pruners=[StrategyPublic(name=name, params=schema, multi_objective=True) for name, schema in pruners.items()],
    )
