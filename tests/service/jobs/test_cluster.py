"""Two real Ray nodes on this machine, and a real ``cellar serve`` that joins them through
``CELLAR_RAY_ADDRESS``.

The head listens on 127.0.0.2, the second node on 127.0.0.3: distinct loopback addresses keep two
nodes on one host apart (Ray rewrites plain 127.0.0.1 to the machine's address). Each node has one
CPU, so two 1-CPU trials at a time can only run on different nodes. The second node also declares
one GPU that is not there (Ray schedules on declared resources, it never checks them), for the
fractional-GPU checks; those never let torch touch CUDA.

The cluster keeps its files in a ``--temp-dir`` of its own (nothing in ``/tmp/ray``, where
``ray.init()`` elsewhere looks for a cluster to join). Each ``ray start --block`` runs in its own
session and is stopped by its PID, then whatever it started, by PID: never ``ray stop``, which stops
every Ray on the machine, other tests' and other people's included.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray
import torch

from tests.service.bodies import job_body
from tests.service.server import KEY, Server, free_port
from tests.workers.test_runner import RESNET, payload
from workers.executor import ExecutorEvent, TrialResources
from workers.ray_executor import RayExecutor
from workers.runner import TrialRunner

pytestmark = [pytest.mark.ray, pytest.mark.slow]

HEAD_IP, WORKER_IP = "127.0.0.2", "127.0.0.3"
AUTH = {"Authorization": f"Bearer {KEY}"}
SMALL_NB201 = {"kind": "nb201", "params": {"channels": 4, "cells_per_stage": 1}}
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
OBJECT_STORE = str(100 * 1024 * 1024)


# ---- processes ---------------------------------------------------------------------------------
def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) of a live process, None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the name in parentheses may hold spaces
    return int(fields[1]), int(fields[19])


def _descendants(root: int) -> dict[int, int]:
    """Every process below ``root`` (Ray's workers start their own process groups), with its start time."""
    children: dict[int, list[int]] = {}
    started: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            children.setdefault(stat[0], []).append(int(entry.name))
            started[int(entry.name)] = stat[1]
    found: dict[int, int] = {}
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        if pid in started and pid not in found:
            found[pid] = started[pid]
            todo.extend(children.get(pid, []))
    return found


class RayNode:
    """One ``ray start --block`` process: a Ray node that lives exactly as long as it does."""

    def __init__(self, name: str, args: list[str], log_dir: Path) -> None:
        self.log = log_dir / f"ray-{name}.log"
        ray_cli = Path(sys.executable).with_name("ray")
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [str(ray_cli), "start", "--block", "--disable-usage-stats", *args],
                env={**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, **RAY_ENV},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: signals to the test never reach it
            )

    def wait_started(self, deadline: float) -> None:
        while "Ray runtime started" not in self.log.read_text(errors="replace"):
            assert self.process.poll() is None, f"ray start exited:\n{self.log.read_text(errors='replace')}"
            assert time.monotonic() < deadline, f"ray start did not finish:\n{self.log.read_text(errors='replace')}"
            time.sleep(0.2)

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM the ``--block`` process (it stops the node's processes), then SIGKILL whatever
        it started that is still there: its process group and every descendant, by PID."""
        pid = self.process.pid
        if self.process.poll() is not None:
            return
        below = _descendants(pid)
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for child, started in below.items():
            stat = _stat(child)
            if stat is not None and stat[1] == started:  # the same process, not a reused PID
                os.kill(child, signal.SIGKILL)


@dataclass
class RayCluster:
    address: str
    nodes: list[RayNode]
    #: a Ray driver in this test process, for the executor-level checks
    executor: RayExecutor
    log_dir: Path


def _wait_for_port(host: str, port: int, node: RayNode, deadline: float) -> None:
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            assert node.process.poll() is None, f"ray start exited:\n{node.log.read_text(errors='replace')}"
            assert time.monotonic() < deadline, f"the Ray head never listened:\n{node.log.read_text(errors='replace')}"
            time.sleep(0.2)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    log_dir = tmp_path_factory.mktemp("cluster")
    # short: Ray's socket paths live under it and a Unix socket path has at most 107 bytes
    temp_dir = tempfile.mkdtemp(prefix="cellar-ray-", dir="/tmp")
    port = free_port()
    address = f"{HEAD_IP}:{port}"
    nodes: list[RayNode] = []
    executor = RayExecutor(address)
    try:
        deadline = time.monotonic() + 90
        # no log monitor (drivers here do not stream worker logs) and no autoscaler monitor (a fixed
        # cluster): fewer Ray processes to start on a small machine
        common = ["--num-cpus=1", f"--object-store-memory={OBJECT_STORE}", "--include-log-monitor=false"]
        head = RayNode(
            "head",
            [
                "--head",
                f"--node-ip-address={HEAD_IP}",
                f"--port={port}",
                "--num-gpus=0",
                "--include-dashboard=false",
                "--no-monitor",
                f"--temp-dir={temp_dir}",
                *common,
            ],
            log_dir,
        )
        nodes.append(head)
        _wait_for_port(HEAD_IP, port, head, deadline)  # the second node may start as soon as GCS listens
        worker = RayNode(
            "worker", [f"--address={address}", f"--node-ip-address={WORKER_IP}", "--num-gpus=1", *common], log_dir
        )
        nodes.append(worker)
        head.wait_started(deadline)
        worker.wait_started(deadline)
        executor.connect()
        while sorted(n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]) != [HEAD_IP, WORKER_IP]:
            assert time.monotonic() < deadline, ray.nodes()
            time.sleep(0.2)
        yield RayCluster(address, nodes, executor, log_dir)
    finally:
        executor.shutdown()
        for node in reversed(nodes):
            node.stop()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def server(cluster: RayCluster) -> Iterator[Server]:
    running = Server(
        cluster.log_dir, f"sqlite:///{cluster.log_dir / 'cellar.db'}", CELLAR_RAY_ADDRESS=cluster.address, **RAY_ENV
    )
    try:
        yield running.start()
    finally:
        running.stop()


# ---- helpers -----------------------------------------------------------------------------------
def node_of(worker: str) -> str:
    """The Ray node's IP in a worker name, ``host/ip:pid``."""
    host_ip, _, pid = worker.rpartition(":")
    assert "/" in host_ip and pid.isdigit(), f"{worker!r} does not name its Ray node"
    return host_ip.split("/", 1)[1]


def submit(server: Server, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{server.url}/v1/jobs", json=body, headers=AUTH, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()


def trials_of(server: Server, job_id: int) -> list[dict[str, Any]]:
    response = httpx.get(f"{server.url}/v1/jobs/{job_id}/trials", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def drive(ex: RayExecutor, epochs: dict[int, int], timeout: float = 120) -> list[ExecutorEvent]:
    """Step trials as the manager does until none is left (slots are released, workers kept)."""
    events: list[ExecutorEvent] = []
    deadline = time.monotonic() + timeout
    while epochs.keys() - {e.trial_id for e in events if e.kind in ("final", "error")}:
        assert time.monotonic() < deadline, [(e.trial_id, e.kind, e.error) for e in events]
        for event in ex.poll(1.0):
            events.append(event)
            if event.kind == "epoch":
                (ex.train_epoch if event.data["epoch"] < epochs[event.trial_id] else ex.finish)(event.trial_id)
            elif event.kind == "final":
                ex.release(event.trial_id)
    return events


def collect(ex: RayExecutor, done: Callable[[list[ExecutorEvent]], bool], timeout: float = 120) -> list[ExecutorEvent]:
    """Poll, advancing nothing, until ``done(events so far)``."""
    events: list[ExecutorEvent] = []
    deadline = time.monotonic() + timeout
    while not done(events):
        assert time.monotonic() < deadline, [(e.trial_id, e.kind, e.error) for e in events]
        events.extend(ex.poll(1.0))
    return events


def wait_until_idle(timeout: float = 60) -> None:
    """Until no worker holds CPU or GPU (a finished job's workers are killed asynchronously)."""
    deadline = time.monotonic() + timeout
    while (free := ray.available_resources()).get("CPU", 0) < 2 or free.get("GPU", 0) < 1:
        assert time.monotonic() < deadline, f"Ray resources still held: only {free} free"
        time.sleep(0.2)


# ---- tests -------------------------------------------------------------------------------------
def test_a_job_runs_its_trials_on_both_nodes(server: Server, cluster: RayCluster) -> None:
    health = httpx.get(f"{server.url}/healthz", timeout=10).json()["executor"]
    assert health["address"] == cluster.address and health["nodes"] == 2 and health["cpus"] == 2
    body = job_body(
        name="two-nodes",
        search_space=SMALL_NB201,
        budget={"max_trials": 4, "epochs": 2, "parallelism": 2},
        resources={"cpus_per_trial": 1, "gpus_per_trial": 0},
    )
    job = server.wait(submit(server, body)["id"], timeout=120)
    assert job["status"] == "succeeded", job["error"]
    assert job["counts"] == {"total": 4, "running": 0, "complete": 4, "pruned": 0, "failed": 0}
    trials = trials_of(server, job["id"])
    assert all(t["state"] == "complete" and [e["epoch"] for e in t["epochs"]] == [1, 2] for t in trials)
    # one CPU per node and one per trial: two trials at a time means one on each node
    assert {node_of(t["worker"]) for t in trials} == {HEAD_IP, WORKER_IP}


def test_fractional_gpus_pack_two_parallel_one_thread_trials_onto_one_gpu(cluster: RayCluster) -> None:
    executor = cluster.executor
    wait_until_idle()
    executor.open_job(9001, 2, TrialResources(cpus=0.5, gpus=0.5))
    try:
        # use_gpu stays off: this checks what Ray grants (torch here has no CUDA); see below for use_gpu
        for trial_id in (1, 2):
            executor.start_trial(9001, payload(RESNET, channels=4, trial_id=trial_id, epochs=2))
        # hold each trial after its first epoch until both got there: then both are mid-training at
        # once, each in its own worker (whatever the machine's load did to their start times)
        events = collect(executor, lambda seen: {e.trial_id for e in seen if e.kind in ("epoch", "error")} == {1, 2})
        assert all(e.kind != "error" for e in events), [e.error for e in events]
        setups = [e.data for e in events if e.kind == "setup"]
        # the only node with a GPU, the same GPU for both, and one torch thread each (0.5 CPU -> 1)
        assert [(node_of(s["worker"]), s["gpu_ids"], s["threads"], s["device"]) for s in setups] == [
            (WORKER_IP, ["0"], 1, "cpu")
        ] * 2
        assert setups[0]["worker"] != setups[1]["worker"]  # two worker processes
        free = ray.available_resources()  # the two halves of the one GPU are both taken
        assert free.get("GPU", 0) == 0 and free.get("CPU", 0) == 1
        for trial_id in (1, 2):
            executor.train_epoch(trial_id)
        events = drive(executor, {1: 2, 2: 2})
        assert [e.kind for e in events].count("final") == 2, [e.error for e in events if e.kind == "error"]

        # a trial that does use its GPU, on one of those workers: this machine has no GPU, and says so
        import torch

        executor.start_trial(9001, payload(RESNET, channels=4, trial_id=3, epochs=1, use_gpu=True))
        (error,) = drive(executor, {3: 1})
        assert error.kind == "error" and error.error_type == "GPUUnavailable"
        reason = "CPU-only build" if torch.version.cuda is None else f"(CUDA {torch.version.cuda}) finds no usable CUDA device"
        assert f"/{WORKER_IP}:" in (error.error or "") and reason in (error.error or ""), error.error
        assert "GPUs assigned to it: 0;" in (error.error or "")
    finally:
        executor.close_job(9001)


def test_torch_threads_follow_the_trial_s_cpus() -> None:
    # whole CPUs, at least one: what the manager sends as ``threads`` and the runner applies
    before = torch.get_num_threads()
    try:
        runner = TrialRunner(threads=1)
        report = runner.setup(payload(RESNET, channels=4, epochs=1, threads=2).to_dict())
        assert report["threads"] == 2 == torch.get_num_threads()
        assert report["gpu_ids"] == [] and ":" in report["worker"]
    finally:
        torch.set_num_threads(before)


def test_a_fractional_gpu_job_reaches_ray_and_fails_clearly_without_cuda(server: Server, cluster: RayCluster) -> None:
    wait_until_idle()
    body = job_body(
        name="half-a-gpu",
        search_space=SMALL_NB201,
        budget={"max_trials": 1, "epochs": 1, "parallelism": 1},
        resources={"cpus_per_trial": 0.5, "gpus_per_trial": 0.5},
    )
    submitted = submit(server, body)
    assert submitted["spec"]["resources"]["gpus_per_trial"] == 0.5
    job = server.wait(submitted["id"], timeout=120)
    assert job["status"] == "failed"
    (trial,) = trials_of(server, job["id"])
    # Ray placed the trial on the node with the (declared) GPU and gave it GPU 0; torch has no CUDA
    assert trial["state"] == "failed"
    assert trial["error"].startswith("GPUUnavailable: the trial asked for a GPU"), trial["error"]
    assert f"/{WORKER_IP}:" in trial["error"] and "GPUs assigned to it: 0;" in trial["error"]
