"""The ``code`` space: a model file under LEMUR's contract, checked without running it, and its
hyperparameters sampled as LEMUR samples them."""

from __future__ import annotations

import hashlib
import json
import math
import re

import optuna
import pydantic
import pytest

from search_spaces import InvalidArchitectureError, get_search_space
from search_spaces.code import inspect_model_code
from tests.search_spaces.lemur_models import MLP_CODE


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("class Net:\n    def __init__(self, a, b\n", "does not parse: line 2"),
        ("def supported_hyperparameters():\n    return {'lr'}\n", "defines no class Net"),
        (MLP_CODE.replace("def learn(", "def fit("), "class Net lacks learn"),
        (MLP_CODE.replace("def __init__(self, in_shape, out_shape, prm, device)", "def __init__(self, in_shape, out_shape)"),
         "Net.__init__(self, in_shape, out_shape) must take (self, in_shape, out_shape, prm, device)"),
        (MLP_CODE.replace('return {"lr", "momentum", "dropout"}', "return NAMES"), "must return a literal collection"),
        (MLP_CODE.replace("def supported_hyperparameters", "def hyperparameters"), "defines no supported_hyperparameters()"),
    ],
)
def test_the_contract_is_checked_without_running_the_code(code: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        inspect_model_code(code)
    with pytest.raises(pydantic.ValidationError, match=re.escape(message)):
        get_search_space("code", {"nn_code": code})


def test_a_good_file_names_its_hyperparameters() -> None:
    found = inspect_model_code(MLP_CODE)
    assert found.hyperparameters == ("dropout", "lr", "momentum")
    assert {"__init__", "forward", "learn", "train_setup"} <= set(found.net_methods)


def test_hyperparameters_are_sampled_in_lemurs_ranges() -> None:
    space = get_search_space("code", {"nn_code": MLP_CODE, "min_batch_exponent": 3, "max_batch_exponent": 6})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    lrs = []
    for _ in range(200):
        trial = study.ask()
        encoding = space.sample(trial)
        values = json.loads(encoding)
        assert set(values) == {"lr", "momentum", "dropout", "batch"}
        assert 1e-5 <= values["lr"] <= 1 and 0 <= values["momentum"] <= 1 and 0 <= values["dropout"] <= 0.5
        assert values["batch"] in (8, 16, 32, 64)
        assert space.hyperparameters(encoding) == values == space.encode_params(encoding) == trial.params
        assert space.decode_params(trial.params) == encoding == space.canonical(encoding)
        lrs.append(values["lr"])
        study.tell(trial, 0.0)
    # log-uniform: about half of the draws below sqrt(1e-5 * 1)
    below = sum(lr < math.sqrt(1e-5) for lr in lrs) / len(lrs)
    assert 0.35 < below < 0.65


def test_names_follow_lemurs_rule_for_submitted_code() -> None:
    digest = hashlib.md5(re.sub(r"\s", "", MLP_CODE).encode()).hexdigest()
    assert get_search_space("code", {"nn_code": MLP_CODE}).nn_name("{}") == digest
    assert get_search_space("code", {"nn_code": MLP_CODE, "prefix": "mlp"}).nn_name("{}") == f"mlp-{digest}"


@pytest.mark.parametrize(
    ("encoding", "message"),
    [
        ("not json", "JSON object of hyperparameters"),
        ('{"lr": 0.1, "batch": 16}', "do not match the model's"),
        ('{"lr": 2.0, "momentum": 0.5, "dropout": 0.1, "batch": 16}', "lr must be a number in [1e-05, 1.0]"),
        ('{"lr": 0.1, "momentum": 0.5, "dropout": 0.1, "batch": 17}', "batch must be one of [16, 32, 64, 128, 256]"),
    ],
)
def test_bad_encodings_say_what_is_wrong(encoding: str, message: str) -> None:
    with pytest.raises(InvalidArchitectureError, match=re.escape(message)):
        get_search_space("code", {"nn_code": MLP_CODE}).canonical(encoding)
