"""Simulated jobs in memory (``service.tabular.simulate``) write the rows the job manager writes.

Each case runs one job body twice on the same results table: through the job manager on the
``TabularExecutor`` (a store transaction per step, today's path) and through ``simulate_job`` (in
memory, written once). Every trial, epoch, architecture and the job's end must be equal, field by
field; only the row ids and the wall-clock bookkeeping columns (created_at, heartbeat_at) differ.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from service.store import Architecture, Job, Store, Trial, TrialEpoch, upgrade
from service.tabular import import_table, load_table
from service.tabular.simulate import simulate_job
from workers.tabular_executor import TabularExecutor

from .test_tabular import ALL_CELLS, run, submit, write_table

TRIAL_FIELDS = (
    "number", "state", "params", "distributions", "prm", "seed", "split", "epochs", "values", "val_metric",
    "test_metric", "loss", "train_seconds", "latency_ms", "cache_hit", "cache_key", "origin", "requeued",
    "interruptions", "sampler_attrs", "worker", "error", "started_at", "finished_at", "metric_source_id",
    "transform_source_id", "retry_of_trial_id",
)  # fmt: skip
EPOCH_FIELDS = (
    "epoch", "loss", "val_loss", "val_metric", "train_metric", "elapsed_seconds", "task", "dataset", "metric", "nn", "score",
)  # fmt: skip
JOB_FIELDS = ("status", "error", "started_at", "finished_at", "sampler_attrs", "lease_owner", "lease_expires_at")

BASE: dict[str, Any] = {"training": {"seed": 0}, "budget": {"epochs": 3, "max_trials": 40, "parallelism": 1}}
MULTI = [{"metric": "val_accuracy", "direction": "maximize"}, {"metric": "params", "direction": "minimize"}]
# a few cells the sampler will also draw, so that duplicates (in-job reuse) occur
INITIAL = [ALL_CELLS[7], ALL_CELLS[400], ALL_CELLS[7], ALL_CELLS[9000]]

CASES: dict[str, dict[str, Any]] = {
    "random": {"strategy": {"sampler": "random", "seed": 1}, "budget": {"epochs": 3, "max_trials": 60, "parallelism": 1}},
    "tpe, 2 at a time": {"strategy": {"sampler": "tpe", "seed": 2}, "budget": {"epochs": 3, "max_trials": 30, "parallelism": 2}},
    "evolution, time limit, 3 at a time": {
        "strategy": {"sampler": "evolution", "seed": 3},
        "budget": {"epochs": 3, "max_trials": 5000, "parallelism": 3, "time_limit_s": 120},
    },
    "median pruner, initial and duplicate cells": {
        "strategy": {"sampler": "random", "seed": 4, "pruner": "median", "initial_architectures": INITIAL},
        "budget": {"epochs": 3, "max_trials": 40, "parallelism": 1},
    },
    "asha, not in reproducible order": {
        "strategy": {"sampler": "random", "seed": 5, "pruner": "asha", "reproducible": False},
        "budget": {"epochs": 3, "max_trials": 40, "parallelism": 3},
    },
    "a parameter constraint": {
        "strategy": {"sampler": "random", "seed": 6},
        "constraints": {"max_params": 1075},
        "budget": {"epochs": 3, "max_trials": 40, "parallelism": 1, "fail_fast_after": 0},
    },
    "two objectives, nsga2 and a pruner": {
        "objectives": MULTI,
        "strategy": {"sampler": "nsga2", "seed": 7, "pruner": "median"},
        "budget": {"epochs": 3, "max_trials": 40, "parallelism": 2},
    },
    "grid": {"strategy": {"sampler": "grid", "seed": 8}, "budget": {"epochs": 3, "max_trials": 25, "parallelism": 2}},
    "a protocol the table does not hold (fail fast)": {"strategy": {"sampler": "random", "seed": 9}, "training": {"seed": 1}},
}


@pytest.fixture(scope="module")
def table_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    folder = tmp_path_factory.mktemp("simulate")
    path = folder / "full.jsonl"
    write_table(path, ALL_CELLS, name="full")
    store = Store(f"sqlite:///{folder / 'sim.db'}")
    upgrade(store)
    import_table(store, path)
    yield store
    store.dispose()


def _snapshot(store: Store, job_id: int) -> dict[str, Any]:
    with store.read() as session:
        job = session.get(Job, job_id)
        assert job is not None
        trials = session.scalars(select(Trial).where(Trial.job_id == job_id).order_by(Trial.number)).all()
        numbers = {t.trial_id: t.number for t in trials}
        rows = []
        for trial in trials:
            arch = session.get(Architecture, trial.architecture_id)
            epochs = session.scalars(
                select(TrialEpoch).where(TrialEpoch.trial_id == trial.trial_id).order_by(TrialEpoch.epoch)
            ).all()
            rows.append({
                **{name: getattr(trial, name) for name in TRIAL_FIELDS},
                "duplicate_of": numbers.get(trial.duplicate_of_trial_id),  # type: ignore[arg-type]
                "architecture": (arch.encoding, arch.arch_hash, arch.nn_name, arch.num_params, arch.flops),  # type: ignore[union-attr]
                "epoch_rows": [{name: getattr(e, name) for name in EPOCH_FIELDS} for e in epochs],
            })  # fmt: skip
        return {"job": {name: getattr(job, name) for name in JOB_FIELDS}, "trials": rows}


@pytest.mark.parametrize("case", list(CASES))
def test_a_simulated_job_writes_what_the_job_manager_writes(table_store: Store, case: str) -> None:
    table = load_table(table_store, "full")
    body = {**BASE, **CASES[case]}
    by_manager = submit(table_store, **body)
    run(table_store, TabularExecutor(table), by_manager)
    in_memory = submit(table_store, **body)
    status = simulate_job(table_store, in_memory, table)

    expected, got = _snapshot(table_store, by_manager), _snapshot(table_store, in_memory)
    assert got["job"] == expected["job"]
    assert status == expected["job"]["status"]
    assert len(got["trials"]) == len(expected["trials"]) > 0
    for mine, theirs in zip(got["trials"], expected["trials"], strict=True):
        assert mine == theirs, f"trial {theirs['number']} differs"
    states = {t["state"] for t in expected["trials"]}
    # each case exercises what it names
    if case == "random":
        assert any(t["duplicate_of"] is not None for t in expected["trials"]) or states == {"complete"}
    if "pruner" in case or "asha" in case:
        assert "pruned" in states
    if "constraint" in case:
        assert {"complete", "failed"} <= states
        assert any("ConstraintViolation" in (t["error"] or "") for t in expected["trials"])
    if "duplicate" in case:
        assert any(t["duplicate_of"] is not None for t in expected["trials"])
    if "time limit" in case:
        assert any("time_limit_s" in (t["error"] or "") for t in expected["trials"])
    if "fail fast" in case:
        assert expected["job"]["status"] == "failed" and "fail_fast_after" in expected["job"]["error"]


def test_a_simulated_job_can_be_run_again_and_leaves_no_lease(table_store: Store) -> None:
    table = load_table(table_store, "full")
    job_id = submit(table_store, **BASE, strategy={"sampler": "random", "seed": 11})
    assert simulate_job(table_store, job_id, table) == "succeeded"
    with pytest.raises(RuntimeError, match="not queued"):
        simulate_job(table_store, job_id, table)
    snapshot = _snapshot(table_store, job_id)
    assert len(snapshot["trials"]) == 40
    assert snapshot["job"]["lease_owner"] is None


def test_simulated_architectures_have_their_code(table_store: Store) -> None:
    table = load_table(table_store, "full")
    job_id = submit(table_store, **BASE, strategy={"sampler": "random", "seed": 12})
    simulate_job(table_store, job_id, table)
    with table_store.read() as session:
        archs = session.scalars(
            select(Architecture).join(Trial, Trial.architecture_id == Architecture.architecture_id).where(Trial.job_id == job_id)
        ).all()
        assert archs and all(a.nn_code and a.nn_name.startswith("nb201-") for a in archs)
        assert all(a.num_params == table.results[a.encoding].params for a in archs if a.num_params is not None)


def test_a_duplicate_the_sampler_has_not_seen_yet_trains_as_on_the_manager(table_store: Store) -> None:
    """Reproducible order, 2 at a time: trial 2 repeats trial 1, which finished first but is not
    among the trials trial 2 may see (only trial 0 is): it trains again on both paths."""
    table = load_table(table_store, "full")
    slow, fast = sorted(ALL_CELLS[:50], key=lambda cell: table.results[cell].train_seconds)[::-49][:2]
    assert table.results[slow].train_seconds > table.results[fast].train_seconds
    body = {**BASE, "strategy": {"sampler": "random", "seed": 13, "initial_architectures": [slow, fast, fast, fast]},
            "budget": {"epochs": 3, "max_trials": 6, "parallelism": 2}}  # fmt: skip
    by_manager, in_memory = submit(table_store, **body), submit(table_store, **body)
    run(table_store, TabularExecutor(table), by_manager)
    simulate_job(table_store, in_memory, table)
    expected, got = _snapshot(table_store, by_manager), _snapshot(table_store, in_memory)
    assert got == expected
    assert [t["duplicate_of"] for t in got["trials"][:4]] == [None, None, None, 1]


def test_simulations_written_at_once_on_postgresql_share_their_networks(postgres_url: str, tmp_path: Any) -> None:
    """Found by benchmarks/api_speed.py: twenty simulated jobs submitted at once, written in
    concurrent transactions that inserted the same new networks, deadlocked on PostgreSQL."""
    import threading

    from .test_tabular import write_table

    cells = ALL_CELLS[:120]
    write_table(tmp_path / "small.jsonl", cells, name="small")
    store = Store(postgres_url)
    upgrade(store)
    import_table(store, tmp_path / "small.jsonl")
    table = load_table(store, "small")
    # the same forty networks, in a different order each: every job inserts the same new rows
    orders = [cells[seed::6] + [c for i, c in enumerate(cells) if i % 6 != seed] for seed in range(6)]
    jobs = [submit(store, **BASE, strategy={"sampler": "random", "initial_architectures": order[:40]}) for order in orders]
    start, statuses = threading.Barrier(len(jobs)), {}

    def simulate(job_id: int) -> None:
        start.wait()
        statuses[job_id] = simulate_job(store, job_id, table)

    threads = [threading.Thread(target=simulate, args=(job_id,)) for job_id in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert statuses == {job_id: "succeeded" for job_id in jobs}
    with store.read() as session:
        hashes = session.scalars(select(Architecture.arch_hash)).all()
        used = set(session.scalars(select(Trial.architecture_id)).all())
    assert len(hashes) == len(set(hashes)) == len(used) <= len(cells)  # one row per network, all used
    assert len(used) > 40  # the jobs overlapped, but not wholly
    store.dispose()
