"""Build an architecture without training it: parameters, FLOPs, shapes, source (torch)."""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path
from typing import Any

import torch

from search_spaces import get_search_space
from search_spaces.datasets import get_dataset, seeded_split
from search_spaces.transforms import transform_module

from .nn_module import load_nn_module
from .runner import measure
from .tasks import prepare

__all__ = ["describe_architecture"]

#: default input when a space is inspected without a dataset (a CIFAR-sized image for cell spaces)
_DEFAULT_IN_SHAPE = {"nb201": (3, 32, 32)}


def describe_architecture(
    kind: str,
    encoding: str,
    params: dict[str, Any] | None = None,
    *,
    dataset: str | None = None,
    classes: int | None = None,
    in_shape: tuple[int, ...] | None = None,
    data_dir: Path | None = None,
) -> dict[str, Any]:
    """What ``cellar arch`` prints. With ``dataset`` the network is built for its shapes and run on
    one of its samples; otherwise for ``in_shape`` (a space default for cell spaces) and ``classes``."""
    info = get_dataset(dataset).describe(data_dir) if dataset else None
    space = get_search_space(kind, params, task=info.task if info else None)
    canonical = space.canonical(encoding)
    prm = {"lr": 0.01, "momentum": 0.9, "batch": 1, "epoch": 1, **space.hyperparameters(canonical)}
    if info is not None:
        source = get_dataset(info.name)
        data = source.load(data_dir)
        transform = importlib.import_module(transform_module(info.transform))
        prepared = prepare(info, data, seeded_split(len(data), 0), prm, 0, transform)
        sample_shape, out_shape, sample = info.in_shape, tuple(info.out_shape), prepared.one
        if classes is not None:
            raise ValueError("give --dataset or --classes, not both: the dataset fixes the classes")
    else:
        sample_shape = in_shape or _DEFAULT_IN_SHAPE.get(kind)
        if sample_shape is None:
            raise ValueError(f"search space {kind!r} needs --dataset or --in-shape to be built")
        out_shape = (classes or 10,)
        sample = torch.zeros((1, *sample_shape))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = load_nn_module(space.nn_code(canonical), space.nn_name(canonical))
    net = module.Net((1, *sample_shape), out_shape, prm, torch.device("cpu"))
    flops, latency_ms = measure(net, sample, sample, torch.device("cpu"))
    with torch.no_grad():
        output = net.eval()(sample)
    return {
        "search_space": kind,
        "encoding": canonical,
        "space_params": space.params_dict(),
        "dataset": dataset,
        "params": sum(p.numel() for p in net.parameters()),
        "flops": flops,
        "latency_ms": latency_ms,
        "in_shape": [1, *sample_shape],
        "out_shape": list(out_shape),
        "output_shape": list(output.shape),
        "nn": space.nn_name(canonical),
        "nn_code": space.nn_code(canonical),
    }
