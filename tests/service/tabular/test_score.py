"""Zero-cost proxies stored with a results table (`cellar table score`), and simulated jobs that
search on them, constrain by them and screen with them."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
import torch
from sqlalchemy import select

from search_spaces import get_search_space
from service.errors import InvalidRequestError
from service.jobs.spec import JobCreate
from service.store import Store, Trial, queries, tables, upgrade
from service.tabular import import_table, load_table
from service.tabular.jobs import fit_to_table
from service.tabular.score import score_table
from service.tabular.simulate import simulate_job
from tests.service.tabular.test_tabular import SPACE, write_table
from workers.nn_module import load_nn_module
from workers.proxies import zero_cost

OPS = ["none", "skip_connect", "nor_conv_3x3"]
CELLS = sorted(
    get_search_space("nb201", SPACE["params"]).canonical(
        "|{}~0|+|{}~0|{}~1|+|{}~0|{}~1|{}~2|".format(*ops)
    )
    for ops in itertools.product(OPS, repeat=6)
)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    upgrade(store)
    write_table(tmp_path / "toy.jsonl", CELLS)
    import_table(store, tmp_path / "toy.jsonl")
    return store


@pytest.fixture(scope="module")
def scored_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store whose table has synflow for every cell (scored once for the module)."""
    root = tmp_path_factory.mktemp("scored")
    store = Store(f"sqlite:///{root / 'scored.db'}")
    upgrade(store)
    write_table(root / "toy.jsonl", CELLS)
    import_table(store, root / "toy.jsonl")
    score_table(store, "toy", ["synflow"])
    store.dispose()
    return root / "scored.db"


@pytest.fixture
def scored(scored_db: Path, tmp_path: Path) -> Store:
    shutil.copyfile(scored_db, tmp_path / "copy.db")
    return Store(f"sqlite:///{tmp_path / 'copy.db'}")


def submit(store: Store, **strategy: object) -> int:
    body = {
        "search_space": {"kind": "nb201", "params": {**SPACE["params"], "ops": OPS}},
        "dataset": "digits",
        "executor": {"table": "toy"},
        "strategy": {"sampler": "evolution", "seed": 0, **strategy},
        "budget": {"max_trials": 40},
    }
    with store.read() as session:
        spec = fit_to_table(JobCreate.model_validate(body), tables.get_table(session, "toy"))
    with store.write() as session:
        return queries.create_job(session, name="s", search_space="nb201", dataset="digits", task="img-classification",
                                  metric="acc", spec=spec.model_dump(mode="json")).job_id  # fmt: skip


def test_scores_are_stored_with_the_table_and_a_stopped_run_goes_on(store: Store) -> None:
    first = score_table(store, "toy", ["synflow"], limit=100)
    assert first["scored"] == 100 and first["complete"] == []
    rest = score_table(store, "toy", ["synflow"])
    assert rest["scored"] == len(CELLS) - 100 and rest["complete"] == ["synflow"]
    assert score_table(store, "toy", ["synflow"])["scored"] == 0  # nothing left to do
    table = load_table(store, "toy")
    assert table.source is not None and table.source["proxies"] == ["synflow"]
    # what a worker would compute for the cell: the same network, the same seed
    cell = CELLS[-1]
    space = get_search_space("nb201", SPACE["params"])
    module = load_nn_module(space.nn_code(cell), space.nn_name(cell))
    torch.manual_seed(0)
    net = module.Net((1, 1, 8, 8), (10,), {"lr": 0.1}, torch.device("cpu"))
    expected = zero_cost(net, torch.zeros(1, 1, 8, 8), torch.zeros(1, dtype=torch.long), ["synflow"])["synflow"]
    assert table.results[cell].proxies == {"synflow": expected}


def test_screening_trains_the_best_scored_candidates_first(store: Store, scored: Store) -> None:
    with pytest.raises(InvalidRequestError, match="which the table does not hold; score them with `cellar table score toy --proxies synflow`"):
        submit(store, screen={"proxy": "synflow", "samples": 200, "keep": 20})
    store = scored
    job_id = submit(store, screen={"proxy": "synflow", "samples": 200, "keep": 20})
    assert simulate_job(store, job_id, load_table(store, "toy")) == "succeeded"
    table = load_table(store, "toy")
    with store.read() as session:
        rows = session.scalars(select(Trial).where(Trial.job_id == job_id).order_by(Trial.number)).all()
        origins = [row.origin for row in rows]
        first = [row.architecture.encoding for row in rows[:20]]
    assert origins[:20] == ["screened"] * 20 and "screened" not in origins[20:]
    scores = [table.results[cell].proxies["synflow"] for cell in first]
    assert scores == sorted(scores, reverse=True)  # best first
    # they are the best of what was drawn: nothing below them beats the last one kept
    assert min(scores) >= sorted((r.proxies["synflow"] for r in table.results.values()), reverse=True)[199]


def test_a_stored_proxy_is_an_objective_of_a_simulated_job(scored: Store) -> None:
    store = scored
    body = {"search_space": {"kind": "nb201", "params": SPACE["params"]}, "dataset": "digits",
            "executor": {"table": "toy"}, "strategy": {"sampler": "nsga2", "seed": 0},
            "objectives": [{"metric": "val_accuracy", "direction": "maximize"}, {"metric": "synflow", "direction": "maximize"}],
            "budget": {"max_trials": 30}}  # fmt: skip
    with store.read() as session:
        spec = fit_to_table(JobCreate.model_validate(body), tables.get_table(session, "toy"))
    with store.write() as session:
        job_id = queries.create_job(session, name="o", search_space="nb201", dataset="digits", task="img-classification",
                                    metric="acc", spec=spec.model_dump(mode="json")).job_id  # fmt: skip
    assert simulate_job(store, job_id, load_table(store, "toy")) == "succeeded"
    table = load_table(store, "toy")
    with store.read() as session:
        rows = session.scalars(select(Trial).where(Trial.job_id == job_id, Trial.state == "complete")).all()
        pairs = [(row.architecture.encoding, row.values, row.proxies) for row in rows]
    assert pairs
    for encoding, values, proxies in pairs:
        assert values[1] == table.results[encoding].proxies["synflow"] == proxies["synflow"]


def test_a_screened_job_records_the_screening_proxy_with_every_trained_candidate() -> None:
    spec = JobCreate.model_validate({"search_space": {"kind": "nb201"}, "dataset": "digits", "budget": {"max_trials": 3},
                                     "strategy": {"screen": {"proxy": "naswot"}}, "proxies": ["synflow"]})  # fmt: skip
    assert spec.proxies == ["synflow", "naswot"]


def test_screening_keeps_twenty_by_default_or_every_sample_when_fewer_are_drawn() -> None:
    def kept(**screen: Any) -> int | None:
        body = {"search_space": {"kind": "nb201"}, "dataset": "digits", "budget": {"max_trials": 3},
                "strategy": {"screen": {"proxy": "synflow", **screen}}}
        return JobCreate.model_validate(body).strategy.screen.keep  # type: ignore[union-attr]

    assert (kept(), kept(samples=5), kept(samples=50, keep=7)) == (20, 5, 7)
    with pytest.raises(ValidationError, match=r"keep \(10\) cannot exceed samples \(5\)"):
        kept(samples=5, keep=10)
