"""Zero-cost proxies in a job: scored on the worker before each candidate's first step, stored per
trial, searched on as objectives and enforced as constraints (real training, real store)."""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
import torch

from search_spaces import get_search_space
from service.api.views import trial_public
from service.jobs.screen import ATTR, draw
from service.store import Job, Store
from tests.service.jobs.test_manager import TINY, _expire_lease, _until_running, make_store, manager, run, submit, trials
from workers.inline_executor import InlineExecutor
from workers.nn_module import load_nn_module
from workers.protocol import TrialError
from workers.proxies import zero_cost

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


# ---- strategy.screen on a job that trains: the workers score, the best train first ----------------
SCREEN = {"proxy": "synflow", "samples": 24, "keep": 4}


def _screen_record(store: Store, job_id: int) -> dict[str, Any]:
    with store.read() as session:
        return session.get(Job, job_id).sampler_attrs[ATTR]  # type: ignore[union-attr,index]


def _synflow(encoding: str) -> float | None:
    """The candidate's synflow as a trial scores it: its seed (0), its code, digits' 8x8 input."""
    space = get_search_space("nb201", TINY["params"])
    torch.manual_seed(0)
    net = load_nn_module(space.nn_code(encoding), space.nn_name(encoding)).Net((1, 1, 8, 8), (10,), {"lr": 0.1}, torch.device("cpu"))
    return zero_cost(net, torch.zeros(1, 1, 8, 8), torch.zeros(1, dtype=torch.long), ["synflow"])["synflow"]


def test_screening_scores_the_candidates_on_the_workers_and_trains_the_best_first(tmp_path: Path) -> None:
    store = make_store(tmp_path / "s.db")
    job_id = submit(store, search_space=TINY, strategy={"sampler": "random", "seed": 0, "screen": SCREEN},
                    budget={"max_trials": 6, "epochs": 1, "parallelism": 2})  # fmt: skip
    assert run(manager(store, InlineExecutor()), job_id).status == "succeeded"
    rows = trials(store, job_id)
    assert [t.origin for t in rows] == ["screened"] * 4 + ["sampler"] * 2
    record = _screen_record(store, job_id)
    assert (record["proxy"], record["samples"], record["scored"]) == ("synflow", 24, 24)
    # the kept are the best four of the 24 drawn, best first, as scored here independently
    drawn = draw(get_search_space("nb201", TINY["params"]), 0, 24)
    expected = sorted(drawn, key=lambda e: -(_synflow(e) or 0.0))[:4]
    assert [entry["encoding"] for entry in record["kept"]] == expected
    assert [t.architecture.encoding for t in rows[:4]] == expected  # type: ignore[union-attr]
    # a trained candidate records the score it was kept by (the same network, seed and batch)
    for row, entry in zip(rows[:4], record["kept"], strict=True):
        assert row.proxies["synflow"] == pytest.approx(entry["score"], rel=1e-9)


class _NoScoring(InlineExecutor):
    def score(self, job_id: int, request: Any) -> Any:
        raise AssertionError("a resumed job scored its candidates again")


def test_a_resumed_screened_job_trains_the_rest_of_its_list_and_scores_nothing_again(tmp_path: Path) -> None:
    store = make_store(tmp_path / "r.db")
    job_id = submit(store, search_space=TINY, strategy={"sampler": "random", "seed": 0, "screen": SCREEN},
                    budget={"max_trials": 6, "epochs": 1, "parallelism": 2})  # fmt: skip
    _until_running(manager(store, InlineExecutor(shuffle_seed=0)), store, job_id, complete=1)
    _expire_lease(store, job_id)  # the first server was killed mid-job
    assert run(manager(store, _NoScoring(shuffle_seed=1)), job_id).status == "succeeded"
    rows = trials(store, job_id)
    kept = [entry["encoding"] for entry in _screen_record(store, job_id)["kept"]]
    assert [t.origin for t in rows] == ["screened"] * 4 + ["sampler"] * 2
    assert [t.architecture.encoding for t in rows[:4]] == kept  # type: ignore[union-attr]


class _WorkersWithoutTheData(InlineExecutor):
    """What a Ray node without the dataset's files sends back (the API's node has them)."""

    def score(self, job_id: int, request: Any) -> Future[list[float | None]]:
        future: Future[list[float | None]] = Future()
        future.set_exception(TrialError("DatasetUnavailableError", "dataset 'digits' is missing on this node", ""))
        return future


def test_a_screen_the_workers_cannot_score_fails_the_job_naming_why(tmp_path: Path) -> None:
    store = make_store(tmp_path / "f.db")
    job_id = submit(store, search_space=TINY, strategy={"screen": SCREEN}, budget={"max_trials": 2, "epochs": 1})
    job = run(manager(store, _WorkersWithoutTheData()), job_id)
    assert job.status == "failed" and trials(store, job_id) == []
    assert job.error == (
        "strategy.screen: scoring the candidates failed: DatasetUnavailableError: dataset 'digits' is missing on this node"
    )
