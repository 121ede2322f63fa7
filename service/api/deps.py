"""Dependencies shared by the routers: the store, the manager, the settings, the API key check."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from search_spaces import DatasetUnavailableError
from search_spaces.datasets import get_dataset

from ..errors import InvalidRequestError
from ..jobs.manager import JobManager
from ..settings import Settings
from ..store import Store

__all__ = [
    "ManagerDep",
    "ReadAccess",
    "SettingsDep",
    "StoreDep",
    "WriteAccess",
    "check_dataset_files",
    "get_manager",
    "get_settings_dep",
    "get_store",
]

_bearer = HTTPBearer(auto_error=False, description="the key in CELLAR_API_KEY")


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_manager(request: Request) -> JobManager | None:
    return request.app.state.manager


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def _check_key(request: Request, credentials: HTTPAuthorizationCredentials | None) -> None:
    expected: str = request.app.state.api_key
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing API key: send 'Authorization: Bearer <key>' with the server's CELLAR_API_KEY",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="wrong API key: use the server's CELLAR_API_KEY (or the key in its .cellar-api-key file)",
            headers={"WWW-Authenticate": "Bearer"},
        )


def require_write(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    _check_key(request, credentials)


async def require_read(request: Request) -> None:
    """The key, when ``reads_require_key`` is set. The header is read here rather than declared,
    so that open reads are not documented as needing a key (``create_app`` documents keyed ones)."""
    if request.app.state.settings.reads_require_key:
        _check_key(request, await _bearer(request))


def check_dataset_files(name: str, settings: Settings) -> None:
    """A 422 on ``body.dataset`` when a dataset that comes in files has none on this server."""
    try:
        get_dataset(name).check_available(settings.data_dir)
    except DatasetUnavailableError as error:
        raise InvalidRequestError(str(error), field=("body", "dataset")) from None


StoreDep = Annotated[Store, Depends(get_store)]
ManagerDep = Annotated[JobManager | None, Depends(get_manager)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
WriteAccess = Depends(require_write)
ReadAccess = Depends(require_read)
