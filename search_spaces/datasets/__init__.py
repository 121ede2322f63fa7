"""Datasets: static facts for the API (no torch, no loading) and loaders for the workers."""

from __future__ import annotations

from .._registry import LazyRegistry
from ._base import DEFAULT_SPLIT, TASKS, ArrayData, Dataset, DatasetInfo, GraphData, GraphSetData, Split, seeded_split, split_sizes
from ._training import TRAINING_PROTOCOLS, TrainingProtocol, default_training

__all__ = [
    "DEFAULT_SPLIT",
    "TASKS",
    "TRAINING_PROTOCOLS",
    "ArrayData",
    "GraphData",
    "GraphSetData",
    "Dataset",
    "DatasetInfo",
    "Split",
    "TrainingProtocol",
    "dataset_names",
    "default_training",
    "get_dataset",
    "seeded_split",
    "split_sizes",
]

_BUILTIN = "search_spaces.datasets.builtin"
_FILES = "search_spaces.datasets.files"
_DATASETS: LazyRegistry[type[Dataset]] = LazyRegistry(
    "dataset",
    {
        "digits": f"{_BUILTIN}:Digits",
        "digits32": f"{_BUILTIN}:Digits32",
        "iris": f"{_BUILTIN}:Iris",
        "wine": f"{_BUILTIN}:Wine",
        "breast_cancer": f"{_BUILTIN}:BreastCancer",
        "kan-exp-sin": f"{_BUILTIN}:KanExpSin",
        "kan-xy": f"{_BUILTIN}:KanXy",
        "kan-exp-4d": f"{_BUILTIN}:KanExp4d",
        "kan-bessel": f"{_BUILTIN}:KanBessel",
        "karate": f"{_BUILTIN}:Karate",
        "sbm": f"{_BUILTIN}:StochasticBlockModel",
        "cifar-10": f"{_FILES}:Cifar10",
        "cifar-100": f"{_FILES}:Cifar100",
        "imagenet16-120": f"{_FILES}:ImageNet16",
        "mnist": f"{_FILES}:Mnist",
        "cora": f"{_FILES}:Cora",
        "citeseer": f"{_FILES}:CiteSeer",
        "pubmed": f"{_FILES}:PubMed",
        "ogbn-arxiv": f"{_FILES}:OgbnArxiv",
        "mutag": f"{_FILES}:Mutag",
        "proteins": f"{_FILES}:Proteins",
        "enzymes": f"{_FILES}:Enzymes",
        "imdb-binary": f"{_FILES}:ImdbBinary",
        "nci1": f"{_FILES}:Nci1",
    },
)


def dataset_names() -> list[str]:
    return _DATASETS.names()


def get_dataset(name: str) -> Dataset:
    """The dataset registered as ``name``; an unknown name lists the known ones."""
    return _DATASETS.load(name)()
