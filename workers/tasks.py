"""How each kind of dataset becomes training batches, evaluation passes and probe inputs (torch).

Every model is trained through LEMUR's ``learn(train_data)``, which iterates ``(inputs, labels)``:

- arrays (images, tables, regression): mini-batches of tensors, reshuffled every epoch, the input
  transform applied to each batch as it is drawn (training: with its random flip, seeded by the
  trial's seed; evaluation: its deterministic part only);
- one graph (node classification): the whole graph as a PyG ``Data`` once per epoch, with the labels
  of nodes outside the training split set to -100, which cross-entropy ignores;
- many graphs (graph classification): mini-batches of graphs as a PyG ``Batch``, labels per graph.
"""

from __future__ import annotations

import types
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from search_spaces.datasets import ArrayData, DatasetInfo, GraphData, GraphSetData, Split
from search_spaces.errors import IncompatibleDatasetError
from search_spaces.transforms import check_transform, load_transform

__all__ = ["Evaluation", "Prepared", "prepare"]

_EVAL_BATCH = 512
#: at most this many bytes of transformed inputs per evaluation batch (512 images of 3x299x299 are 550 MB)
_EVAL_BYTES = 64 * 2**20
#: the flips' random stream, apart from the shuffling's (both come from the trial's seed)
_FLIP_STREAM = 1

#: (model, metric) -> (metric value, mean loss)
Evaluation = Callable[[nn.Module, Any], tuple[float, float]]


@dataclass
class Prepared:
    train: Any  # re-iterable: each pass is one epoch of (inputs, labels)
    val: Evaluation
    test: Evaluation
    #: one sample's input (FLOPs are counted on it) and a training-sized batch (latency is timed on it)
    one: Any
    batch: Any
    #: the labels of ``batch`` (training samples; a graph's nodes outside the training split are -100):
    #: what zero-cost proxies score on, without drawing from the training loader's random streams
    labels: Any = None


class _Epochs:
    """A re-iterable over ``(inputs, labels)``, built afresh for every epoch."""

    def __init__(self, make: Callable[[], Iterator[tuple[Any, torch.Tensor]]]) -> None:
        self._make = make

    def __iter__(self) -> Iterator[tuple[Any, torch.Tensor]]:
        return self._make()


def _loss(regression: bool) -> nn.Module:
    return nn.MSELoss() if regression else nn.CrossEntropyLoss()


def _device_of(model: nn.Module) -> torch.device:
    device = getattr(model, "device", None)
    if isinstance(device, torch.device):
        return device
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _pyg() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import torch_geometric.data
        import torch_geometric.loader

    return torch_geometric


def prepare(
    info: DatasetInfo, data: Any, split: Split, prm: dict[str, Any], seed: int, transform: types.ModuleType | None = None
) -> Prepared:
    """Batches and evaluations for ``data`` under ``split``.

    ``transform`` is a transform module from ``load_transform(name)``. None, or the unbound template
    module that ``transform_module`` names, means the trial's: ``prm["transform"]``, else the
    dataset's default. An image transform on a dataset without images raises ``IncompatibleDatasetError``.
    """
    if getattr(transform, "NAME", None) is None:
        transform = load_transform(str(prm.get("transform", info.transform)))
    if getattr(transform, "USER", False):  # a user's transform file: it takes images, one at a time
        if not (isinstance(data, ArrayData) and len(info.in_shape) == 3):
            raise IncompatibleDatasetError(
                f"the transform file {transform.NAME}.py takes images (a PIL image each); dataset {info.name!r} "
                f"({info.task}) has samples of shape {list(info.in_shape)}"
            )
    else:
        check_transform(transform.NAME, info)
    batch_size = int(prm.get("batch", 64))
    if isinstance(data, ArrayData):
        return _arrays(info, data, split, batch_size, seed, transform)
    if isinstance(data, GraphData):
        return _graph(info, data, split, transform)
    if isinstance(data, GraphSetData):
        return _graphs(data, split, batch_size, seed)
    raise TypeError(f"no training recipe for {type(data).__name__}")


