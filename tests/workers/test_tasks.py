"""The runner on every kind of task: tables, regression, images, one graph, many graphs."""

from __future__ import annotations

from pathlib import Path

import pytest

from search_spaces import get_search_space, nn_id
from tests.search_spaces.formats import write_tu
from tests.search_spaces.lemur_models import GCN_CODE, MLP_CODE
from workers.protocol import TrialPayload
from workers.runner import ConstraintViolation, TrialRunner, run_trial

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def payload(code: str, dataset: str, epochs: int, **prm: object) -> TrialPayload:
    fields = {"lr": 0.05, "momentum": 0.9, "dropout": 0.0, "batch": 16, "epoch": epochs, **prm}
    return TrialPayload(
        trial_id=1, job_id=1, number=0, nn_name=nn_id(code), nn_code=code, dataset=dataset,
        prm=fields, epochs=epochs, seed=0, split_seed=0,
    )


def test_a_table_trains_with_standardised_features_and_counts_flops() -> None:
    setup, epochs, final = run_trial(payload(MLP_CODE, "iris", epochs=15, transform="norm"))
    assert setup["in_shape"] == [1, 4] and setup["out_shape"] == [3]
    # PyTorch's counter: a linear layer costs 2 * inputs * outputs per sample
    assert setup["flops"] == 2 * 4 * 64 + 2 * 64 * 3
    assert setup["latency_ms"] > 0
    assert epochs[-1]["val_metric"] > 0.8 and final["test_metric"] > 0.8


def test_regression_is_scored_by_rmse_and_improves() -> None:
    _, epochs, final = run_trial(payload(MLP_CODE, "kan-exp-sin", epochs=20, lr=0.01, transform="echo"))
    rmse = [e["val_metric"] for e in epochs]
    assert rmse[-1] < rmse[0] / 2
    assert final["test_metric"] < 0.5  # the targets' standard deviation is about 1.2
    assert abs(epochs[-1]["val_loss"] - rmse[-1] ** 2) < 1e-4  # the loss is the MSE, the metric its root


def test_node_classification_trains_on_the_training_nodes_only() -> None:
    setup, epochs, final = run_trial(payload(GCN_CODE, "sbm", epochs=30, lr=0.01, transform="echo"))
    assert setup["split"]["sizes"] == [240, 80, 80]
    assert epochs[-1]["val_metric"] > 0.6 and final["test_metric"] > 0.6  # 4 classes: chance 0.25


def test_graph_classification_batches_graphs(tmp_path: Path) -> None:
    write_tu(tmp_path, "MUTAG", graphs=60)
    p = payload(GCN_CODE, "mutag", epochs=20, lr=0.01, transform="echo")
    p = TrialPayload(**{**p.to_dict(), "data_dir": str(tmp_path)})
    setup, epochs, final = run_trial(p)
    assert setup["in_shape"] == [1, 2] and setup["out_shape"] == [2]
    assert epochs[-1]["val_metric"] >= 0.75  # rings and stars: the star's centre label gives it away


def test_nb201_on_cifar_shaped_digits() -> None:
    space = get_search_space("nb201", {"channels": 4, "cells_per_stage": 1})
    arch = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
    p = TrialPayload(
        trial_id=1, job_id=1, number=0, nn_name=space.nn_name(arch), nn_code=space.nn_code(arch), dataset="digits32",
        prm={"lr": 0.05, "momentum": 0.9, "batch": 64, "epoch": 3, "transform": "norm"}, epochs=3, seed=0, split_seed=0,
    )
    setup, epochs, _ = run_trial(p)
    assert setup["in_shape"] == [1, 3, 32, 32] and setup["num_params"] == 11_054  # the reference's count
    assert setup["flops"] > 0 and epochs[2]["loss"] < epochs[0]["loss"]


def test_max_flops_is_checked_before_training() -> None:
    runner = TrialRunner()
    p = payload(MLP_CODE, "iris", epochs=1, transform="norm")
    with pytest.raises(ConstraintViolation, match="896 FLOPs exceed the job's max_flops 500"):
        runner.setup({**p.to_dict(), "max_flops": 500})
