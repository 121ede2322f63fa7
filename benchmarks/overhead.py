"""Cellar's own cost per trial: K small NB-201 trials through the whole service against the same K
trainings in a bare loop, side by side in one run.

Service: a real ``cellar serve`` (SQLite store in a temporary folder, local Ray with 2 CPUs) runs
one job of K random NB-201 cells on digits (``parallelism`` at a time, one thread per trial, no
result cache). Its wall time, from the sending of ``POST /v1/jobs`` to the job's end as the store
records it (the client polls every 0.5 s and reads that end), holds everything Cellar adds: HTTP,
the job manager, Optuna's ask and tell, the store writes, Ray's scheduling, the worker's reports and
the weights it keeps (``keep_weights``, on by default).

The job is submitted once the server has been up ``--warm-s`` seconds (10 by default; 0 measures a
job sent the moment the server answers): the local Ray's idle workers import torch and the trial
runner as the server starts (``workers/preload.py``), so a job on a server that has been up a few
seconds finds them warm.

Bare loop: the same K trainings (each trained trial's code, ``prm``, seeds and split as the service
stored them) run by ``workers.runner.TrialRunner`` in a fresh Python process, one after another,
with the same threads and the environment Ray gives its workers (``OMP_NUM_THREADS`` = the
trial's CPUs, the same modules imported first): set-up, the epochs, the test split. With
``parallelism`` above 1 the bare loop's time is divided by it, the best any scheduler could do on
free cores.

Both run ``--repeat`` times (3), each service run on a fresh server, the bare loop right after it.
Printed per run: both wall times, their ratio, Cellar's milliseconds per trial ((service - bare) /
K) and the first trial's seconds; then the median run's breakdown from the stored timestamps.
Anchors from elsewhere: Ray Tune adds about 140 ms per trial (10,000 one-second trials on 16 CPUs:
715 s against 625 s); Optuna's RDB storage about 120 ms per trial on MySQL.

    .venv/bin/python benchmarks/overhead.py                    # K=40, 1 epoch, 3 runs: about 3 minutes
    .venv/bin/python benchmarks/overhead.py --trials 100 --epochs 2 --parallelism 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._serve import KEY, serving  # noqa: E402
from service.client import CellarClient  # noqa: E402


def job_body(trials: int, epochs: int, parallelism: int) -> dict[str, Any]:
    return {
        "name": "overhead",
        "search_space": {"kind": "nb201", "params": {"channels": 4, "cells_per_stage": 1}},
        "dataset": "digits",
        "strategy": {"sampler": "random", "seed": 0, "cache": False},
        "budget": {"max_trials": trials, "epochs": epochs, "parallelism": parallelism},
    }


def through_service(
    trials: int, epochs: int, parallelism: int, *, warm_s: float = 0.0, **settings: str
) -> tuple[float, list[dict[str, Any]], dict[str, Any]]:
    """(wall seconds from the job's POST to its end, the trained trials with their code, the job),
    the job sent ``warm_s`` seconds after the server answers; ``settings`` go to the server's
    environment (``CELLAR_RAY_ADDRESS``: join a cluster)."""
    with tempfile.TemporaryDirectory(prefix="cellar-overhead-") as tmp:
        with serving(Path(tmp), **settings) as url, CellarClient(url, KEY) as client:
            time.sleep(warm_s)
            sent = datetime.now(timezone.utc)
            job = client.submit_job(job_body(trials, epochs, parallelism))
            # polled slowly, timed by the stored end: a client asking for the job every few
            # milliseconds would take the server's CPU (and its GIL) from the job it measures
            final = client.wait(job["id"], interval=0.5)
            wall = (datetime.fromisoformat(final["finished_at"]) - sent).total_seconds()
            if final["status"] != "succeeded":
                raise RuntimeError(f"the job ended {final['status']}: {final.get('error')}")
            trained = [t for t in client.trials(job["id"]) if t["state"] == "complete" and t["duplicate_of"] is None]
            detailed = [client.trial(t["id"]) for t in trained]
    return wall, detailed, final


def _seconds(a: str, b: str) -> float:
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


def breakdown(job: dict[str, Any], trials: list[dict[str, Any]]) -> dict[str, float]:
    """Where the service's time went, from the stored timestamps (seconds): from the job's creation
    to its first trial's start, the trials from start to end as stored (set-up, epochs, test split
    and the worker's reports), the gaps between one trial's end and the next one's start (with
    parallelism 1: the manager's tell, ask, store writes and the hand-over to Ray), and from the last
    trial's end to the job's."""
    ordered = sorted(trials, key=lambda t: t["started_at"])
    spans = [_seconds(t["started_at"], t["finished_at"]) for t in ordered]
    return {
        "before": _seconds(job["created_at"], ordered[0]["started_at"]),
        # a fresh Ray worker imports torch and loads the dataset inside the first trial
        "first trial": spans[0],
        "other trials": sum(spans[1:]),
        "gaps": sum(_seconds(a["finished_at"], b["started_at"]) for a, b in zip(ordered, ordered[1:])),
        "after": _seconds(max(t["finished_at"] for t in ordered), job["finished_at"]),
    }


def bare_loop(trials: list[dict[str, Any]], epochs: int) -> float:
    """Seconds to train the same trials with Cellar's trial runner, no service, in a fresh process
    set up as a Ray worker is (one OpenMP thread per CPU of the trial, torch imported first): in
    this process, without ``OMP_NUM_THREADS``, the same loop ran 10-15 % slower here."""
    with tempfile.TemporaryDirectory(prefix="cellar-bare-") as tmp:
        path = Path(tmp) / "trials.json"
        path.write_text(json.dumps({"trials": trials, "epochs": epochs}))
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        done = subprocess.run([sys.executable, __file__, "--bare", str(path)], env=env, check=True,
                              capture_output=True, text=True)  # fmt: skip
    return float(done.stdout.split()[-1])


def _bare_loop_here(trials: list[dict[str, Any]], epochs: int) -> float:
    import workers.preload  # noqa: F401 - what a Ray worker of the service imports before its first trial
    from workers.protocol import TrialPayload
    from workers.runner import TrialRunner

    runner = TrialRunner(threads=1)
    payloads = [
        TrialPayload(
            trial_id=t["id"], job_id=t["job_id"], number=t["number"], nn_name=t["nn"], nn_code=t["nn_code"],
            dataset="digits", prm=t["prm"], epochs=epochs, seed=t["seed"], split_seed=t["seed"], threads=1,
            arch=t["arch"], search_space="nb201",  # the job's split: its seed, the default fractions
        )
        for t in trials
    ]  # fmt: skip
    runner.load(payloads[0])  # a Ray worker loads its dataset once, too
    started = time.monotonic()
    for payload in payloads:
        runner.setup(payload.to_dict())
        for _ in range(epochs):
            runner.train_epoch()
        runner.finish()
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=40, help="K, trials in the job (default 40)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per trial (default 1)")
    parser.add_argument("--parallelism", type=int, default=1, help="trials at a time in the service (default 1)")
    parser.add_argument("--warm-s", type=float, default=10.0,
                        help="seconds between the server's first answer and the job (default 10)")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=3, help="runs of both, the median shown (default 3)")
    parser.add_argument("--bare", type=Path, help=argparse.SUPPRESS)  # the bare loop's own process
    args = parser.parse_args(argv)
    if args.bare:
        given = json.loads(args.bare.read_text())
        print(_bare_loop_here(given["trials"], given["epochs"]))
        return 0
    runs = []
    for _ in range(args.repeat):  # each on a fresh server; the bare loop right after it
        service_s, trained, job = through_service(args.trials, args.epochs, args.parallelism, warm_s=args.warm_s)
        runs.append((service_s, bare_loop(trained, args.epochs) / args.parallelism, trained, job))
    k = len(runs[0][2])
    print(f"{k} NB-201 trials (channels 4, 1 cell per stage) on digits, {args.epochs} epoch(s) each, "
          f"parallelism {args.parallelism}, 1 thread per trial, {os.cpu_count()} cores; "
          f"the job sent {args.warm_s:g} s after the server answered")  # fmt: skip
    print(f"{'run':>4}  {'bare s':>7}  {'cellar s':>8}  {'ratio':>6}  {'ms/trial':>8}  {'first trial s':>13}")
    for index, (service_s, bare_s, trained, job) in enumerate(runs, 1):
        first = breakdown(job, trained)["first trial"]
        print(f"{index:>4}  {bare_s:>7.2f}  {service_s:>8.2f}  {service_s / bare_s:>6.3f}  "
              f"{1000 * (service_s - bare_s) / k:>8.1f}  {first:>13.2f}")  # fmt: skip
    service_s, bare_s, trained, job = sorted(runs, key=lambda run: run[0] / run[1])[len(runs) // 2]
    print(f"median run: ratio cellar/bare {service_s / bare_s:.3f}; "
          f"Cellar's own cost {1000 * (service_s - bare_s) / k:.0f} ms per trial")  # fmt: skip
    parts = breakdown(job, trained)
    print("its wall time, from the stored timestamps: "
          + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in parts.items())
          + f" (the rest, {service_s - sum(parts.values()):.2f} s: HTTP and the POST)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
