"""Submitted models per minute through the queue, on Ray workers, with 1 and with 2 at a time.

For each worker count it starts a real ``cellar serve`` (its own SQLite store and local Ray with
2 CPUs, ``CELLAR_MODEL_WORKERS`` set to the count), submits the same N distinct small models in
one ``POST /v1/submissions`` (an MLP on digits, one epoch, each of another width so that none is a
cache hit), follows them with ``GET /v1/submissions/events`` until all are done, and reports the
wall time from the submission to the last result. Each model trains in its own sandbox process
(start-up, imports, data, checks, one epoch, the test split, code scoring), started from a Ray
worker. Then it prints the ratio of the two rates side by side.

    .venv/bin/python benchmarks/model_throughput.py              # 12 models per run, about 3 minutes
    .venv/bin/python benchmarks/model_throughput.py --models 20 --workers 1,2,4
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._serve import KEY, serving  # noqa: E402
from service.client import CellarClient  # noqa: E402
MLP = '''
import torch
from torch import nn


def supported_hyperparameters():
    return {"lr", "momentum"}


class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.device = device
        features = 1
        for size in in_shape[1:]:
            features *= size
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(features, WIDTH), nn.ReLU(), nn.Linear(WIDTH, out_shape[0]))

    def forward(self, x):
        return self.body(x)

    def train_setup(self, prm):
        self.to(self.device)
        self.criterion = nn.CrossEntropyLoss()
        self.optimizer = torch.optim.SGD(self.parameters(), lr=prm["lr"], momentum=prm["momentum"])

    def learn(self, train_data):
        self.train()
        for inputs, labels in train_data:
            self.optimizer.zero_grad()
            loss = self.criterion(self(inputs), labels)
            loss.backward()
            self.optimizer.step()
'''


def run(workers: int, models: int) -> dict[str, float]:
    bodies = [
        {"nn_code": MLP.replace("WIDTH", str(32 + i)), "task": "img-classification", "dataset": "digits",
         "metric": "acc", "prm": {"lr": 0.05, "momentum": 0.9, "batch": 64, "epoch": 1, "transform": "norm"}}
        for i in range(models)
    ]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="cellar-throughput-") as tmp:
        with serving(Path(tmp), CELLAR_MODEL_WORKERS=str(workers)) as url, CellarClient(url, KEY) as client:
            started = time.monotonic()
            ids = [s["id"] for s in client.submit_models(bodies)]
            done = list(client.as_completed(ids))
            wall = time.monotonic() - started
    failed = [d["result"]["failure"] for d in done if d["result"]["status"] != "ok"]
    if failed:
        raise RuntimeError(f"{len(failed)} models failed: {failed[:2]}")
    each = [
        (datetime.fromisoformat(d["finished_at"]) - datetime.fromisoformat(d["started_at"])).total_seconds() for d in done
    ]
    return {"wall_s": wall, "per_min": 60 * models / wall, "model_s": statistics.median(each)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=12, help="models per run (default 12)")
    parser.add_argument("--workers", default="1,2", help="worker counts to compare, the first is the baseline")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.workers.split(",")]
    results = {count: run(count, args.models) for count in counts}
    base = results[counts[0]]["per_min"]
    print(f"{args.models} models, MLP on digits, 1 epoch each, local Ray with 2 CPUs, {os.cpu_count()} cores")
    print(f"{'workers':>7}  {'wall s':>7}  {'models/min':>10}  {'median s/model':>14}  {'ratio':>6}")
    for count in counts:
        r = results[count]
        print(f"{count:>7}  {r['wall_s']:>7.1f}  {r['per_min']:>10.1f}  {r['model_s']:>14.1f}  {r['per_min'] / base:>6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
