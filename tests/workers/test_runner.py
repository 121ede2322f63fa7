"""The trial runner, in this process: real training on digits through LEMUR's contract."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from search_spaces import get_search_space
from workers.protocol import TrialPayload
from workers.runner import ConstraintViolation, TrialDiverged, TrialRunner, run_trial

RESNET = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"


def payload(arch: str = RESNET, *, channels: int = 8, cells: int = 1, epochs: int = 2, **overrides: object) -> TrialPayload:
    space = get_search_space("nb201", {"channels": channels, "cells_per_stage": cells})
    prm = {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "batch": 64, "epoch": epochs, "transform": "norm"}
    prm.update(overrides.pop("prm", {}))  # type: ignore[arg-type]
    fields = dict(
        trial_id=1, job_id=1, number=0, nn_name=space.nn_name(arch), nn_code=space.nn_code(arch),
        dataset="digits", prm=prm, epochs=epochs, seed=0, split_seed=0,
    )
    fields.update(overrides)
    return TrialPayload(**fields)  # type: ignore[arg-type]


def test_a_conv_cell_learns_digits_and_reports_every_epoch() -> None:
    setup, epochs, final = run_trial(payload(epochs=2))
    assert setup["num_params"] == 43_010  # the reference's 43,154 minus 2*9*8 stem weights (1 channel)
    assert setup["split"]["sizes"] == [1078, 359, 360]
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert epochs[-1]["val_metric"] > 0.8  # chance is 0.1
    assert epochs[1]["loss"] < epochs[0]["loss"]
    assert epochs[1]["elapsed_seconds"] > epochs[0]["elapsed_seconds"] > 0
    assert final["test_metric"] > 0.8
    assert final["train_seconds"] == epochs[-1]["elapsed_seconds"]


def test_a_cell_with_no_path_to_the_output_stays_at_chance() -> None:
    _, epochs, final = run_trial(payload(ALL_NONE, epochs=1))
    assert epochs[0]["val_metric"] < 0.2


def test_same_seed_same_metrics() -> None:
    a = run_trial(payload(epochs=1))
    b = run_trial(payload(epochs=1))
    assert a[1][0]["val_metric"] == b[1][0]["val_metric"]
    assert a[1][0]["loss"] == b[1][0]["loss"]
    assert a[2]["test_metric"] == b[2]["test_metric"]


def test_divergence_is_an_error_that_says_what_to_do() -> None:
    with pytest.raises(TrialDiverged, match="lower the learning rate"):
        run_trial(payload(epochs=2, prm={"lr": 1e12, "weight_decay": 0.0}))


def test_max_params_is_checked_before_training() -> None:
    runner = TrialRunner()
    with pytest.raises(ConstraintViolation, match="43010 parameters exceed the job's max_params 40000"):
        runner.setup(payload(max_params=40_000).to_dict())
    with pytest.raises(RuntimeError, match="no trial is set up"):
        runner.train_epoch()


def test_a_memory_cap_turns_a_big_model_into_an_out_of_memory_error() -> None:
    # in a child process: the cap is per process and must not limit this test session; one runner
    # runs both trials, as a worker does. Measured here: the empty cell peaks under 200 MiB, the
    # all-3x3 cell needs over 400 MiB (it keeps 3 activations per conv for the backward pass).
    script = textwrap.dedent(
        f"""
        from tests.workers.test_runner import payload
        from workers.runner import TrialRunner
        all_3x3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
        runner = TrialRunner()
        setup = runner.setup(payload({ALL_NONE!r}, channels=64, cells=5, epochs=1, memory_limit_mb=300).to_dict())
        runner.train_epoch()
        runner.finish()
        print("small ok", setup["num_params"])
        try:
            runner.setup(payload(all_3x3, channels=64, cells=5, epochs=1, memory_limit_mb=300).to_dict())
            runner.train_epoch()
        except MemoryError as error:
            print("big failed:", type(error).__name__, error)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert "small ok" in result.stdout, result.stderr
    assert "big failed: TrialOutOfMemory out of memory: the trial needed more than its memory cap of 300 MiB" in result.stdout, (
        result.stdout + result.stderr
    )


def test_a_ray_half_imported_by_another_thread_is_not_taken_for_a_ray_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """The dashboard's server imported Ray in one thread while a trial ran in another: the trial
    found the half-made module in sys.modules and failed on its missing ``is_initialized``."""
    import os
    import socket
    import types

    from workers.runner import _placement

    monkeypatch.setitem(sys.modules, "ray", types.ModuleType("ray"))  # as it is mid-import
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert _placement() == (f"{socket.gethostname()}:{os.getpid()}", [])
