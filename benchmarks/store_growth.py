"""Per-trial cost as one job grows to 100,000 trials, on SQLite and PostgreSQL (issue #13).

Optuna's own RDB storage slows down about tenfold per trial by 80,000 trials on PostgreSQL
(optuna/optuna#3053); Cellar's per-trial cost must stay flat. Filling a job to 100,000 trials
through the manager would take hours, so the job's rows are bulk-inserted first (core
``executemany`` in chunks of 5,000): one architecture per trial (unique hashes, so the filler never
makes the measured trials duplicates), trial rows with the columns the runner writes (complete with
values and metrics, one in 30 failed with an error), and one epoch row per epoch of each complete
trial, all taken from the results table's real cells, params and distributions. Then, at each size:

* ask+tell+persist: ``lifecycle.extend_job`` gives the ended job ``--trials`` more trials and the
  real ``JobManager`` runs them on the ``TabularExecutor`` (``random`` sampler, so sampler cost is not
  what is measured; reproducible order, parallelism 1), ``tick()`` in a loop, timed per trial; the
  Optuna calls (``AskTellGate.ask/record/tell_until``) and the store sessions are timed apart. The
  first tick, where the runner rebuilds the study from every stored trial (``resume``), is a
  one-time cost reported apart, as is the last (``finish_job``).
* reads, in-process through the FastAPI app (``TestClient``, no manager): ``GET /v1/jobs/{id}``
  (job), ``GET /v1/jobs/{id}/trials`` (the dashboard's trial list: all of them, there is no page),
  ``GET /v1/jobs/{id}/summary``, ``GET /v1/jobs/{id}/trials/{best}`` (best), and one poll of the
  event stream (``TrialWatch.poll`` + ``job_view``, what ``/events`` runs every ``events_poll_s``).

    .venv/bin/python benchmarks/store_growth.py                       # 22 minutes on 2 shared cores (load 3-8)
    .venv/bin/python benchmarks/store_growth.py --sizes 100,10000 --no-postgres --trials 50
    .venv/bin/python benchmarks/store_growth.py --json > growth.json

PostgreSQL: ``--postgres`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``) is
the server's admin database; each run creates ``cellar_growth_<pid>`` there and drops it after.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import optuna
from fastapi.testclient import TestClient
from optuna.distributions import distribution_to_json
from sqlalchemy import create_engine, func, insert, select, text
from sqlalchemy.engine import make_url

from search_spaces import get_search_space
from search_spaces.datasets import get_dataset
from search_spaces.transforms import parse_transform
from service.api.app import create_app
from service.api.events import TrialWatch
from service.api.jobs import job_view
from service.jobs.manager import JobManager
from service.jobs.spec import JobCreate
from service.settings import Settings
from service.store import Job, JobStatus, Store, lifecycle, queries, upgrade, utcnow
from service.store.models import Architecture, Trial, TrialEpoch, signed_score
from service.tabular import import_table, load_table
from workers.tabular_executor import CellResult, ResultsTable, TabularExecutor

ROOT = Path(__file__).resolve().parent
DEFAULT_TABLE = ROOT / "tables" / "nb201-c4-4ops-digits.jsonl.xz"
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
CHUNK = 5000
FAIL_EVERY = 30  # one filler trial in 30 failed, as constraint violations and lookup errors do
READS = ("job", "trials", "summary", "best", "events")


@dataclass(frozen=True)
class Template:
    """A real sampled configuration of the table's space: what a filler trial copies."""

    encoding: str
    params: dict[str, Any]
    distributions: dict[str, Any]
    prm: dict[str, Any]
    nn_name: str
    nn_code: str
    result: CellResult


@dataclass
class Row:
    store: str
    trials: int
    fill_s: float
    resume_ms: float
    finish_ms: float
    trial_ms: float
    optuna_ms: float
    store_ms: float
    reads_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class Context:
    """What filling needs besides the table: the job's spec, shapes and source ids."""

    table: ResultsTable
    spec: JobCreate
    task: str
    in_shape: list[int]
    out_shape: list[int]
    templates: list[Template]
    metric_source_id: int | None
    transform_source_id: int | None


def job_body(table: ResultsTable, max_trials: int) -> dict[str, Any]:
    return {
        "name": "store-growth",
        "search_space": {"kind": table.search_space, "params": table.space_params},
        "dataset": table.dataset,
        "strategy": {"sampler": "random", "seed": 0, "cache": False},
        "training": {"seed": table.seed},
        "budget": {"max_trials": max_trials, "epochs": table.epochs, "parallelism": 1},
    }


