"""Two real Ray nodes on this machine, and a real ``cellar serve`` that joins them through
``CELLAR_RAY_ADDRESS``.

The nodes (``tests/service/raycluster.py``) listen on 127.0.0.2 and 127.0.0.3, with one CPU each,
so two 1-CPU trials at a time can only run on different nodes. The second node also declares one
GPU that is not there (Ray schedules on declared resources, it never checks them), for the
fractional-GPU checks; those never let torch touch CUDA.
"""

from __future__ import annotations

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
from tests.service.raycluster import HEAD_IP, RAY_ENV, WORKER_IP, RayNode, two_nodes
from tests.service.server import KEY, Server
from tests.workers.test_runner import RESNET, payload
from workers.executor import ExecutorEvent, TrialResources
from workers.ray_executor import RayExecutor
from workers.runner import TrialRunner

pytestmark = [pytest.mark.ray, pytest.mark.slow]

AUTH = {"Authorization": f"Bearer {KEY}"}
SMALL_NB201 = {"kind": "nb201", "params": {"channels": 4, "cells_per_stage": 1}}


@dataclass
class RayCluster:
    address: str
    nodes: list[RayNode]
    #: a Ray driver in this test process, for the executor-level checks
    executor: RayExecutor
    log_dir: Path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    log_dir = tmp_path_factory.mktemp("cluster")
    with two_nodes(log_dir, worker_gpus=1) as (address, nodes):
        executor = RayExecutor(address)
        try:
            deadline = time.monotonic() + 90
            executor.connect()
            while sorted(n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]) != [HEAD_IP, WORKER_IP]:
                assert time.monotonic() < deadline, ray.nodes()
                time.sleep(0.2)
            yield RayCluster(address, nodes, executor, log_dir)
        finally:
            executor.shutdown()


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
