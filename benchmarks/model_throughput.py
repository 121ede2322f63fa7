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
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.client import CellarClient  # noqa: E402

KEY = "benchmark-key"
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(workdir: Path, workers: int) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {
        **os.environ,
        "CELLAR_DATABASE_URL": f"sqlite:///{workdir / 'cellar.db'}",
        "CELLAR_API_KEY": KEY,
        "CELLAR_RAY_NUM_CPUS": "2",
        "CELLAR_RAY_OBJECT_STORE_MB": "100",
        "CELLAR_MODEL_WORKERS": str(workers),
        "CELLAR_ARTIFACTS_DIR": str(workdir / "artifacts"),
    }
    cli = [sys.executable, "-m", "service.cli"]
    subprocess.run([*cli, "migrate"], cwd=workdir, env=env, check=True, capture_output=True)
    log = open(workdir / "serve.log", "ab")  # noqa: SIM115 - open for the server's life
    process = subprocess.Popen([*cli, "serve", "--port", str(port)], cwd=workdir, env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"cellar serve exited; see {workdir / 'serve.log'}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).json()["executor"].get("status") == "ok":
                return process, url
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.3)
    raise RuntimeError(f"cellar serve did not become healthy; see {workdir / 'serve.log'}")


def run(workers: int, models: int) -> dict[str, float]:
    bodies = [
        {"nn_code": MLP.replace("WIDTH", str(32 + i)), "task": "img-classification", "dataset": "digits",
         "metric": "acc", "prm": {"lr": 0.05, "momentum": 0.9, "batch": 64, "epoch": 1, "transform": "norm"}}
        for i in range(models)
    ]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="cellar-throughput-") as tmp:
        process, url = _serve(Path(tmp), workers)
        try:
            with CellarClient(url, KEY) as client:
                started = time.monotonic()
                ids = [s["id"] for s in client.submit_models(bodies)]
                done = list(client.as_completed(ids))
                wall = time.monotonic() - started
        finally:
            process.terminate()
            process.wait(60)
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
