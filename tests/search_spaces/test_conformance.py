"""Every registered search space, against every dataset it can serve."""

from __future__ import annotations

import json

import optuna
import pydantic
import pytest
import torch

from search_spaces import get_search_space, search_space_class, search_space_kinds
from search_spaces.datasets import dataset_names, get_dataset
from workers.nn_module import load_nn_module

PAIRS = [
    (kind, name)
    for kind in search_space_kinds()
    for name in dataset_names()
    if get_dataset(name).info.task in search_space_class(kind).tasks
]
SMALL = {"nb201": {"channels": 4, "cells_per_stage": 1}}


def test_every_space_serves_at_least_one_dataset() -> None:
    assert {kind for kind, _ in PAIRS} == set(search_space_kinds())


@pytest.mark.parametrize("kind", search_space_kinds())
def test_schema_is_json_and_unknown_parameters_are_refused(kind: str) -> None:
    cls = search_space_class(kind)
    json.dumps(cls.schema())
    with pytest.raises(pydantic.ValidationError, match="no_such_parameter"):
        cls.validate_params({"no_such_parameter": 1})


@pytest.mark.parametrize(("kind", "dataset"), PAIRS)
def test_sampled_architectures_build_and_run_on_the_dataset(kind: str, dataset: str) -> None:
    space = get_search_space(kind, SMALL.get(kind))
    info = get_dataset(dataset).info
    data = get_dataset(dataset).load(None)
    batch = torch.from_numpy(data.x[:8])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(4):
        trial = study.ask()
        encoding = space.sample(trial)
        assert space.canonical(encoding) == encoding
        assert space.canonical(space.canonical(encoding)) == encoding
        assert space.encode_params(encoding) == trial.params and space.decode_params(trial.params) == encoding
        assert space.dedup_key(encoding) == space.dedup_key(encoding)
        code = space.nn_code(encoding)
        assert space.nn_name(encoding) == space.nn_name(encoding)
        net = load_nn_module(code, space.nn_name(encoding)).Net(
            (1, *info.in_shape), (info.num_classes,), {"lr": 0.01}, torch.device("cpu")
        )
        with torch.no_grad():
            assert net.eval()(batch).shape == (8, info.num_classes)
        study.tell(trial, 0.0)
