"""Each task's default training protocol trains its built-in datasets without diverging (issue #10).

Real training through the runner, in this process, on KANs that diverged under the one protocol
every task used to share (NAS-Bench-201's SGD, lr 0.05, Nesterov momentum 0.9).
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from search_spaces import get_search_space
from search_spaces.datasets import default_training, get_dataset
from workers.protocol import TrialPayload
from workers.runner import TrialDiverged, run_trial

#: sampled from the default kan space (Optuna's RandomSampler, seeds 0 and 2); each one's loss
#: reached NaN within two epochs on kan-exp-sin under the old protocol
DIVERGED_UNDER_SGD = (
    "mix(g=5,k=1,d=2)x8|rbf(g=8)x8|cheb(d=2)",
    "rbf(g=5)x8|bspline(g=8,k=2)x4|cheb(d=4)",
    "bspline(g=8,k=2)x16|rbf(g=5)x8|cheb(d=3)",
    "bspline(g=5,k=2)x4|rbf(g=5)x16|rbf(g=5)",
)
#: the protocol every task had before they got their own
NAS_BENCH_201 = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "nesterov": True,
                 "scheduler": "cosine", "batch_size": 64}
FUNCTION_FITTING = ("kan-exp-sin", "kan-xy", "kan-exp-4d", "kan-bessel")


def kan_payload(arch: str, dataset: str, training: dict[str, Any], *, epochs: int = 3, seed: int = 0) -> TrialPayload:
    """A trial as the manager builds it: the job's ``training`` fields become LEMUR's ``prm``."""
    info = get_dataset(dataset).info
    space = get_search_space("kan", task=info.task)
    prm = {
        "lr": training["lr"], "momentum": training["momentum"], "weight_decay": training["weight_decay"],
        "batch": training["batch_size"], "epoch": epochs, "optimizer": training["optimizer"],
        "nesterov": training["nesterov"], "scheduler": training["scheduler"], "transform": info.transform,
    }
    return TrialPayload(
        trial_id=1, job_id=1, number=0, nn_name=space.nn_name(arch), nn_code=space.nn_code(arch),
        dataset=dataset, prm=prm, epochs=epochs, seed=seed, split_seed=seed,
    )


def test_the_shared_sgd_protocol_diverges_on_these_kans() -> None:
    """Keeps the next test meaningful: these architectures do break the old protocol."""
    diverged = 0
    for arch in DIVERGED_UNDER_SGD:
        try:
            run_trial(kan_payload(arch, "kan-exp-sin", NAS_BENCH_201))
        except TrialDiverged:
            diverged += 1
    assert diverged >= 3


def test_kans_fit_kan_exp_sin_with_the_regression_defaults() -> None:
    training = default_training("regression")
    spread = float(get_dataset("kan-exp-sin").load(None).y.std())  # the rmse of predicting the mean
    for arch in DIVERGED_UNDER_SGD:
        _, epochs, final = run_trial(kan_payload(arch, "kan-exp-sin", training))  # TrialDiverged fails it
        rmse = [e["val_metric"] for e in epochs]
        assert all(math.isfinite(e["loss"]) for e in epochs), (arch, epochs)
        assert rmse[-1] < rmse[0], (arch, rmse)
        assert rmse[-1] < 0.8 * spread, (arch, rmse, spread)
        assert math.isfinite(final["test_metric"])


@pytest.mark.parametrize("dataset", FUNCTION_FITTING[1:])
def test_the_regression_defaults_never_diverge_on_function_fitting(dataset: str) -> None:
    training = default_training("regression")
    for arch in DIVERGED_UNDER_SGD:
        _, epochs, _ = run_trial(kan_payload(arch, dataset, training, epochs=2))
        assert all(math.isfinite(e["val_loss"]) for e in epochs), (arch, epochs)
