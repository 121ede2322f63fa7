"""Cellar's own cost per trial: K small NB-201 trials through the whole service against the same K
trainings in a bare loop, side by side in one run.

Service: a real ``cellar serve`` (SQLite store in a temporary folder, local Ray with 2 CPUs) runs
one job of K random NB-201 cells on digits (``parallelism`` at a time, one thread per trial, no
result cache), timed from ``POST /v1/jobs`` to the job's end as a client sees it (polling every 50 ms).
That wall time holds everything Cellar adds: HTTP, the job manager, Optuna's ask and tell, the store
writes, Ray's scheduling and the worker's reports.

Bare loop: the same K trainings (each trained trial's code, ``prm``, seeds and split as the service
stored them) run by ``workers.runner.TrialRunner`` in this process, one after another, with the
same threads: set-up, the epochs, the test split. With ``parallelism`` above 1 the bare loop's
time is divided by it, the best any scheduler could do on free cores.

Printed: both wall times, their ratio, and Cellar's milliseconds per trial ((service - bare) / K).
Anchors from elsewhere: Ray Tune adds about 140 ms per trial (10,000 one-second trials on 16 CPUs:
715 s against 625 s); Optuna's RDB storage about 120 ms per trial on MySQL.

    .venv/bin/python benchmarks/overhead.py                    # K=40, 1 epoch, about 2 minutes
    .venv/bin/python benchmarks/overhead.py --trials 100 --epochs 2 --parallelism 2
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import datetime
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
    trials: int, epochs: int, parallelism: int, **settings: str
) -> tuple[float, list[dict[str, Any]], dict[str, Any]]:
    """(wall seconds from the job's POST to its end, the trained trials with their code, the job);
    ``settings`` go to the server's environment (``CELLAR_RAY_ADDRESS``: join a cluster)."""
    with tempfile.TemporaryDirectory(prefix="cellar-overhead-") as tmp:
        with serving(Path(tmp), **settings) as url, CellarClient(url, KEY) as client:
            started = time.monotonic()
            job = client.submit_job(job_body(trials, epochs, parallelism))
            final = client.wait(job["id"], interval=0.05)
            wall = time.monotonic() - started
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
    """Seconds to train the same trials in this process with Cellar's trial runner, no service."""
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
    args = parser.parse_args(argv)
    service_s, trained, job = through_service(args.trials, args.epochs, args.parallelism)
    bare_s = bare_loop(trained, args.epochs) / args.parallelism
    k = len(trained)
    print(f"{k} NB-201 trials (channels 4, 1 cell per stage) on digits, {args.epochs} epoch(s) each, "
          f"parallelism {args.parallelism}, 1 thread per trial, {os.cpu_count()} cores")  # fmt: skip
    print(f"{'':>8}  {'wall s':>7}  {'s/trial':>7}")
    print(f"{'bare':>8}  {bare_s:>7.2f}  {bare_s / k:>7.3f}")
    print(f"{'cellar':>8}  {service_s:>7.2f}  {service_s / k:>7.3f}")
    print(f"ratio cellar/bare {service_s / bare_s:.3f}; Cellar's own cost {1000 * (service_s - bare_s) / k:.0f} ms per trial")
    parts = breakdown(job, trained)
    steady = (parts["other trials"] + parts["gaps"]) / (k - 1) - bare_s / k
    print(f"after the first trial (a warm worker): Cellar's own cost {1000 * steady:.0f} ms per trial")
    print("the service's wall time, from the stored timestamps: "
          + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in parts.items())
          + f" (the rest, {service_s - sum(parts.values()):.2f} s: HTTP and the client's polling)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
