"""Datasets: static facts for the API (no torch, no loading) and loaders for the workers."""

from __future__ import annotations

import importlib

from ..errors import UnknownChoiceError
from ._base import ArrayData, Dataset, DatasetInfo, Split, seeded_split

__all__ = [
    "ArrayData",
    "Dataset",
    "DatasetInfo",
    "Split",
    "dataset_names",
    "get_dataset",
    "seeded_split",
]

# name -> "module:Class"; imported on first use so that listing names costs nothing
_REGISTRY: dict[str, str] = {
    "digits": "search_spaces.datasets.builtin:Digits",
}


def dataset_names() -> list[str]:
    return sorted(_REGISTRY)


def get_dataset(name: str) -> Dataset:
    """The dataset registered as ``name``; an unknown name lists the known ones."""
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise UnknownChoiceError("dataset", name, dataset_names()) from None
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)()
