"""A bounded loopback load test: many concurrent clients on one real ``cellar serve``, no lost writes.

It creates a fresh PostgreSQL database (``cellar_load_<pid>`` on the local server, dropped after;
``--database-url`` uses an existing one, ``--sqlite`` a SQLite file instead), starts a real
``cellar serve`` on it with local Ray on 2 CPUs (``benchmarks/_serve.py``), and runs N clients for
D seconds, each an ``httpx.AsyncClient`` of its own on one asyncio loop, with a short random pause
between requests. They submit tiny NB-201 jobs on digits (2 trials of 1 epoch, 4 channels, one
cell a stage; each its own seed, so they really train), spread evenly over the run, and otherwise
query ``/v1/data``, list jobs, read job pages and their trials, and follow a job's event stream for
a couple of seconds. Every request's latency is recorded per kind (for a stream: the time to its
first event); any answer >= 400 other than a 429, and any connection error or timeout, is an error.

After the load it waits for the submitted jobs to end and checks that none was lost: each id a
client got a 201 for is in the store (over the API and in SQL), its trials are all there (as many
as its counts say, ``max_trials`` of a succeeded job, each complete trial with its epoch rows), and
a fresh store holds no job that no client was answered for. It exits 1 on an error, a lost write
or a job that did not end within ``--drain-s``.

    .venv/bin/python benchmarks/load.py                              # 50 clients, 60 s, about 5 minutes on 2 cores
    .venv/bin/python benchmarks/load.py --clients 10 --seconds 10    # a quick try
    .venv/bin/python benchmarks/load.py --sqlite                     # the same on SQLite, to compare
    .venv/bin/python benchmarks/load.py --database-url postgresql+psycopg://postgres@127.0.0.1/mine --json load.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._serve import KEY, serving  # noqa: E402

#: the local PostgreSQL server's maintenance database, where the run's own database is created
ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
#: how often a client picks each read (submissions are paced apart from these)
READS = {"data": 3, "jobs": 2, "job": 3, "trials": 2, "events": 1}
KINDS = ("submit", *READS)
FINISHED = {"succeeded", "failed", "cancelled"}
MAX_TRIALS = 2
#: how long a client follows an event stream
FOLLOW_S = 2.0
#: /v1/data queries, small: a page of rows, the best per model, ids instead of code
DATA_QUERIES: tuple[dict[str, Any], ...] = (
    {"dataset": "digits", "max_rows": 20},
    {"dataset": "digits", "unique_nn": "true", "max_rows": 10, "codes": "separate"},
    {"task": "img-classification", "epoch": 1, "only_best_accuracy": "true", "max_rows": 5},
)


def job_body(seed: int) -> dict[str, Any]:
    """A tiny NB-201 job on digits; its own seed makes it sample (and train) its own cells."""
    return {
        "name": f"load-{seed}",
        "search_space": {"kind": "nb201", "params": {"channels": 4, "cells_per_stage": 1}},
        "dataset": "digits",
        "strategy": {"sampler": "tpe", "seed": seed},
        "budget": {"max_trials": MAX_TRIALS, "epochs": 1, "parallelism": 1},
    }


@dataclass
class Tally:
    """What the clients saw: latencies (ms) per kind, errors, 429s, and the jobs they submitted."""

    requests: Counter[str] = field(default_factory=Counter)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter[str] = field(default_factory=Counter)
    throttled: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)  # the first few errors, to read
    submitted: list[int] = field(default_factory=list)
    events: int = 0

    def error(self, kind: str, what: str) -> None:
        self.errors[kind] += 1
        if len(self.samples) < 10:
            self.samples.append(f"{kind}: {what}")


class Load:
    """N clients on one event loop until a deadline; submissions spread evenly over the run."""

    def __init__(self, url: str, *, seconds: float, jobs: int, think_s: float) -> None:
        self.url, self.seconds, self.jobs, self.think_s = url, seconds, jobs, think_s
        self.tally = Tally()
        self.submits = 0  # submissions begun (one loop: no lock needed)
        self.started = 0.0

    async def run(self, clients: int) -> float:
        self.started = time.monotonic()
        await asyncio.gather(*(self.client(random.Random(i)) for i in range(clients)))
        return time.monotonic() - self.started

    async def client(self, rng: random.Random) -> None:
        headers = {"Authorization": f"Bearer {KEY}"}
        async with httpx.AsyncClient(base_url=self.url, headers=headers, timeout=60) as http:
            await asyncio.sleep(rng.uniform(0, 2 * self.think_s))  # not all at once
            while (elapsed := time.monotonic() - self.started) < self.seconds:
                if self.submits < min(self.jobs, 1 + int(self.jobs * elapsed / self.seconds)):
                    self.submits += 1
                    await self.submit(http, self.submits)
                else:
                    await self.read(http, rng)
                await asyncio.sleep(rng.uniform(0, 2 * self.think_s))

    async def request(self, http: httpx.AsyncClient, kind: str, method: str, path: str, **kw: Any) -> Any:
        """The answer's JSON, or None after an error (recorded) or a 429 (counted)."""
        started = time.perf_counter()
        self.tally.requests[kind] += 1
        try:
            response = await http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            self.tally.error(kind, f"{method} {path}: {type(exc).__name__}: {exc}")
            return None
        self.tally.latencies[kind].append(1000 * (time.perf_counter() - started))
        if response.status_code == 429:
            self.tally.throttled[kind] += 1
            return None
        if response.status_code >= 400:
            self.tally.error(kind, f"{method} {path}: {response.status_code} {response.text[:300]}")
            return None
        return response.json()

    async def submit(self, http: httpx.AsyncClient, seed: int) -> None:
        job = await self.request(http, "submit", "POST", "/v1/jobs", json=job_body(seed))
        if job is not None:
            self.tally.submitted.append(job["id"])

    async def read(self, http: httpx.AsyncClient, rng: random.Random) -> None:
        kind = rng.choices(list(READS), weights=list(READS.values()))[0]
        ids = self.tally.submitted
        if kind in ("job", "trials", "events") and not ids:
            kind = "jobs"  # nothing to read yet
        if kind == "data":
            await self.request(http, kind, "GET", "/v1/data", params=rng.choice(DATA_QUERIES))
        elif kind == "jobs":
            params = rng.choice(({"limit": 20}, {"limit": 10, "status": "running"}, {"limit": 10, "offset": 10}))
            await self.request(http, kind, "GET", "/v1/jobs", params=params)
        elif kind == "job":
            await self.request(http, kind, "GET", f"/v1/jobs/{rng.choice(ids)}")
        elif kind == "trials":
            await self.request(http, kind, "GET", f"/v1/jobs/{rng.choice(ids)}/trials")
        else:
            await self.follow(http, rng.choice(ids[-10:]))  # a recent job: one that still moves

    async def follow(self, http: httpx.AsyncClient, job_id: int) -> None:
        """Read a job's events for ``FOLLOW_S`` (or to the stream's end); its latency is the time
        to the first event."""
        started = time.perf_counter()
        path = f"/v1/jobs/{job_id}/events"
        self.tally.requests["events"] += 1
        events = 0

        async def read() -> None:
            nonlocal events
            async with http.stream("GET", path) as response:
                if response.status_code != 200:
                    await response.aread()
                    self.tally.error("events", f"GET {path}: {response.status_code} {response.text[:300]}")
                    return
                async for line in response.aiter_lines():
                    if line.startswith("event:"):
                        if not events:
                            self.tally.latencies["events"].append(1000 * (time.perf_counter() - started))
                        events += 1

        try:
            await asyncio.wait_for(read(), FOLLOW_S)
        except TimeoutError:
            pass  # followed long enough: close it, as a reader who looked away does
        except httpx.HTTPError as exc:
            self.tally.error("events", f"GET {path}: {type(exc).__name__}: {exc}")
        self.tally.events += events