def templates(table: ResultsTable, spec: JobCreate, task: str, count: int = 256) -> list[Template]:
    """``count`` configurations the job's own sampler would propose, with their table results."""
    space = get_search_space(table.search_space, table.space_params, task=task)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    found: list[Template] = []
    while len(found) < count:
        trial = study.ask()
        encoding = space.sample(trial)
        result = table.results.get(encoding)
        if result is None:
            continue
        found.append(
            Template(
                encoding=encoding,
                params=dict(trial.params),
                distributions={k: distribution_to_json(v) for k, v in trial.distributions.items()},
                prm={**spec.prm, **space.hyperparameters(encoding)},
                nn_name=space.nn_name(encoding),
                nn_code=space.nn_code(encoding),
                result=result,
            )
        )
    return found


def create_job(store: Store, table: ResultsTable) -> tuple[int, Context]:
    """An ended job with no trials, and what filling it needs."""
    spec = JobCreate.model_validate(job_body(table, 1))
    info = get_dataset(table.dataset).describe(None)
    with store.write() as session:
        job = queries.create_job(
            session, name="store-growth", search_space=table.search_space, dataset=table.dataset,
            task=info.task, metric=table.metric, spec=spec.model_dump(mode="json"),
        )  # fmt: skip
        now = utcnow()
        job.status, job.started_at, job.finished_at = JobStatus.SUCCEEDED, now, now
        job_id = job.job_id
        metric_id = queries.metric_source_id(session, table.metric)
        transform_id = queries.transform_source_id(session, spec.transform) if spec.transform else None
    in_shape = [1, *parse_transform(spec.transform).out_shape(info.in_shape)]
    found = templates(table, spec, info.task)
    return job_id, Context(table, spec, info.task, in_shape, list(info.out_shape), found, metric_id, transform_id)


def fill(store: Store, job_id: int, ctx: Context, first: int, count: int) -> None:
    """Trials ``first .. first+count-1`` of the job, ended, with architectures and epochs, in bulk."""
    table, started = ctx.table, datetime(2024, 1, 1, tzinfo=UTC)
    arch_t, trial_t, epoch_t = Architecture.__table__, Trial.__table__, TrialEpoch.__table__
    for low in range(first, first + count, CHUNK):
        numbers = range(low, min(first + count, low + CHUNK))
        picked = [ctx.templates[n % len(ctx.templates)] for n in numbers]
        archs = []
        for n, t in zip(numbers, picked):
            fake = hashlib.sha256(f"store-growth:{job_id}:{n}".encode()).hexdigest()
            archs.append({
                "search_space": table.search_space, "space_params": table.space_params, "encoding": t.encoding,
                "arch_hash": fake, "dedup_hash": fake, "in_shape": ctx.in_shape, "out_shape": ctx.out_shape,
                "num_params": t.result.params, "flops": t.result.flops, "nn_name": t.nn_name,
                "nn_code": t.nn_code, "created_at": started,
            })  # fmt: skip
        with store.write() as session:
            conn = session.connection()
            arch_ids = conn.execute(
                insert(arch_t).returning(arch_t.c.architecture_id, sort_by_parameter_order=True), archs
            ).scalars().all()
            trials = []
            for n, t, arch_id in zip(numbers, picked, arch_ids):
                r, begin = t.result, started + timedelta(seconds=60 * n)
                failed = n % FAIL_EVERY == FAIL_EVERY - 1
                last = r.epochs[-1]
                trials.append({
                    "job_id": job_id, "number": n, "architecture_id": arch_id,
                    "state": "failed" if failed else "complete", "params": t.params,
                    "distributions": t.distributions, "prm": t.prm, "seed": ctx.spec.training_seed,
                    "split": table.split, "epochs": table.epochs,
                    "values": None if failed else [last.val_metric], "val_metric": None if failed else last.val_metric,
                    "test_metric": None if failed else r.test_metric, "loss": None if failed else last.loss,
                    "train_seconds": None if failed else r.train_seconds, "latency_ms": r.latency_ms,
                    "cache_hit": False, "origin": "sampler", "requeued": False, "interruptions": 0,
                    "metric_source_id": ctx.metric_source_id, "transform_source_id": ctx.transform_source_id,
                    "worker": f"tabular:{table.name}",
                    "error": "ConstraintViolation: 1,234,567 parameters exceed constraints.max_params" if failed else None,
                    "created_at": begin, "started_at": begin, "finished_at": begin + timedelta(seconds=r.train_seconds),
                    "heartbeat_at": begin + timedelta(seconds=r.train_seconds),
                })  # fmt: skip
            trial_ids = conn.execute(
                insert(trial_t).returning(trial_t.c.trial_id, sort_by_parameter_order=True), trials
            ).scalars().all()
            epochs = [
                {
                    "trial_id": trial_id, "epoch": e.epoch, "loss": e.loss, "val_loss": e.val_loss,
                    "val_metric": e.val_metric, "train_metric": None, "elapsed_seconds": e.elapsed_seconds,
                    "created_at": started, "task": ctx.task, "dataset": table.dataset, "metric": table.metric,
                    "nn": t.nn_name, "score": signed_score(table.metric, e.val_metric),
                }
                for row, t, trial_id in zip(trials, picked, trial_ids)
                if row["state"] == "complete"
                for e in t.result.epochs
            ]  # fmt: skip
            conn.execute(insert(epoch_t), epochs)


