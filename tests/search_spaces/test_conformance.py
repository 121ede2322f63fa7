"""Every registered search space, against every registered dataset it can serve (file datasets:
small files written here in their real formats)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import optuna
import pydantic
import pytest
import torch

from search_spaces import get_search_space, search_space_class, search_space_kinds
from search_spaces.datasets import dataset_names, get_dataset, seeded_split
from search_spaces.metrics import metric_module
from search_spaces.transforms import transform_module
from tests.search_spaces.formats import write_every_file_dataset
from tests.search_spaces.lemur_models import code_for
from workers.nn_module import load_nn_module
from workers.tasks import prepare

PAIRS = [
    (kind, name)
    for kind in search_space_kinds()
    for name in dataset_names()
    if get_dataset(name).info.task in search_space_class(kind).tasks
]


def small_params(kind: str, dataset_kind: str) -> dict[str, Any]:
    if kind == "nb201":
        return {"channels": 4, "cells_per_stage": 1}
    if kind == "gnn":
        return {"max_layers": 2, "hidden_sizes": [8]}
    if kind == "code":
        return {"nn_code": code_for(dataset_kind)}
    if kind == "kan":
        return {"max_layers": 2, "widths": [4], "max_conv_layers": 1, "conv_channels": [2]}
    if kind == "nbgraph":
        return {"dim": 8, "post_layers": 1}
    return {}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_every_file_dataset(root)
    return root


def test_every_space_serves_at_least_one_dataset_and_every_dataset_a_space() -> None:
    assert {kind for kind, _ in PAIRS} == set(search_space_kinds())
    assert {name for _, name in PAIRS} == set(dataset_names())


@pytest.mark.parametrize("kind", search_space_kinds())
def test_schema_is_json_and_unknown_parameters_are_refused(kind: str) -> None:
    cls = search_space_class(kind)
    json.dumps(cls.schema())
    with pytest.raises(pydantic.ValidationError, match="no_such_parameter"):
        cls.validate_params({**small_params(kind, "array"), "no_such_parameter": 1})


@pytest.mark.parametrize(("kind", "dataset"), PAIRS)
def test_sampled_architectures_build_and_run_on_the_dataset(kind: str, dataset: str, data_dir: Path) -> None:
    source = get_dataset(dataset)
    info = source.describe(data_dir)
    data = source.load(data_dir)
    split = seeded_split(len(data), 0)
    prm = {"lr": 0.01, "momentum": 0.9, "batch": 8, "epoch": 1}
    transform = __import__(transform_module(info.transform), fromlist=["transform"])
    prepared = prepare(info, data, split, prm, seed=0, transform=transform)
    space = get_search_space(kind, small_params(kind, info.kind), task=info.task)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(3):
        trial = study.ask()
        encoding = space.sample(trial)
        assert space.canonical(encoding) == encoding
        assert space.canonical(space.canonical(encoding)) == encoding
        assert space.encode_params(encoding) == trial.params and space.decode_params(trial.params) == encoding
        assert space.dedup_key(encoding) == space.dedup_key(encoding)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            module = load_nn_module(space.nn_code(encoding), space.nn_name(encoding))
        net = module.Net((1, *info.in_shape), info.out_shape, {**prm, **space.hyperparameters(encoding)},
                         torch.device("cpu"))
        net.eval()
        with torch.no_grad():
            outputs = net(prepared.batch)
        expected = len(prepared.batch.y) if info.kind == "graphs" else (info.num_samples if info.kind == "graph" else 8)
        assert outputs.shape == (expected, *info.out_shape)
        metric = __import__(metric_module(info.metric), fromlist=["create_metric"]).create_metric(info.out_shape)
        value, loss = prepared.val(net, metric)
        assert value == value and loss == loss  # finite numbers, not NaN
        study.tell(trial, 0.0)
