"""Search spaces and datasets: what Cellar can search, torch-free at import.

``get_search_space(kind, params)`` returns a ``SearchSpace`` bound to its parameters; registered
spaces are imported on first use, so listing them imports nothing heavy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._base import SearchSpace, SpaceParams, nn_id
from ._registry import LazyRegistry
from .errors import (
    DatasetFileError,
    DatasetUnavailableError,
    IncompatibleDatasetError,
    InvalidArchitectureError,
    SearchSpaceError,
    UnknownChoiceError,
)

__all__ = [
    "DatasetFileError",
    "DatasetUnavailableError",
    "IncompatibleDatasetError",
    "InvalidArchitectureError",
    "SearchSpace",
    "SearchSpaceError",
    "SpaceParams",
    "UnknownChoiceError",
    "get_search_space",
    "nn_id",
    "search_space_class",
    "search_space_kinds",
]

_SPACES: LazyRegistry[type[SearchSpace]] = LazyRegistry(
    "search space",
    {
        "nb201": "search_spaces.nb201.space:CellSearchSpace",
        "code": "search_spaces.code.space:CodeSearchSpace",
        "gnn": "search_spaces.gnn.space:GnnSearchSpace",
        "kan": "search_spaces.kan.space:KanSearchSpace",
        "nbgraph": "search_spaces.nbgraph.space:NbGraphSearchSpace",
    },
)


def search_space_kinds() -> list[str]:
    return _SPACES.names()


def search_space_class(kind: str) -> type[SearchSpace]:
    return _SPACES.load(kind)


def get_search_space(kind: str, params: Mapping[str, Any] | None = None, *, task: str | None = None) -> SearchSpace:
    """The space ``kind`` with its ``params``; with ``task``, choices the task makes moot are not sampled."""
    return search_space_class(kind)(params, task=task)