class Timer:
    """Seconds spent in wrapped calls, by kind."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}

    def wrap(self, kind: str, call: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                self.spent[kind] = self.spent.get(kind, 0.0) + time.perf_counter() - started

        return timed

    def wrap_session(self, kind: str, opener: Callable[[], Any]) -> Callable[[], Any]:
        @contextmanager
        def timed() -> Iterator[Any]:
            started = time.perf_counter()
            try:
                with opener() as session:
                    yield session
            finally:
                self.spent[kind] = self.spent.get(kind, 0.0) + time.perf_counter() - started

        return timed


def run_trials(store: Store, job_id: int, table: ResultsTable, more: int) -> tuple[float, float, float, float, float]:
    """Extend the ended job by ``more`` trials and run them with the real manager. Returns
    (resume ms, finish ms, ms per trial, Optuna ms per trial, store ms per trial)."""
    with store.write() as session:
        total = session.scalar(select(func.count()).select_from(Trial).where(Trial.job_id == job_id)) or 0
        lifecycle.extend_job(session, job_id, max_trials=total + more, more_seconds=None, now=utcnow())
    url = store.url.render_as_string(hide_password=False)
    settings = Settings(database_url=url, api_key="unused", poll_interval_s=1e-4, start_manager=False)
    manager = JobManager(store, TabularExecutor(table), settings, max_running_jobs=1)
    timer = Timer()
    ticks: list[float] = []
    try:
        while True:
            started = time.perf_counter()
            manager.tick()
            ticks.append(time.perf_counter() - started)
            if len(ticks) == 1:
                runner = manager.runners[job_id]
                for name in ("ask", "record", "tell_until"):
                    setattr(runner.gate, name, timer.wrap("optuna", getattr(runner.gate, name)))
                store.write = timer.wrap_session("store", Store.write.__get__(store))  # type: ignore[method-assign]
                store.read = timer.wrap_session("store", Store.read.__get__(store))  # type: ignore[method-assign]
            elif not manager.runners:
                break
    finally:
        manager.close()
        store.__dict__.pop("write", None), store.__dict__.pop("read", None)
    with store.read() as session:
        job = session.get(Job, job_id)
        assert job is not None
        if job.status != JobStatus.SUCCEEDED:
            raise RuntimeError(f"the measured job ended {job.status}: {job.error}")
    steady = sum(ticks[1:-1])
    return (ticks[0] * 1e3, ticks[-1] * 1e3, steady / more * 1e3,
            timer.spent.get("optuna", 0.0) / more * 1e3, timer.spent.get("store", 0.0) / more * 1e3)  # fmt: skip


def time_reads(store: Store, job_id: int, repeat: int, budget_s: float) -> dict[str, float]:
    """Median ms of each read kind; a kind stops repeating once it has spent ``budget_s``."""
    url = store.url.render_as_string(hide_password=False)
    settings = Settings(database_url=url, api_key="bench-growth-key", start_manager=False)
    medians: dict[str, float] = {}
    with TestClient(create_app(settings)) as client:
        answer = client.get(f"/v1/jobs/{job_id}/summary", params={"top": 1})
        answer.raise_for_status()
        best = answer.json()["best"][0]["number"]
        watch = TrialWatch(store, job_id)
        watch.poll()

        def events() -> None:
            job_view(store, job_id)
            watch.poll()

        def get(path: str) -> Callable[[], None]:
            return lambda: client.get(path).raise_for_status()

        calls: dict[str, Callable[[], Any]] = {
            "job": get(f"/v1/jobs/{job_id}"),
            "trials": get(f"/v1/jobs/{job_id}/trials"),
            "summary": get(f"/v1/jobs/{job_id}/summary"),
            "best": get(f"/v1/jobs/{job_id}/trials/{best}"),
            "events": events,
        }
        for kind, call in calls.items():
            times: list[float] = []
            while len(times) < repeat and sum(times) < budget_s:
                started = time.perf_counter()
                call()
                times.append(time.perf_counter() - started)
            medians[kind] = statistics.median(times) * 1e3
    return medians


def explain(store: Store, job_id: int) -> list[str]:
    """The plan of the event stream's per-poll trial query (``queries.trial_progress``)."""
    with store.read() as session:
        moving = (Trial.state == "running") | Trial.trial_id.in_([1]) | (Trial.number > 10**9)
        query = select(Trial.trial_id).where(Trial.job_id == job_id, moving).order_by(Trial.number)
        sql = str(query.compile(session.bind, compile_kwargs={"literal_binds": True}))
        prefix = "EXPLAIN QUERY PLAN " if store.is_sqlite else "EXPLAIN ANALYZE "
        return [" ".join(str(c) for c in r) for r in session.execute(text(prefix + sql))]