def _norm(info: DatasetInfo, x: torch.Tensor, train: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The dataset's constants, or the training split's mean and std per channel/feature."""
    if info.norm is not None:
        return info.norm
    dims = [0, *range(2, x.dim())]
    part = x[torch.from_numpy(train)]
    mean, std = part.mean(dim=dims), part.std(dim=dims)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    return tuple(mean.tolist()), tuple(std.tolist())


class _Transformed:
    """The training loader with the transform applied to each batch as it is drawn: a whole
    dataset resized at once (to 299x299, say) would take gigabytes."""

    def __init__(self, loader: DataLoader, apply: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self._loader = loader
        self._apply = apply

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for inputs, labels in self._loader:
            yield self._apply(inputs), labels

    def __len__(self) -> int:
        return len(self._loader)


def _arrays(
    info: DatasetInfo, data: ArrayData, split: Split, batch_size: int, seed: int, transform: types.ModuleType
) -> Prepared:
    regression = info.task == "regression"
    x = torch.from_numpy(data.x)
    norm = _norm(info, x, split.train)
    flips = torch.Generator().manual_seed(int(np.random.SeedSequence((seed, _FLIP_STREAM)).generate_state(1)[0]))
    train_transform = transform.train_transform(norm, generator=flips)
    eval_transform = transform.transform(norm)
    y = torch.from_numpy(data.y)
    train = torch.from_numpy(split.train)
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(TensorDataset(x[train], y[train]), batch_size=batch_size, shuffle=True, generator=generator)
    one = eval_transform(x[train[:1]])
    eval_batch = max(1, min(_EVAL_BATCH, _EVAL_BYTES // max(1, one.element_size() * one.numel())))

    def evaluation(indices: np.ndarray) -> Evaluation:
        xs, ys = x[torch.from_numpy(indices)], y[torch.from_numpy(indices)]
        criterion = _loss(regression)

        @torch.no_grad()
        def run(model: nn.Module, metric: Any) -> tuple[float, float]:
            device = _device_of(model)
            metric.reset()
            total = 0.0
            for start in range(0, len(ys), eval_batch):
                inputs = eval_transform(xs[start : start + eval_batch].to(device))
                labels = ys[start : start + eval_batch].to(device)
                outputs = model(inputs)
                target = labels.view_as(outputs) if regression else labels
                total += float(criterion(outputs, target).item()) * len(labels)
                metric(outputs, labels)
            return float(metric.result()), total / max(len(ys), 1)

        return run

    return Prepared(
        train=_Transformed(loader, train_transform),
        val=evaluation(split.val),
        test=evaluation(split.test),
        one=one,
        batch=eval_transform(x[train[:batch_size]]),
        labels=y[train[:batch_size]],
    )


def _graph(info: DatasetInfo, data: GraphData, split: Split, transform: types.ModuleType) -> Prepared:
    pyg = _pyg()
    x = torch.from_numpy(data.x)
    x = transform.transform(_norm(info, x, split.train))(x)
    y = torch.from_numpy(data.y)
    graph = pyg.data.Data(x=x, edge_index=torch.from_numpy(data.edge_index))
    masked = torch.full_like(y, -100)
    masked[torch.from_numpy(split.train)] = y[torch.from_numpy(split.train)]

    def evaluation(indices: np.ndarray) -> Evaluation:
        mask = torch.from_numpy(indices)
        criterion = nn.CrossEntropyLoss()

        @torch.no_grad()
        def run(model: nn.Module, metric: Any) -> tuple[float, float]:
            device = _device_of(model)
            metric.reset()
            outputs = model(graph.to(device))[mask.to(device)]
            labels = y[mask].to(device)
            metric(outputs, labels)
            return float(metric.result()), float(criterion(outputs, labels).item())

        return run

    return Prepared(
        train=_Epochs(lambda: iter([(graph, masked)])),
        val=evaluation(split.val),
        test=evaluation(split.test),
        one=graph,
        batch=graph,
        labels=masked,
    )


def _graphs(data: GraphSetData, split: Split, batch_size: int, seed: int) -> Prepared:
    pyg = _pyg()
    graphs = [
        pyg.data.Data(x=torch.from_numpy(x), edge_index=torch.from_numpy(e), y=torch.tensor([int(label)]))
        for (x, e), label in zip(data.graphs, data.y)
    ]

    def subset(indices: np.ndarray) -> list[Any]:
        return [graphs[i] for i in indices]

    generator = torch.Generator().manual_seed(seed)
    loader = pyg.loader.DataLoader(subset(split.train), batch_size=batch_size, shuffle=True, generator=generator)

    def evaluation(indices: np.ndarray) -> Evaluation:
        part = pyg.loader.DataLoader(subset(indices), batch_size=_EVAL_BATCH, shuffle=False)
        criterion = nn.CrossEntropyLoss()

        @torch.no_grad()
        def run(model: nn.Module, metric: Any) -> tuple[float, float]:
            device = _device_of(model)
            metric.reset()
            total, count = 0.0, 0
            for batch in part:
                batch = batch.to(device)
                outputs = model(batch)
                total += float(criterion(outputs, batch.y).item()) * len(batch.y)
                count += len(batch.y)
                metric(outputs, batch.y)
            return float(metric.result()), total / max(count, 1)

        return run

    first = pyg.data.Batch.from_data_list(subset(split.train[:1]))
    batch = pyg.data.Batch.from_data_list(subset(split.train[:batch_size]))
    return Prepared(
        train=_Epochs(lambda: ((b, b.y) for b in loader)),
        val=evaluation(split.val),
        test=evaluation(split.test),
        one=first,
        batch=batch,
        labels=batch.y,
    )
