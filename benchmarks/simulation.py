"""Simulated searches per second: the job manager's path against the in-memory path, side by side.

The same searches (strategy, seed, budget) on the same results table, run twice in this process:

* manager: ``JobManager`` on the ``TabularExecutor``, every step a transaction on a SQLite file
  (what every simulated search took before ``service.tabular.simulate``);
* in memory: ``simulate_job``: the same search in memory, its rows written in one transaction.

Both write their trials to the same store; the benchmark checks that every search's trials are the
same on both paths (number, architecture, state, metrics, simulated times, duplicates) and prints
trials per second over all searches, per path, and their ratio. The time counts everything from
a queued job to its rows committed.

    .venv/bin/python benchmarks/simulation.py                                   # random, 10 x 360 trials
    .venv/bin/python benchmarks/simulation.py --samplers random,evolution,tpe --searches 5
    .venv/bin/python benchmarks/simulation.py --trials 1000 --searches 3 --no-manager
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from service.jobs.manager import JobManager
from service.jobs.spec import JobCreate
from service.settings import Settings
from service.store import Architecture, Job, Store, Trial, queries, upgrade
from service.tabular import import_table, load_table
from service.tabular.simulate import simulate_job
from workers.tabular_executor import ResultsTable, TabularExecutor

ROOT = Path(__file__).resolve().parent
DEFAULT_TABLE = ROOT / "tables" / "nb201-c4-4ops-digits.jsonl.xz"


def submit(store: Store, table: ResultsTable, sampler: str, seed: int, trials: int, parallelism: int) -> int:
    body = {
        "name": f"{sampler}-{seed}",
        "search_space": {"kind": table.search_space, "params": table.space_params},
        "dataset": table.dataset,
        "strategy": {"sampler": sampler, "seed": seed},
        "training": {"seed": table.seed},
        "budget": {"max_trials": trials, "epochs": table.epochs, "parallelism": parallelism},
    }
    spec = JobCreate.model_validate(body)
    with store.write() as session:
        return queries.create_job(
            session, name=body["name"], search_space=table.search_space, dataset=table.dataset,
            task="img-classification", metric=table.metric, spec=spec.model_dump(mode="json"),
        ).job_id  # fmt: skip


def by_manager(store: Store, table: ResultsTable, job_id: int) -> None:
    settings = Settings(database_url=str(store.url), api_key="unused", poll_interval_s=1e-4, start_manager=False)
    manager = JobManager(store, TabularExecutor(table), settings, max_running_jobs=1)
    while True:
        manager.tick()
        if not manager.runners:
            with store.read() as session:
                if session.get(Job, job_id).status not in ("queued", "running"):  # type: ignore[union-attr]
                    return


def outcome(store: Store, job_id: int) -> list[tuple[Any, ...]]:
    """What a search found: each trial's number, architecture, state, metrics and simulated times."""
    with store.read() as session:
        numbers = dict(session.execute(select(Trial.trial_id, Trial.number).where(Trial.job_id == job_id)).all())
        rows = session.execute(
            select(Trial.number, Architecture.encoding, Trial.state, Trial.val_metric, Trial.test_metric,
                   Trial.started_at, Trial.finished_at, Trial.duplicate_of_trial_id)  # fmt: skip
            .join(Architecture, Architecture.architecture_id == Trial.architecture_id)
            .where(Trial.job_id == job_id)
            .order_by(Trial.number)
        ).all()
    return [(*row[:-1], numbers.get(row[-1])) for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", type=Path, default=DEFAULT_TABLE, help="a file `cellar table export` wrote")
    parser.add_argument("--samplers", default="random")
    parser.add_argument("--searches", type=int, default=10, help="searches per sampler (seeds 0..N-1)")
    parser.add_argument("--trials", type=int, default=360, help="trials per search")
    parser.add_argument("--parallelism", type=int, default=1)
    parser.add_argument("--no-manager", action="store_true", help="the in-memory path only")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="cellar-simulation-") as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'bench.db'}")
        upgrade(store)
        name, _, _ = import_table(store, args.table)
        table = load_table(store, name)
        print(f"table {name}: {table.describe()}; {args.searches} searches of {args.trials} trials per sampler, "
              f"{args.parallelism} at a time, SQLite file store")  # fmt: skip
        paths = ["in memory"] if args.no_manager else ["manager", "in memory"]
        figures: dict[str, dict[str, Any]] = {}
        print("| sampler | path | trials | seconds | trials/s | ratio |\n|---|---|---|---|---|---|")
        for sampler in [s for s in args.samplers.split(",") if s]:
            results: dict[str, list[list[tuple[Any, ...]]]] = {}
            for path in paths:
                elapsed, found = 0.0, []
                for seed in range(args.searches):
                    job_id = submit(store, table, sampler, seed, args.trials, args.parallelism)
                    started = time.perf_counter()
                    if path == "manager":
                        by_manager(store, table, job_id)
                    else:
                        simulate_job(store, job_id, table)
                    elapsed += time.perf_counter() - started
                    found.append(outcome(store, job_id))
                results[path] = found
                trials = sum(len(rows) for rows in found)
                rate = trials / elapsed
                base = figures.get(f"{sampler}/manager", {}).get("trials_per_s")
                ratio = f"{rate / base:.1f}x" if base else "1.0x" if path == "manager" else "-"
                figures[f"{sampler}/{path}"] = {"trials": trials, "seconds": round(elapsed, 2), "trials_per_s": round(rate, 1)}
                print(f"| {sampler} | {path} | {trials:,} | {elapsed:.2f} | {rate:,.0f} | {ratio} |", flush=True)
            if len(results) == 2 and results["manager"] != results["in memory"]:
                raise SystemExit(f"{sampler}: the two paths found different trials")
        if len(paths) == 2:
            print("every search found the same trials on both paths")
        store.dispose()
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