def measure(name: str, store: Store, table_path: Path, sizes: list[int], args: argparse.Namespace) -> list[Row]:
    upgrade(store)
    table_name, _, _ = import_table(store, table_path)
    table = load_table(store, table_name)
    job_id, ctx = create_job(store, table)
    rows: list[Row] = []
    held = 0
    for size in sizes:
        started = time.perf_counter()
        if size > held:
            fill(store, job_id, ctx, held, size - held)
            held = size
        fill_s = time.perf_counter() - started
        resume, finish, per_trial, optuna_ms, store_ms = run_trials(store, job_id, table, args.trials)
        held += args.trials
        row = Row(name, size, fill_s, resume, finish, per_trial, optuna_ms, store_ms)
        row.reads_ms = time_reads(store, job_id, args.reads, args.read_budget_s)
        rows.append(row)
        if not args.json and size == sizes[-1]:
            print(f"  trial_progress plan ({name}, {size:,}):", *explain(store, job_id), sep="\n    ")
        if not args.json:
            print(f"  {name} {size:>7,}: fill {fill_s:.1f} s, resume {resume:.0f} ms, {per_trial:.2f} ms/trial, "
                  + ", ".join(f"{k} {v:.1f} ms" for k, v in row.reads_ms.items()), flush=True)  # fmt: skip
    return rows


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A fresh database on the server, dropped afterwards."""
    name = f"cellar_growth_{os.getpid()}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def print_table(rows: list[Row], trials: int) -> None:
    header = ["store", "trials in job", "fill s", "resume ms (once)", "ask+tell+persist ms/trial",
              "of which Optuna", "of which store", *(f"{k} ms" for k in READS)]  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))

    def cells(row: Row) -> list[str]:
        return [row.store, f"{row.trials:,}", f"{row.fill_s:.1f}", f"{row.resume_ms:,.0f}", f"{row.trial_ms:.2f}",
                f"{row.optuna_ms:.2f}", f"{row.store_ms:.2f}", *(f"{row.reads_ms[k]:,.1f}" for k in READS)]  # fmt: skip

    for name in dict.fromkeys(r.store for r in rows):
        mine = [r for r in rows if r.store == name]
        for row in mine:
            print("| " + " | ".join(cells(row)) + " |")
        if len(mine) > 1:
            low, high = mine[0], mine[-1]
            ratios = [high.resume_ms / low.resume_ms, high.trial_ms / low.trial_ms, high.optuna_ms / low.optuna_ms,
                      high.store_ms / low.store_ms, *(high.reads_ms[k] / low.reads_ms[k] for k in READS)]  # fmt: skip
            label = f"**{high.trials:,} / {low.trials:,}**"
            print(f"| {name} | {label} | | " + " | ".join(f"×{r:.1f}" for r in ratios) + " |")
    print(f"\n{trials} measured trials per size (random sampler, parallelism 1, 3 epochs each); reads: median "
          "of up to --reads calls. Load average at the end: " + ", ".join(f"{v:.2f}" for v in os.getloadavg()))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,10000,100000", help="trials in the job, comma-separated")
    parser.add_argument("--trials", type=int, default=100, help="trials run through the manager at each size")
    parser.add_argument("--reads", type=int, default=3, help="calls per read kind (median)")
    parser.add_argument("--read-budget-s", type=float, default=3.0, help="stop repeating a read kind after this")
    parser.add_argument("--table", type=Path, default=DEFAULT_TABLE)
    parser.add_argument("--postgres", default=POSTGRES, help="the PostgreSQL server's admin database URL")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    args = parser.parse_args()
    logging.disable(logging.INFO)  # the app's request and startup logs
    sizes = sorted(int(s) for s in args.sizes.split(","))
    rows: list[Row] = []
    workdir = Path(tempfile.mkdtemp(prefix="cellar-store-growth-"))
    try:
        store = Store(f"sqlite:///{workdir / 'growth.db'}")
        try:
            rows += measure("sqlite", store, args.table, sizes, args)
        finally:
            store.dispose()
        if not args.no_postgres:
            with postgres_database(args.postgres) as url:
                store = Store(url)
                try:
                    rows += measure("postgresql", store, args.table, sizes, args)
                finally:
                    store.dispose()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps({"trials": args.trials, "load": os.getloadavg(), "rows": [asdict(r) for r in rows]}, indent=1))
    else:
        print()
        print_table(rows, args.trials)


if __name__ == "__main__":
    main()
