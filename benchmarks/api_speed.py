"""Cellar's read API beside a bare FastAPI app of the same routes, in one run (issue 15).

It starts a real ``cellar serve`` (``benchmarks/_serve.py``: a SQLite file, or ``--postgres`` a
fresh PostgreSQL database that is dropped after), fills its store with ``--jobs`` simulated jobs
of ``--trials`` trials each on the shipped NB-201 table (10,000 trials by default) and the README's
first search (8 trials trained for real, so that ``/v1/data`` has rows), and records Cellar's
answer to each read below. ``benchmarks/_bare.py`` then serves those same bytes from memory on the
same routes (FastAPI and uvicorn, nothing else). Both are measured the same way:

- **one at a time**: each read ``--single`` times in a row from one client; the median is the
  server's time for it plus the client's loopback round trip, which the bare app's row shows;
- **under load**: ``--clients`` clients (an ``aiohttp`` session each, or ``--client httpx`` an
  ``httpx.AsyncClient``, on one asyncio loop in this process), each sending its next read as soon
  as the last is answered, for ``--seconds``; requests per second, median and p99, and the client's
  own CPU time per answer (the client shares the machine's cores with the server, so a costly
  client lowers both apps' figures; earlier rounds used httpx);
- **while jobs train** (unless ``--no-training``): the same load, while a real job trains two
  trials at a time on the server's Ray workers (both cores of a 2-core machine), bare app and
  Cellar alike.

The reads: ``/healthz``; the metadata (``/v1/search-spaces``, ``/v1/strategies``,
``/v1/datasets``); ``/v1/jobs`` (a page of 20); a job (``/v1/jobs/{id}``), one trial of it
(``/v1/jobs/{id}/trials/{n}``) and the README job's trials (``/v1/jobs/{id}/trials``, 8 trials);
``/v1/data`` (a page of 20 rows). Under load each client draws them evenly by kind.

    .venv/bin/python benchmarks/api_speed.py                     # SQLite, about 3 minutes on 2 cores
    .venv/bin/python benchmarks/api_speed.py --postgres          # the same on PostgreSQL
    .venv/bin/python benchmarks/api_speed.py --seconds 5 --jobs 2 --trials 100 --no-training   # a quick try
    .venv/bin/python benchmarks/api_speed.py --profile profile.txt   # py-spy on the server under load
    .venv/bin/python benchmarks/api_speed.py --read-cache-mb 0       # every read asks the store

``--profile`` samples the server process with py-spy (``pip install py-spy``) during an extra load
phase and writes the functions that hold the most samples, inclusive and by themselves.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._serve import KEY, free_port, serving  # noqa: E402
from benchmarks.load import ADMIN_URL, percentile  # noqa: E402

TABLE_FILE = ROOT / "benchmarks" / "tables" / "nb201-c4-4ops-digits.jsonl.xz"
TABLE = "nb201-c4-4ops-digits"
AUTH = {"Authorization": f"Bearer {KEY}"}
README_JOB = {
    "name": "nb201-digits",
    "search_space": {"kind": "nb201", "params": {"channels": 8, "cells_per_stage": 1}},
    "dataset": "digits",
    "strategy": {"sampler": "tpe", "seed": 0},
    "budget": {"max_trials": 8, "epochs": 2, "parallelism": 2},
}
#: trains for minutes, two trials at a time: the "while jobs train" phase
TRAINING_JOB = {
    "name": "training-load",
    "search_space": {"kind": "nb201", "params": {"channels": 16, "cells_per_stage": 5}},
    "dataset": "digits",
    "strategy": {"sampler": "random", "seed": 1, "cache": False},
    "budget": {"max_trials": 100, "epochs": 200, "parallelism": 2},
}


# ---- the store ------------------------------------------------------------------------------------
@contextmanager
def database(postgres: str | None, workdir: Path) -> Iterator[str]:
    if postgres is None:
        yield f"sqlite:///{workdir / 'cellar.db'}"
        return
    name = f"cellar_speed_{os.getpid()}"
    admin = sa.create_engine(postgres, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as db:
            db.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield sa.make_url(postgres).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as db:
            db.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def wait(http: httpx.Client, job_id: int, timeout: float = 900) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (job := http.get(f"/v1/jobs/{job_id}").raise_for_status().json())["status"] not in ("succeeded", "failed", "cancelled"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job_id} did not end within {timeout:g} s: {job['status']}")
        time.sleep(0.5)
    return job


def fill(url: str, database_url: str, workdir: Path, jobs: int, trials: int) -> tuple[list[int], int]:
    """(the simulated jobs' ids, the README job's id) once all have ended."""
    env = {**os.environ, "CELLAR_DATABASE_URL": database_url}
    subprocess.run([sys.executable, "-m", "service.cli", "table", "import", str(TABLE_FILE)], cwd=workdir, env=env,
                   check=True, capture_output=True)  # fmt: skip
    with httpx.Client(base_url=url, headers=AUTH, timeout=120) as http:
        ids = []
        for seed in range(jobs):
            body = {"name": f"simulated-{seed}", "search_space": {"kind": "nb201"}, "dataset": "digits",
                    "executor": {"table": TABLE}, "strategy": {"sampler": "evolution", "seed": seed},
                    "budget": {"max_trials": trials}}  # fmt: skip
            ids.append(http.post("/v1/jobs", json=body).raise_for_status().json()["id"])
        readme = http.post("/v1/jobs", json=README_JOB).raise_for_status().json()["id"]
        for job_id in [*ids, readme]:
            job = wait(http, job_id)
            if job["status"] != "succeeded":
                raise RuntimeError(f"job {job_id} {job['status']}: {job['error']}")
    return ids, readme


def reads(ids: list[int], readme: int, trials: int) -> dict[str, list[str]]:
    """kind -> the paths (with queries) a client may read of that kind."""
    rng = random.Random(0)
    jobs = [f"/v1/jobs/{i}" for i in ids]
    return {
        "healthz": ["/healthz"],
        "metadata": ["/v1/search-spaces", "/v1/strategies", "/v1/datasets"],
        "job list": ["/v1/jobs?limit=20", "/v1/jobs?limit=20&offset=20", "/v1/jobs?limit=10&status=succeeded"],
        "job": jobs,
        "trial": [f"{rng.choice(jobs)}/trials/{rng.randrange(trials)}" for _ in range(50)],
        "trials (8)": [f"/v1/jobs/{readme}/trials"],
        "data": ["/v1/data?dataset=digits&max_rows=20", "/v1/data?task=img-classification&max_rows=20&only_best_accuracy=true"],
    }


def record(url: str, kinds: dict[str, list[str]]) -> dict[str, tuple[int, str]]:
    with httpx.Client(base_url=url, timeout=120) as http:
        answers = {}
        for paths in kinds.values():
            for path in paths:
                response = http.get(path)
                if response.status_code != 200:
                    raise RuntimeError(f"GET {path}: {response.status_code} {response.text[:300]}")
                answers[path] = (response.status_code, response.text)
    return answers


@contextmanager
def bare_app(workdir: Path, answers: dict[str, tuple[int, str]]) -> Iterator[str]:
    file = workdir / "answers.json"
    file.write_text(json.dumps(answers))
    port = free_port()
    env = {**os.environ, "CELLAR_BARE_ANSWERS": str(file), "PYTHONPATH": str(ROOT)}
    with open(workdir / "bare.log", "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "uvicorn", "benchmarks._bare:app", "--port", str(port)],
                                   env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/healthz", timeout=2)
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the bare app did not start; see {workdir / 'bare.log'}") from None
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(30)


# ---- measuring ------------------------------------------------------------------------------------
def single(url: str, kinds: dict[str, list[str]], times: int) -> dict[str, float]:
    """kind -> the median milliseconds of ``times`` requests in a row, from one client."""
    result = {}
    with httpx.Client(base_url=url, timeout=60) as http:
        for kind, paths in kinds.items():
            took = []
            for index in range(times):
                started = time.perf_counter()
                http.get(paths[index % len(paths)]).raise_for_status()
                took.append(1000 * (time.perf_counter() - started))
            result[kind] = statistics.median(took)
    return result


async def _load(url: str, kinds: dict[str, list[str]], clients: int, seconds: float, library: str) -> dict[str, Any]:
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: list[str] = []
    names = list(kinds)
    deadline = 0.0

    async def client(rng: random.Random) -> None:
        async with _session(library, url) as get:
            while time.monotonic() < deadline:
                kind = rng.choice(names)
                path = rng.choice(kinds[kind])
                started = time.perf_counter()
                try:
                    status, text = await get(path)
                except (httpx.HTTPError, aiohttp.ClientError, TimeoutError) as error:
                    errors.append(f"GET {path}: {type(error).__name__}: {error}")
                    continue
                if status != 200:
                    errors.append(f"GET {path}: {status} {text[:200]}")
                    continue
                latencies[kind].append(1000 * (time.perf_counter() - started))

    deadline = time.monotonic() + seconds
    started, cpu = time.monotonic(), time.process_time()
    await asyncio.gather(*(client(random.Random(i)) for i in range(clients)))
    wall, cpu = time.monotonic() - started, time.process_time() - cpu
    every = [value for values in latencies.values() for value in values]
    return {
        "requests_per_s": len(every) / wall,
        "p50_ms": percentile(every, 50),
        "p99_ms": percentile(every, 99),
        "client_cpu_ms": 1000 * cpu / max(len(every), 1),  # the client's own CPU time per answer
        "by_kind": {kind: {"p50_ms": percentile(v, 50), "p99_ms": percentile(v, 99), "count": len(v)}
                    for kind, v in latencies.items()},  # fmt: skip
        "errors": len(errors),
        "error_samples": errors[:5],
    }


@asynccontextmanager
async def _session(library: str, url: str) -> AsyncIterator[Callable[[str], Awaitable[tuple[int, str]]]]:
    """One client's keep-alive connection: ``get(path)`` answers its status and body."""
    if library == "httpx":
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:

            async def get(path: str) -> tuple[int, str]:
                response = await http.get(path)
                return response.status_code, response.text

            yield get
        return
    async with aiohttp.ClientSession(url, timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def get(path: str) -> tuple[int, str]:
            async with session.get(path) as response:
                return response.status, await response.text()

        yield get


def load(url: str, kinds: dict[str, list[str]], clients: int, seconds: float, library: str = "aiohttp") -> dict[str, Any]:
    return asyncio.run(_load(url, kinds, clients, seconds, library))


@contextmanager
def training(url: str) -> Iterator[int]:
    """A real job training two trials at a time until the block ends (then cancelled)."""
    with httpx.Client(base_url=url, headers=AUTH, timeout=60) as http:
        job_id = http.post("/v1/jobs", json=TRAINING_JOB).raise_for_status().json()["id"]
        deadline = time.monotonic() + 120
        while http.get(f"/v1/jobs/{job_id}").json()["counts"]["running"] < 2:
            if time.monotonic() > deadline:
                raise RuntimeError("the training job never ran two trials")
            time.sleep(0.5)
        time.sleep(3)  # past set-up: the workers are training
        try:
            yield job_id
        finally:
            http.post(f"/v1/jobs/{job_id}/cancel")


def server_pid(url: str) -> int:
    import psutil

    port = int(url.rsplit(":", 1)[1])
    for connection in psutil.net_connections("tcp"):
        if connection.laddr and connection.laddr.port == port and connection.status == psutil.CONN_LISTEN:
            return int(connection.pid)
    raise RuntimeError(f"no process listens on {url}")


def profile(url: str, kinds: dict[str, list[str]], clients: int, seconds: float, out: Path, library: str) -> None:
    """py-spy samples the server (every thread, idle ones left out) while the clients load it."""
    raw = out.with_suffix(".raw")
    spy = subprocess.Popen(["py-spy", "record", "-p", str(server_pid(url)), "-d", str(int(seconds)), "-r", "200",
                            "-f", "raw", "-o", str(raw), "--nonblocking"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    time.sleep(1)
    load(url, kinds, clients, seconds, library)
    spy.wait(60)
    inclusive: dict[str, int] = defaultdict(int)
    own: dict[str, int] = defaultdict(int)
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [frame.split(" (")[0] + " (" + frame.split(" (")[1].split(":")[0].split("/site-packages/")[-1] + ")"
                  if " (" in frame else frame for frame in stack.split(";")]  # fmt: skip
        total += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            inclusive[frame] += int(count)
    lines = [f"{total} samples of the server's busy threads, {clients} clients for {seconds:g} s", "", "inclusive:"]
    lines += [f"{100 * n / total:6.1f}%  {frame}" for frame, n in sorted(inclusive.items(), key=lambda kv: -kv[1])[:60]]
    lines += ["", "self:"]
    lines += [f"{100 * n / total:6.1f}%  {frame}" for frame, n in sorted(own.items(), key=lambda kv: -kv[1])[:40]]
    out.write_text("\n".join(lines) + "\n")
    print(f"profile: {out}")


def load_average() -> float:
    return os.getloadavg()[0]


# ---- the report -----------------------------------------------------------------------------------
def report(result: dict[str, Any]) -> None:
    print(f"store: {result['store']}, {result['trials_stored']} trials; {result['clients']} clients; "
          f"{os.cpu_count()} cores; load average before: {result['load_before']:.2f}")  # fmt: skip
    if result.get("read_cache_mb") is not None:
        print(f"Cellar's read cache: CELLAR_READ_CACHE_MB={result['read_cache_mb']}")
    print("\none request at a time: median ms (client round trip included)")
    print(f"{'read':<12} {'bare':>8} {'cellar':>8} {'ratio':>7}")
    for kind, bare in result["single"]["bare"].items():
        cellar = result["single"]["cellar"][kind]
        print(f"{kind:<12} {bare:>8.2f} {cellar:>8.2f} {cellar / bare:>7.1f}")
    print(f"\n{result['clients']} {result['client']} clients, {result['seconds']:g} s each: requests/s, median and p99 ms, "
          "the client's CPU ms per answer")
    print(f"{'phase':<16} {'app':<7} {'req/s':>8} {'p50':>8} {'p99':>8} {'client':>7} {'errors':>7} {'of bare':>8}")
    for phase, apps in result["load"].items():
        for app in ("bare", "cellar"):
            row = apps[app]
            share = row["requests_per_s"] / apps["bare"]["requests_per_s"]
            print(f"{phase:<16} {app:<7} {row['requests_per_s']:>8.0f} {row['p50_ms']:>8.1f} {row['p99_ms']:>8.1f} "
                  f"{row['client_cpu_ms']:>7.2f} {row['errors']:>7} {share:>8.2f}")  # fmt: skip
    print("\nCellar under load, by read: p50 / p99 ms")
    for phase, apps in result["load"].items():
        print(f"  {phase}: " + ", ".join(f"{k} {v['p50_ms']:.0f}/{v['p99_ms']:.0f}" for k, v in apps["cellar"]["by_kind"].items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--client", choices=("aiohttp", "httpx"), default="aiohttp",
                        help="the load clients' HTTP library (default aiohttp, which costs the shared cores less)")
    parser.add_argument("--seconds", type=float, default=20, help="each load phase (default 20)")
    parser.add_argument("--single", type=int, default=100, help="requests of each read one at a time (default 100)")
    parser.add_argument("--jobs", type=int, default=20, help="simulated jobs in the store (default 20)")
    parser.add_argument("--trials", type=int, default=500, help="trials per simulated job (default 500)")
    parser.add_argument("--postgres", nargs="?", const=ADMIN_URL, default=None,
                        help=f"a fresh PostgreSQL database on this server (default {ADMIN_URL}) instead of SQLite")  # fmt: skip
    parser.add_argument("--no-training", action="store_true", help="skip the phase while a job trains")
    parser.add_argument("--read-cache-mb", type=int, default=None,
                        help="the server's CELLAR_READ_CACHE_MB (default: the setting's default; 0: every read asks the store)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--profile", type=Path, help="sample the server with py-spy under load; the summary here")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="cellar-speed-"))
    result: dict[str, Any] = {"store": "postgresql" if args.postgres else "sqlite", "clients": args.clients,
                              "seconds": args.seconds, "load_before": load_average(), "client": args.client}  # fmt: skip
    result["read_cache_mb"] = args.read_cache_mb
    cache = {} if args.read_cache_mb is None else {"CELLAR_READ_CACHE_MB": str(args.read_cache_mb)}
    with database(args.postgres, workdir) as url, serving(workdir, database_url=url, **cache) as cellar:
        ids, readme = fill(cellar, url, workdir, args.jobs, args.trials)
        result["trials_stored"] = args.jobs * args.trials + 8
        kinds = reads(ids, readme, args.trials)
        answers = record(cellar, kinds)
        with bare_app(workdir, answers) as bare:
            result["single"] = {"bare": single(bare, kinds, args.single), "cellar": single(cellar, kinds, args.single)}
            phase = (kinds, args.clients, args.seconds, args.client)
            result["load"] = {"idle": {"bare": load(bare, *phase), "cellar": load(cellar, *phase)}}
            if args.profile:
                profile(cellar, kinds, args.clients, args.seconds, args.profile, args.client)
            if not args.no_training:
                with training(cellar):
                    result["load"]["jobs training"] = {"bare": load(bare, *phase), "cellar": load(cellar, *phase)}
    report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    failed = sum(apps[app]["errors"] for apps in result["load"].values() for app in apps)
    if failed:
        for apps in result["load"].values():
            for line in apps["cellar"]["error_samples"] + apps["bare"]["error_samples"]:
                print(f"  error {line}")
        print(f"kept {workdir} (serve.log, bare.log)")
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
