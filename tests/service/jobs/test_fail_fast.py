"""A deterministic error is not retried to the end of the budget: when a job's first trials all
fail with the same error, the job stops with that error and says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.search_spaces.lemur_models import MLP_CODE
from tests.service.jobs.test_manager import make_store, manager, run, submit, trials
from workers.inline_executor import InlineExecutor

RAISING = MLP_CODE.replace(
    "    def forward(self, x):\n        return self.body(x)",
    "    def forward(self, x):\n        raise ValueError('the forward pass is not written yet')",
)
CODE_SPACE = {"kind": "code", "params": {"nn_code": RAISING}}


@pytest.mark.parametrize("parallelism", [1, 2])
def test_a_job_whose_first_trials_fail_alike_stops_with_that_error(tmp_path: Path, parallelism: int) -> None:
    assert RAISING != MLP_CODE
    store = make_store(tmp_path / "stop.db")
    job_id = submit(store, search_space=CODE_SPACE, budget={"max_trials": 12, "epochs": 1, "parallelism": parallelism})
    job = run(manager(store, InlineExecutor()), job_id)
    rows = trials(store, job_id)
    assert job.status == "failed"
    assert job.error is not None and job.error.startswith(
        "stopped: the first 3 trials all failed with the same error, so every trial would "
        "(budget.fail_fast_after = 3); fix it and submit again: ValueError: the forward pass is not written yet"
    ), job.error
    failed_alike = [t for t in rows if (t.error or "").startswith("ValueError: the forward pass is not written yet")]
    assert len(failed_alike) == 3
    # nothing more was asked than was running when the third failure came in
    assert len(rows) <= 3 + parallelism - 1 and all(t.state == "failed" for t in rows)
    for other in set(rows) - set(failed_alike):
        assert other.error == job.error  # stopped with the job, saying why


def test_fail_fast_after_0_runs_the_whole_budget(tmp_path: Path) -> None:
    store = make_store(tmp_path / "all.db")
    job_id = submit(
        store, search_space=CODE_SPACE, budget={"max_trials": 5, "epochs": 1, "parallelism": 1, "fail_fast_after": 0}
    )
    job = run(manager(store, InlineExecutor()), job_id)
    assert job.status == "failed" and job.error.startswith("no trial completed (5 ended without a result)")  # type: ignore[union-attr]
    assert len(trials(store, job_id)) == 5


PICKY = MLP_CODE.replace(
    "        self.device = device\n",
    "        self.device = device\n"
    "        if prm['dropout'] > 0.25:\n"
    "            raise ValueError('dropout above 0.25 is not supported')\n",
)


def _cell(dropout: float) -> str:
    return json.dumps({"batch": 16, "dropout": dropout, "lr": 0.01, "momentum": 0.9}, separators=(",", ":"))


def test_a_job_that_has_completed_a_trial_is_not_stopped_by_later_failures(tmp_path: Path) -> None:
    assert PICKY != MLP_CODE
    store = make_store(tmp_path / "mixed.db")
    job_id = submit(
        store,
        search_space={"kind": "code", "params": {"nn_code": PICKY}},
        strategy={"sampler": "random", "seed": 0, "initial_architectures": [_cell(d) for d in (0.0, 0.3, 0.4, 0.5)]},
        budget={"max_trials": 5, "epochs": 1, "parallelism": 1, "fail_fast_after": 2},
    )
    job = run(manager(store, InlineExecutor()), job_id)
    rows = trials(store, job_id)
    assert [t.state for t in rows[:4]] == ["complete", "failed", "failed", "failed"]
    assert all("dropout above 0.25" in (t.error or "") for t in rows[1:4])
    assert job.status == "succeeded" and len(rows) == 5


def test_different_errors_do_not_stop_the_job(tmp_path: Path) -> None:
    store = make_store(tmp_path / "different.db")
    job_id = submit(
        store,
        search_space={"kind": "code", "params": {"nn_code": PICKY}},
        # the first fails on its dropout, the second on its size: two errors, not one
        strategy={"sampler": "random", "seed": 0, "initial_architectures": [_cell(0.3), _cell(0.0)]},
        budget={"max_trials": 3, "epochs": 1, "parallelism": 1, "fail_fast_after": 2},
        constraints={"max_params": 100},
    )
    job = run(manager(store, InlineExecutor()), job_id)
    rows = trials(store, job_id)
    assert "dropout above 0.25" in (rows[0].error or "") and "ConstraintViolation" in (rows[1].error or "")
    assert len(rows) == 3 and not (job.error or "").startswith("stopped: the first")
