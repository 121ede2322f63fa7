"""Each task's default training protocol: one per task, torch-free, fresh on every call."""

from __future__ import annotations

import subprocess
import sys

import pytest

from search_spaces import UnknownChoiceError
from search_spaces.datasets import TASKS, TRAINING_PROTOCOLS, default_training

FIELDS = {"optimizer", "lr", "momentum", "weight_decay", "nesterov", "scheduler", "batch_size"}


@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_task_has_a_protocol_the_training_contract_can_run(task: str) -> None:
    training = default_training(task)
    assert set(training) == FIELDS
    assert training["optimizer"] in ("sgd", "adam", "adamw")
    assert training["scheduler"] in ("cosine", "constant")
    assert training["lr"] > 0 and training["batch_size"] > 0
    assert 0 <= training["momentum"] < 1 and training["weight_decay"] >= 0


def test_no_protocol_for_a_task_that_does_not_exist() -> None:
    assert set(TRAINING_PROTOCOLS) == set(TASKS)
    with pytest.raises(UnknownChoiceError, match="unknown task 'segmentation'; choose one of: graph-classification"):
        default_training("segmentation")


def test_images_keep_nas_bench_201s_recipe_and_mse_tasks_train_with_adam() -> None:
    assert default_training("img-classification") == {
        "optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "nesterov": True,
        "scheduler": "cosine", "batch_size": 64,
    }
    assert default_training("regression")["optimizer"] == "adam"


def test_a_returned_protocol_is_the_callers_to_change() -> None:
    default_training("regression")["lr"] = 1.0
    assert default_training("regression")["lr"] == 0.01


def test_the_defaults_are_known_without_torch() -> None:
    code = (
        "import sys; from search_spaces.datasets import default_training; "
        "default_training('regression'); print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