def drain(url: str, ids: list[int], wait_s: float) -> dict[int, str]:
    """Wait (at most ``wait_s``) for the jobs to end; their last statuses ("missing" for a 404)."""
    status: dict[int, str] = {}
    deadline = time.monotonic() + wait_s
    with httpx.Client(base_url=url, timeout=60) as http:
        pending = list(ids)
        while pending:
            for job_id in pending:
                response = http.get(f"/v1/jobs/{job_id}")
                found = response.status_code != 404
                status[job_id] = response.raise_for_status().json()["status"] if found else "missing"
            pending = [i for i in pending if status[i] not in FINISHED and status[i] != "missing"]
            if pending and time.monotonic() > deadline:
                break
            time.sleep(2 if pending else 0)
    return status


def lost_writes(url: str, database_url: str, ids: list[int], *, fresh: bool) -> tuple[list[str], Counter[str]]:
    """Each way the store differs from what the clients were answered, one line each; and how
    the jobs' trials ended (``cache hit`` counted apart: those did not train)."""
    lost: list[str] = []
    with httpx.Client(base_url=url, timeout=60) as http:
        api: dict[int, int] = {}
        for job_id in ids:
            job = http.get(f"/v1/jobs/{job_id}")
            if job.status_code == 404:
                lost.append(f"job {job_id}: answered 201, now a 404")
                continue
            view = job.raise_for_status().json()
            trials = http.get(f"/v1/jobs/{job_id}/trials").raise_for_status().json()
            api[job_id] = trials["count"]
            if trials["count"] != len(trials["data"]) or trials["count"] != view["counts"]["total"]:
                total = view["counts"]["total"]
                lost.append(f"job {job_id}: counts say {total} trials, /trials lists {trials['count']}")
            if view["status"] == "succeeded" and trials["count"] < MAX_TRIALS:
                lost.append(f"job {job_id}: succeeded with {trials['count']} of {MAX_TRIALS} trials")
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as db:
            jobs = {row[0] for row in db.execute(sa.text("SELECT job_id FROM cellar_jobs"))}
            trials = dict(db.execute(sa.text("SELECT job_id, count(*) FROM cellar_trials GROUP BY job_id")).all())
            bare = dict(db.execute(sa.text(
                "SELECT t.job_id, count(*) FROM cellar_trials t WHERE t.state = 'complete'"
                " AND t.duplicate_of_trial_id IS NULL"
                " AND NOT EXISTS (SELECT 1 FROM cellar_trial_epochs e WHERE e.trial_id = t.trial_id) GROUP BY t.job_id"
            )).all())  # fmt: skip
            ended, submitted = Counter[str](), set(ids)
            for job_id, state, hit in db.execute(sa.text("SELECT job_id, state, cache_hit FROM cellar_trials")):
                if job_id in submitted:
                    ended["cache hit" if hit else state] += 1
    finally:
        engine.dispose()
    for job_id in ids:
        if job_id not in jobs:
            lost.append(f"job {job_id}: answered 201, not in cellar_jobs")
        elif job_id in api and trials.get(job_id, 0) != api[job_id]:
            lost.append(f"job {job_id}: {trials.get(job_id, 0)} trials in SQL, {api[job_id]} over the API")
        if bare.get(job_id):
            lost.append(f"job {job_id}: {bare[job_id]} complete trials without epoch rows")
    if fresh and (extra := jobs - set(ids)):
        lost.append(f"jobs in the store that no client was answered for: {sorted(extra)}")
    return lost, ended


