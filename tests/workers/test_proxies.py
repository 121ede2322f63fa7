"""Zero-cost proxies on real networks: what they score, that scoring leaves the model as it was, and
that a trial scored before its first step trains exactly as one that was not."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
from torch import nn
from torch_geometric.data import Data

from search_spaces import get_search_space
from search_spaces.datasets import get_dataset
from workers.nn_module import load_nn_module
from workers.proxies import zero_cost
from workers.protocol import PROXIES
from workers.runner import ConstraintViolation, run_trial
from tests.workers.test_runner import ALL_NONE, RESNET, payload


def nb201_net(cell: str, channels: int = 8) -> nn.Module:
    space = get_search_space("nb201", {"channels": channels, "cells_per_stage": 1})
    torch.manual_seed(0)
    module = load_nn_module(space.nn_code(cell), space.nn_name(cell))
    return module.Net((1, 3, 32, 32), (10,), {"lr": 0.1}, torch.device("cpu"))


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    data = get_dataset("digits32").load(None)
    return torch.from_numpy(data.x[:32]).float(), torch.from_numpy(data.y[:32])


def test_every_proxy_scores_a_conv_cell_and_leaves_the_model_untouched(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    net = nb201_net(RESNET)
    before = copy.deepcopy(net.state_dict())
    scores = zero_cost(net, *batch)
    assert list(scores) == list(PROXIES)
    assert all(v is not None and math.isfinite(v) for v in scores.values()), scores
    assert scores["synflow"] > 0 and scores["grad_norm"] > 0 and scores["snip"] > 0
    after = net.state_dict()  # weights and batch-norm statistics as they were; no gradient left behind
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in net.parameters())


def test_a_cell_with_no_path_to_the_output_scores_zero(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    scores = zero_cost(nb201_net(ALL_NONE), *batch, ["synflow", "grad_norm", "snip"])
    assert scores == {"synflow": 0.0, "grad_norm": 0.0, "snip": 0.0}


def test_synflow_reads_no_data_and_grows_with_the_network(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = batch
    net = nb201_net(RESNET)
    first = zero_cost(net, x, y, ["synflow"])["synflow"]
    assert zero_cost(net, torch.rand_like(x), y.flip(0), ["synflow"])["synflow"] == first
    wider = zero_cost(nb201_net(RESNET, channels=16), x, y, ["synflow"])["synflow"]
    assert wider is not None and first is not None and wider > first


def test_naswot_separates_samples_that_activate_differently(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = batch
    net = nb201_net(RESNET)
    spread = zero_cost(net, x, y, ["naswot"])["naswot"]
    same = zero_cost(net, x[:1].repeat(len(x), 1, 1, 1), y, ["naswot"])["naswot"]
    # identical samples give identical codes: a singular kernel, which has no log-determinant
    assert spread is not None and same is None


def test_a_network_without_relu_modules_has_no_naswot_and_unknown_names_are_refused() -> None:
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    scores = zero_cost(net, torch.randn(16, 4), torch.randint(0, 3, (16,)), ["naswot", "jacov", "grad_norm"])
    assert scores["naswot"] is None and scores["jacov"] is not None and scores["grad_norm"] > 0
    with pytest.raises(ValueError, match="unknown zero-cost proxies \\['zen'\\]; choose from: synflow"):
        zero_cost(net, torch.randn(2, 4), torch.zeros(2, dtype=torch.long), ["zen"])


def test_a_graph_network_is_scored_on_its_nodes() -> None:
    space = get_search_space("nbgraph", {"dim": 16})
    encoding = "gcn@0|gat@1|fc@0|skip@2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = load_nn_module(space.nn_code(encoding), space.nn_name(encoding))
    torch.manual_seed(0)
    net = module.Net((1, 12), (3,), {"lr": 0.01}, torch.device("cpu"))
    graph = Data(x=torch.randn(40, 12), edge_index=torch.randint(0, 40, (2, 160)))
    labels = torch.randint(0, 3, (40,))
    labels[30:] = -100  # nodes outside the training split, as the training masks them
    scores = zero_cost(net, graph, labels)
    assert all(v is not None and math.isfinite(v) for v in scores.values()), scores


def test_a_trial_scored_before_its_first_step_trains_as_one_that_was_not() -> None:
    plain = run_trial(payload(epochs=1))
    scored = run_trial(payload(epochs=1, proxies=("synflow", "naswot", "grad_norm")))
    assert plain[0]["proxies"] is None
    assert set(scored[0]["proxies"]) == {"synflow", "naswot", "grad_norm"} and scored[0]["proxy_seconds"] > 0
    assert scored[1][0]["loss"] == plain[1][0]["loss"] and scored[2]["test_metric"] == plain[2]["test_metric"]


def test_a_candidate_below_min_proxies_is_not_trained() -> None:
    with pytest.raises(ConstraintViolation, match=r"zero-cost proxy synflow is 0.0 for this network, below the job's constraints.min_proxies.synflow \(1\); not trained"):
        run_trial(payload(ALL_NONE, epochs=1, proxies=("synflow",), min_proxies={"synflow": 1.0}))
