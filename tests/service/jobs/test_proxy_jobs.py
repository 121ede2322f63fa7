"""Zero-cost proxies in a job: scored on the worker before each candidate's first step, stored per
trial, searched on as objectives and enforced as constraints (real training, real store)."""

from __future__ import annotations

from pathlib import Path

from service.api.views import trial_public
from tests.service.jobs.test_manager import TINY, make_store, manager, run, submit, trials
from workers.inline_executor import InlineExecutor

TWO = [{"metric": "val_accuracy", "direction": "maximize"}, {"metric": "synflow", "direction": "maximize"}]


def test_a_proxy_is_an_objective_and_is_stored_with_every_trial(tmp_path: Path) -> None:
    store = make_store(tmp_path / "p.db")
    job_id = submit(store, search_space=TINY, objectives=TWO, strategy={"sampler": "nsga2", "seed": 0},
                    proxies=["naswot"], budget={"max_trials": 4, "epochs": 1})  # fmt: skip
    job = run(manager(store, InlineExecutor()), job_id)
    assert job.status == "succeeded" and job.spec["proxies"] == ["synflow", "naswot"]  # the objective's added
    rows = [t for t in trials(store, job_id) if t.state == "complete"]
    assert rows, "no trial completed"
    for row in rows:
        assert set(row.proxies) == {"synflow", "naswot"}
        assert row.values == [row.val_metric, row.proxies["synflow"]]
        assert trial_public(row, "acc").proxies == row.proxies


def test_a_candidate_below_min_proxies_fails_without_training(tmp_path: Path) -> None:
    store = make_store(tmp_path / "m.db")
    hopeless = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    job_id = submit(store, search_space=TINY, budget={"max_trials": 2, "epochs": 1},
                    strategy={"sampler": "random", "initial_architectures": [hopeless]},
                    constraints={"min_proxies": {"synflow": 1e-6}})  # fmt: skip
    run(manager(store, InlineExecutor()), job_id)
    first = trials(store, job_id)[0]
    assert first.state == "failed" and first.epoch_rows == []
    assert "zero-cost proxy synflow is 0.0 for this network, below the job's constraints.min_proxies.synflow" in first.error