@contextmanager
def database(args: argparse.Namespace, workdir: Path) -> Iterator[tuple[str, bool]]:
    """The store's URL and whether it is fresh: ``--database-url``, a SQLite file, or a new
    PostgreSQL database that is dropped after."""
    if args.database_url:
        yield args.database_url, False
        return
    if args.sqlite:
        yield f"sqlite:///{workdir / 'cellar.db'}", True
        return
    name = f"cellar_load_{os.getpid()}"
    admin = sa.create_engine(args.postgres, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as db:
            db.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield sa.make_url(args.postgres).set(database=name).render_as_string(hide_password=False), True
    finally:
        with admin.connect() as db:
            db.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile (``q`` in 0..100) of ``values``, 0 when there are none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, -(-len(ordered) * q // 100) - 1))]


def figures(tally: Tally, wall: float) -> dict[str, Any]:
    kinds = {
        kind: {
            "count": tally.requests[kind],
            "p50_ms": percentile(tally.latencies[kind], 50),
            "p99_ms": percentile(tally.latencies[kind], 99),
            "max_ms": max(tally.latencies[kind], default=0.0),
            "errors": tally.errors[kind],
            "throttled": tally.throttled[kind],
        }
        for kind in KINDS
    }
    total = sum(tally.requests.values())
    return {
        "kinds": kinds, "requests": total, "requests_per_s": total / wall, "wall_s": wall, "events_read": tally.events
    }  # fmt: skip


def print_table(result: dict[str, Any]) -> None:
    print(f"{'kind':<8} {'count':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'429s':>5} {'errors':>6}")
    for kind, row in result["kinds"].items():
        print(f"{kind:<8} {row['count']:>7} {row['p50_ms']:>8.1f} {row['p99_ms']:>8.1f} {row['max_ms']:>8.1f} "
              f"{row['throttled']:>5} {row['errors']:>6}")  # fmt: skip
    print(f"total    {result['requests']:>7} requests in {result['wall_s']:.1f} s: {result['requests_per_s']:.1f} "
          f"requests/s; {result['events_read']} events read")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (default 50)")
    parser.add_argument("--seconds", type=float, default=60, help="how long they run (default 60)")
    parser.add_argument("--jobs", type=int, default=20, help="jobs submitted over the run (default 20)")
    parser.add_argument("--think-ms", type=float, default=100, help="mean pause between a client's requests")
    parser.add_argument("--drain-s", type=float, default=600, help="longest wait for the jobs to end after")
    store = parser.add_mutually_exclusive_group()
    store.add_argument("--database-url", help="an existing store (not dropped after) instead of a new database")
    store.add_argument("--sqlite", action="store_true", help="a SQLite file instead of PostgreSQL")
    parser.add_argument("--postgres", default=ADMIN_URL, help=f"where the new database is made (default {ADMIN_URL})")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="cellar-load-"))  # kept when something went wrong, for its serve.log
    with database(args, workdir) as (url, fresh):
        with serving(workdir, database_url=url) as server:
            load = Load(server, seconds=args.seconds, jobs=args.jobs, think_s=args.think_ms / 1000)
            wall = asyncio.run(load.run(args.clients))
            ids = sorted(load.tally.submitted)
            drain_started = time.monotonic()
            statuses = drain(server, ids, args.drain_s)
            drained = time.monotonic() - drain_started
            lost, trials = lost_writes(server, url, ids, fresh=fresh)
    log = (workdir / "serve.log").read_text(errors="replace")
    result = figures(load.tally, wall)
    unfinished = [i for i, s in statuses.items() if s not in FINISHED]
    result |= {"store": "sqlite" if args.sqlite else "postgresql", "clients": args.clients, "cores": os.cpu_count(),
               "jobs": len(ids), "job_statuses": dict(Counter(statuses.values())), "trials": dict(trials),
               "drain_s": drained, "unfinished": unfinished, "lost_writes": lost,
               "error_samples": load.tally.samples}  # fmt: skip
    print(f"{args.clients} clients for {args.seconds:g} s on {result['store']}, {os.cpu_count()} cores")
    print_table(result)
    print(f"{len(ids)} jobs submitted, ended within {drained:.0f} s of the load: {result['job_statuses']}; "
          f"their trials: {result['trials']}")
    print(f"lost writes: {len(lost)}" + "".join(f"\n  {line}" for line in lost))
    for line in load.tally.samples:
        print(f"  error {line}")
    if "Traceback" in log:
        print(f"the server logged {log.count('Traceback')} tracebacks; the first:\n"
              + log[log.index("Traceback"):][:3000])  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    if sum(row["errors"] for row in result["kinds"].values()) or lost or unfinished:
        print(f"kept {workdir} (its serve.log) to look at")
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
