"""The tabular executor alone: a discrete-event simulation driven call by call as the manager
drives it, on hand-made results tables whose timings make the expected order obvious."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest

from tests.service.bodies import PRM
from workers.executor import ExecutorEvent, TrialResources
from workers.protocol import TrialPayload
from workers.tabular_executor import SIMULATION_START, CellResult, EpochResult, ResultsTable, TabularExecutor

A = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
B = "|nor_conv_1x1~0|+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|none~1|avg_pool_3x3~2|"
MISSING = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"

SPLIT = {"fractions": [0.6, 0.2, 0.2], "seed": 0, "sizes": [1078, 359, 360], "sha256": "0" * 64}


def cell(elapsed: list[float], accuracy: float = 0.9, params: int = 1000) -> CellResult:
    epochs = tuple(
        EpochResult(epoch=i, loss=1.0 / i, val_loss=1.0 / i, val_metric=accuracy * i / len(elapsed), elapsed_seconds=t)
        for i, t in enumerate(elapsed, start=1)
    )
    return CellResult(
        params=params,
        flops=2 * params,
        latency_ms=1.0,
        epochs=epochs,
        test_metric=accuracy - 0.01,
        train_seconds=elapsed[-1],
    )


def table(results: dict[str, CellResult], epochs: int = 3) -> ResultsTable:
    return ResultsTable(
        name="toy",
        search_space="nb201",
        space_params={"channels": 4, "cells_per_stage": 1},
        dataset="digits",
        metric="acc",
        epochs=epochs,
        seed=0,
        prm={**PRM, "epoch": epochs},
        split=SPLIT,
        results=results,
    )


def payload(trial_id: int, arch: str, **changes: Any) -> TrialPayload:
    fields: dict[str, Any] = dict(
        trial_id=trial_id,
        job_id=1,
        number=trial_id,
        nn_name="nb201-x",
        nn_code="",
        dataset="digits",
        prm=PRM,
        epochs=3,
        seed=0,
        split_seed=0,
        arch=arch,
        search_space="nb201",
    )
    fields.update(changes)
    return TrialPayload(**fields)


def drive(executor: TabularExecutor, epochs: int = 3, polls: int = 100) -> list[tuple[float, int, str, int | None]]:
    """Poll as the manager does, answering each report with the trial's next call; return
    (simulated time, trial, kind, epoch) of every event in the order it was delivered."""
    seen = []
    for _ in range(polls):
        events: list[ExecutorEvent] = executor.poll(0.0)
        for event in events:
            seen.append((executor.clock, event.trial_id, event.kind, event.data.get("epoch")))
            if event.kind == "epoch":
                if event.data["epoch"] < epochs:
                    executor.train_epoch(event.trial_id)
                else:
                    executor.finish(event.trial_id)
            elif event.kind == "final":
                executor.release(event.trial_id)
    return seen


def test_two_trials_interleave_in_simulated_time() -> None:
    executor = TabularExecutor(table({A: cell([1.0, 2.0, 3.0]), B: cell([0.5, 2.5, 3.0])}))
    executor.open_job(1, 2, TrialResources())
    executor.start_trial(1, payload(1, A))
    executor.start_trial(1, payload(2, B))
    assert executor.free_slots(1) == 0
    assert drive(executor) == [
        (0.0, 1, "setup", None),
        (0.0, 2, "setup", None),
        (0.5, 2, "epoch", 1),
        (1.0, 1, "epoch", 1),
        (2.0, 1, "epoch", 2),
        (2.5, 2, "epoch", 2),  # B's second epoch took 2.0 s (2.5 - 0.5), after its first
        (3.0, 1, "epoch", 3),
        (3.0, 2, "epoch", 3),
        (3.0, 1, "final", None),
        (3.0, 2, "final", None),
    ]
    assert executor.now() == SIMULATION_START + timedelta(seconds=3)
    assert executor.now().tzinfo is not None
    assert executor.free_slots(1) == 2


def test_a_poll_first_moves_the_clock_then_delivers() -> None:
    # the manager checks its time limit between the two: nothing that completes after a
    # deadline is reported before the manager has seen the clock pass it
    executor = TabularExecutor(table({A: cell([4.0, 5.0, 6.0])}))
    executor.open_job(1, 1, TrialResources())
    executor.start_trial(1, payload(1, A))
    assert [e.kind for e in executor.poll(0.0)] == ["setup"]
    assert executor.poll(0.0) == [] and executor.clock == 4.0
    [event] = executor.poll(0.0)
    assert event.kind == "epoch" and event.data == {
        "epoch": 1,
        "loss": 1.0,
        "val_loss": 1.0,
        "val_metric": pytest.approx(0.3),
        "elapsed_seconds": 4.0,
    }


def test_the_reports_carry_the_tables_results() -> None:
    executor = TabularExecutor(table({A: cell([1.0, 2.0, 3.0], accuracy=0.8, params=1234)}))
    executor.open_job(1, 1, TrialResources())
    executor.start_trial(1, payload(1, A))
    [setup] = executor.poll(0.0)
    assert setup.data["num_params"] == 1234 and setup.data["flops"] == 2468 and setup.data["split"] == SPLIT
    executor.poll(0.0), executor.poll(0.0)
    executor.finish(1)
    [final] = executor.poll(0.0)
    assert (
        final.kind == "final"
        and final.data["test_metric"] == pytest.approx(0.79)
        and final.data["train_seconds"] == 3.0
    )


def test_an_aborted_trial_never_reports_and_frees_its_slot() -> None:
    executor = TabularExecutor(table({A: cell([1.0, 2.0, 3.0]), B: cell([5.0, 6.0, 7.0])}))
    executor.open_job(1, 2, TrialResources())
    executor.start_trial(1, payload(1, A))
    executor.start_trial(1, payload(2, B))
    executor.poll(0.0)  # both setups
    executor.abort(1)
    assert executor.free_slots(1) == 1
    assert executor.poll(0.0) == [] and executor.clock == 5.0  # A's epoch at 1.0 is gone
    assert [(e.trial_id, e.kind) for e in executor.poll(0.0)] == [(2, "epoch")]


def failure(executor: TabularExecutor, trial: TrialPayload) -> ExecutorEvent:
    executor.open_job(1, 1, TrialResources())
    executor.start_trial(1, trial)
    [event] = executor.poll(0.0)
    assert event.kind == "error" and executor.clock == 0.0
    assert executor.free_slots(1) == 1, "a failed trial's slot is free again"
    return event


def test_an_architecture_missing_from_the_table_fails_clearly() -> None:
    event = failure(TabularExecutor(table({A: cell([1.0, 2.0, 3.0])})), payload(1, MISSING))
    assert event.error_type == "TabularLookupError"
    assert event.error == (
        f"TabularLookupError: architecture '{MISSING}' is not in results table 'toy' "
        "(nb201(cells_per_stage=1,channels=4) on digits, 3 epochs, 1 cells)"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"epochs": 5}, "the job trains 5 epochs, results table 'toy' (.*) recorded 3; set budget.epochs to 3"),
        ({"dataset": "digits32"}, "the job trains on 'digits32', results table 'toy' .* was trained on 'digits'"),
        ({"prm": {**PRM, "lr": 0.1}}, r"the job's training differs .*: lr=0.1 \(table: 0.05\)"),
        ({"seed": 3, "split_seed": 3}, r"seed=3 \(table: 0; set training.seed to 0\)"),
        ({"split_fractions": (0.8, 0.1, 0.1)}, r"split=\[0.8, 0.1, 0.1\]"),
        ({"search_space": "kan"}, "the job searches 'kan'"),
    ],
)
def test_a_job_whose_protocol_is_not_the_tables_is_refused(change: dict[str, Any], message: str) -> None:
    event = failure(TabularExecutor(table({A: cell([1.0, 2.0, 3.0])})), payload(1, A, **change))
    assert event.error_type == "TabularLookupError"
    assert event.error is not None
    assert re.search(message, event.error), event.error


def test_constraints_fail_as_a_workers_would() -> None:
    event = failure(TabularExecutor(table({A: cell([1.0, 2.0, 3.0], params=5000)})), payload(1, A, max_params=4000))
    assert event.error_type == "ConstraintViolation" and "5,000 parameters exceed constraints.max_params" in (
        event.error or ""
    )


def test_setup_and_finish_may_take_simulated_time() -> None:
    executor = TabularExecutor(table({A: cell([1.0, 2.0, 3.0])}), setup_seconds=0.5, finish_seconds=0.25)
    executor.open_job(1, 1, TrialResources())
    executor.start_trial(1, payload(1, A))
    assert [(t, kind) for t, _, kind, _ in drive(executor)] == [
        (0.5, "setup"),
        (1.5, "epoch"),
        (2.5, "epoch"),
        (3.5, "epoch"),
        (3.75, "final"),
    ]


def test_start_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        TabularExecutor(table({}), start=SIMULATION_START.replace(tzinfo=None))

