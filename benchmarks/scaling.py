"""Throughput with 1 and with 2 trials at a time on this machine: the same job (K random NB-201
cells on digits, the same seed, so the same cells) through a real ``cellar serve`` with
``parallelism`` 1, then 2, side by side in one run; trials per minute and the ratio (goal: 1.8 or
more on 2 cores). Each trial is one torch thread, so 2 at a time can use both cores. Each job is
sent once its server has been up ``--warm-s`` seconds, its workers warm (``overhead.py``).

With ``--two-nodes`` it then runs the job 2 at a time once more on a two-node Ray cluster on this
machine (``ray start`` head on 127.0.0.2 and a second node on 127.0.0.3, one CPU each, joined by
the server through ``CELLAR_RAY_ADDRESS``): the same two cores, so the row shows what going through
a cluster costs (a second raylet, a worker and a dataset per node), not more compute.

    .venv/bin/python benchmarks/scaling.py                 # K=60, 2 epochs, about 2 minutes
    .venv/bin/python benchmarks/scaling.py --trials 100 --parallelism 1,2
    .venv/bin/python benchmarks/scaling.py --two-nodes
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.overhead import breakdown, through_service  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=60, help="K, trials in each job (default 60)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per trial (default 2)")
    parser.add_argument("--parallelism", default="1,2", help="trials at a time to compare; the first is the baseline")
    parser.add_argument("--two-nodes", action="store_true", help="also 2 at a time on a two-node Ray cluster")
    parser.add_argument("--warm-s", type=float, default=10.0,
                        help="seconds between the server's first answer and the job (default 10; see overhead.py)")  # fmt: skip
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.parallelism.split(",")]
    rows = []
    for count in counts:
        wall, trained, job = through_service(args.trials, args.epochs, count, warm_s=args.warm_s)
        first = breakdown(job, trained)["first trial"]
        rows.append((str(count), len(trained), wall, 60 * len(trained) / wall, first))
    if args.two_nodes:
        from tests.service.raycluster import RAY_ENV, two_nodes

        with tempfile.TemporaryDirectory(prefix="cellar-nodes-") as logs, two_nodes(Path(logs)) as (address, _):
            wall, trained, job = through_service(
                args.trials, args.epochs, 2, warm_s=args.warm_s, CELLAR_RAY_ADDRESS=address, **RAY_ENV
            )
        first = breakdown(job, trained)["first trial"]
        rows.append(("2, 2 nodes", len(trained), wall, 60 * len(trained) / wall, first))
    base = rows[0][3]
    print(f"{args.trials} random NB-201 cells (channels 4, 1 cell per stage) on digits, {args.epochs} epoch(s) each, "
          f"1 thread per trial, local Ray with 2 CPUs, {os.cpu_count()} cores")  # fmt: skip
    print(f"{'at a time':>10}  {'trained':>7}  {'wall s':>7}  {'trials/min':>10}  {'ratio':>6}  {'first trial s':>13}")
    for count, trained, wall, per_min, first in rows:
        print(f"{count:>10}  {trained:>7}  {wall:>7.1f}  {per_min:>10.1f}  {per_min / base:>6.2f}  {first:>13.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
