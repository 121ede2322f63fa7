"""Datasets: static facts for the API (no torch, no loading) and loaders for the workers."""

from __future__ import annotations

from .._registry import LazyRegistry
from ._base import ArrayData, Dataset, DatasetInfo, Split, seeded_split, split_sizes

__all__ = [
    "ArrayData",
    "Dataset",
    "DatasetInfo",
    "Split",
    "dataset_names",
    "get_dataset",
    "seeded_split",
    "split_sizes",
]

_DATASETS: LazyRegistry[type[Dataset]] = LazyRegistry(
    "dataset",
    {"digits": "search_spaces.datasets.builtin:Digits"},
)


def dataset_names() -> list[str]:
    return _DATASETS.names()


def get_dataset(name: str) -> Dataset:
    """The dataset registered as ``name``; an unknown name lists the known ones."""
    return _DATASETS.load(name)()
