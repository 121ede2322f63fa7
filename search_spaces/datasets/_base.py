"""The dataset interface: static facts (torch-free, import-free) and a loader returning numpy arrays."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

__all__ = [
    "TASKS",
    "ArrayData",
    "Dataset",
    "DatasetInfo",
    "GraphData",
    "GraphSetData",
    "Split",
    "DEFAULT_SPLIT",
    "seeded_split",
    "split_sizes",
]


#: LEMUR-style task names and the kind of data each one comes in
TASKS: dict[str, str] = {
    "img-classification": "array",
    "tab-classification": "array",
    "regression": "array",
    "node-classification": "graph",
    "graph-classification": "graphs",
}


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is, known without loading it (file datasets: read from their files' headers).

    ``task`` and ``metric`` use LEMUR's names (``img-classification``, ``acc``), so rows in the
    store line up with LEMUR's. ``in_shape`` is one sample's shape, channels first (for graphs:
    one node's features); ``out_shape`` the model's output per sample: ``(classes,)`` or, for
    regression, ``(outputs,)``. ``norm`` is the (mean, std) per channel the ``norm`` transform
    uses; None means "standardise each feature with the training split's statistics".
    """

    name: str
    task: str
    metric: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    description: str
    num_samples: int | None = None
    source: str = "builtin"
    transform: str = "norm"
    norm: tuple[tuple[float, ...], tuple[float, ...]] | None = ((0.0,), (1.0,))

    @property
    def kind(self) -> str:
        """``array`` (samples x features/pixels), ``graph`` (one graph's nodes) or ``graphs``."""
        return TASKS[self.task]

    @property
    def num_classes(self) -> int | None:
        return None if self.task == "regression" else self.out_shape[0]

    @property
    def metric_direction(self) -> str:
        from ..metrics import METRICS

        return METRICS[self.metric][1]

    def public(self) -> dict[str, object]:
        return {
            "name": self.name,
            "task": self.task,
            "metric": self.metric,
            "metric_direction": self.metric_direction,
            "in_shape": list(self.in_shape),
            "out_shape": list(self.out_shape),
            "num_classes": self.num_classes,
            "num_samples": self.num_samples,
            "source": self.source,
            "transform": self.transform,
            "description": self.description,
        }


@dataclass(frozen=True)
class ArrayData:
    """Inputs as float32 ``[N, *in_shape]`` and labels ``[N]`` (int64) or targets ``[N, k]`` (float32)."""

    x: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(f"inputs and labels differ in length: {len(self.x)} != {len(self.y)}")

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class GraphData:
    """One graph whose nodes are the samples: features ``[N, F]``, edges ``[2, E]``, labels ``[N]``."""

    x: np.ndarray
    edge_index: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(f"{len(self.x)} nodes but {len(self.y)} labels")
        if self.edge_index.ndim != 2 or self.edge_index.shape[0] != 2:
            raise ValueError(f"edge_index must be [2, E], got {list(self.edge_index.shape)}")
        if self.edge_index.size and (self.edge_index.min() < 0 or self.edge_index.max() >= len(self.x)):
            raise ValueError("edge_index refers to nodes that do not exist")

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class GraphSetData:
    """Graphs that are the samples: per graph (features ``[n, F]``, edges ``[2, e]``), labels ``[G]``."""

    graphs: list[tuple[np.ndarray, np.ndarray]]
    y: np.ndarray

    def __post_init__(self) -> None:
        if len(self.graphs) != len(self.y):
            raise ValueError(f"{len(self.graphs)} graphs but {len(self.y)} labels")

    def __len__(self) -> int:
        return len(self.y)


class Dataset(ABC):
    """A dataset Cellar can train on. Subclasses set ``info`` and implement ``load``."""

    info: ClassVar[DatasetInfo]

    def check_available(self, data_dir: Path | None) -> None:  # noqa: B027 - built-ins always are
        """Raise ``DatasetUnavailableError`` naming where the files belong; built-ins always pass."""

    def describe(self, data_dir: Path | None) -> DatasetInfo:
        """The dataset's facts; file datasets read their shapes from the files."""
        return self.info

    @abstractmethod
    def load(self, data_dir: Path | None) -> ArrayData | GraphData | GraphSetData:
        """Read the whole dataset into memory."""


@dataclass(frozen=True)
class Split:
    """A seeded train/validation/test partition of ``num_samples`` indices."""

    seed: int
    fractions: tuple[float, float, float]
    train: np.ndarray = field(repr=False)
    val: np.ndarray = field(repr=False)
    test: np.ndarray = field(repr=False)

    @property
    def digest(self) -> str:
        """sha256 over the three index arrays: two splits are the same split iff digests agree."""
        h = hashlib.sha256()
        for part in (self.train, self.val, self.test):
            h.update(np.ascontiguousarray(part, dtype=np.int64).tobytes())
            h.update(b"|")
        return h.hexdigest()

    def record(self) -> dict[str, object]:
        """What the store keeps so that the split can be recomputed and checked."""
        return {
            "seed": self.seed,
            "fractions": list(self.fractions),
            "sizes": [len(self.train), len(self.val), len(self.test)],
            "sha256": self.digest,
        }


def split_sizes(num_samples: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """Sizes of the train, validation and test parts; each must hold at least one sample."""
    if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) <= 0:
        raise ValueError(f"split fractions must be positive and sum to 1, got {list(fractions)}")
    n_train = int(round(fractions[0] * num_samples))
    n_val = int(round(fractions[1] * num_samples))
    sizes = (n_train, n_val, num_samples - n_train - n_val)
    for part, size in zip(("train", "validation", "test"), sizes):
        if size < 1:
            raise ValueError(
                f"split fractions {list(fractions)} leave the {part} part of {num_samples} samples empty; "
                "each part needs at least one sample"
            )
    return sizes


#: train, validation and test fractions of a job's seeded split unless it sets its own
DEFAULT_SPLIT: tuple[float, float, float] = (0.6, 0.2, 0.2)


def seeded_split(
    num_samples: int, seed: int, fractions: tuple[float, float, float] = DEFAULT_SPLIT
) -> Split:
    """Shuffle ``range(num_samples)`` with ``seed`` and cut it by ``fractions`` (train, val, test)."""
    n_train, n_val, _ = split_sizes(num_samples, fractions)
    order = np.random.Generator(np.random.PCG64(seed)).permutation(num_samples)
    return Split(
        seed=seed,
        fractions=fractions,
        train=np.sort(order[:n_train]),
        val=np.sort(order[n_train : n_train + n_val]),
        test=np.sort(order[n_train + n_val :]),
    )
