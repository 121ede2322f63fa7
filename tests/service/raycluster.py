"""Two real Ray nodes on this machine, for the cluster tests and ``benchmarks/scaling.py --two-nodes``.

The head listens on 127.0.0.2, the second node on 127.0.0.3: distinct loopback addresses keep two
nodes on one host apart (Ray rewrites plain 127.0.0.1 to the machine's address). Each node has one
CPU. The cluster keeps its files in a ``--temp-dir`` of its own (nothing in ``/tmp/ray``, where
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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.service.server import free_port, terminate
from workers.ray_executor import PRELOAD_MODULE

HEAD_IP, WORKER_IP = "127.0.0.2", "127.0.0.3"
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
                # its workers import torch as they start, as the service's own local Ray's do
                env={**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, **RAY_ENV,
                     "RAY_preload_python_modules": PRELOAD_MODULE},  # fmt: skip
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
        terminate(self.process, timeout)
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for child, started in below.items():
            stat = _stat(child)
            if stat is not None and stat[1] == started:  # the same process, not a reused PID
                os.kill(child, signal.SIGKILL)


def _wait_for_port(host: str, port: int, node: RayNode, deadline: float) -> None:
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            assert node.process.poll() is None, f"ray start exited:\n{node.log.read_text(errors='replace')}"
            assert time.monotonic() < deadline, f"the Ray head never listened:\n{node.log.read_text(errors='replace')}"
            time.sleep(0.2)


@contextmanager
def two_nodes(log_dir: Path, *, worker_gpus: int = 0) -> Iterator[tuple[str, list[RayNode]]]:
    """Start a head node and a second node (one CPU each; ``worker_gpus`` declared on the second,
    never checked by Ray); yields the head's address and the nodes, and stops both after."""
    # short: Ray's socket paths live under it and a Unix socket path has at most 107 bytes
    temp_dir = tempfile.mkdtemp(prefix="cellar-ray-", dir="/tmp")
    port = free_port()
    address = f"{HEAD_IP}:{port}"
    nodes: list[RayNode] = []
    try:
        deadline = time.monotonic() + 90
        # no log monitor (drivers here do not stream worker logs) and no autoscaler monitor (a fixed
        # cluster): fewer Ray processes to start on a small machine
        common = ["--num-cpus=1", f"--object-store-memory={OBJECT_STORE}", "--include-log-monitor=false"]
        head = RayNode(
            "head",
            ["--head", f"--node-ip-address={HEAD_IP}", f"--port={port}", "--num-gpus=0", "--include-dashboard=false",
             "--no-monitor", f"--temp-dir={temp_dir}", *common],
            log_dir,
        )  # fmt: skip
        nodes.append(head)
        _wait_for_port(HEAD_IP, port, head, deadline)  # the second node may start as soon as GCS listens
        worker = RayNode(
            "worker", [f"--address={address}", f"--node-ip-address={WORKER_IP}", f"--num-gpus={worker_gpus}", *common],
            log_dir,
        )  # fmt: skip
        nodes.append(worker)
        head.wait_started(deadline)
        worker.wait_started(deadline)
        yield address, nodes
    finally:
        for node in reversed(nodes):
            node.stop()
        shutil.rmtree(temp_dir, ignore_errors=True)
