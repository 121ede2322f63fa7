"""Runs submitted model code in a sandboxed worker process (``workers.sandbox``), never here.

The API process starts ``python -m workers.sandbox`` in a private temporary directory, in a new
session (so that its whole process group can be killed), hands it the job on stdin and reads its
reports from a pipe, each stage under a deadline: starting and checking the model within
``model_setup_timeout_s``, every epoch (and the final evaluation) within ``epoch_limit_minutes``.
Past a deadline, or when the server wants it gone, the group is killed with SIGKILL. Whatever the
code does (loops forever, allocates without end, calls ``os._exit``, forks, writes elsewhere, ...)
ends as a failure of that model, not of the server. This module does not import torch.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["SandboxLimits", "SandboxOutcome", "run_in_sandbox", "train_submission", "worker_name"]

_ROOT = Path(__file__).resolve().parents[2]  # the directory holding service/ and workers/


@dataclass(frozen=True)
class SandboxLimits:
    memory_mb: int = 2048
    setup_timeout_s: float = 180.0
    #: per epoch, and for the final evaluation (LEMUR's epoch_limit_minutes)
    epoch_timeout_s: float = 1800.0
    file_mb: int = 64
    #: the server's files the code must not read (``Settings.private_paths``)
    private_paths: tuple[str, ...] = ()
    #: the sandbox's least niceness (``Settings.model_nice``; in a Ray worker it keeps the worker's, if higher)
    nice: int = 0


@dataclass
class SandboxOutcome:
    """What the sandbox reported, in order; ``failure`` is None when the model trained."""

    checked: dict[str, Any] | None = None
    setup: dict[str, Any] | None = None
    epochs: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, Any] | None = None
    failure: dict[str, Any] | None = None
    code_quality: float | None = None
    isolation: str | None = None
    wall_seconds: float = 0.0
    #: the end of the model's own output (prints), for the failure message
    output_tail: str = ""


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()


def _exit_failure(returncode: int, stage: str) -> dict[str, Any]:
    if returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.Signals._value2member_map_ else str(-returncode)
        if -returncode == signal.SIGXCPU:
            return {"kind": "timeout", "message": f"the model used up its CPU-time limit during {stage}"}
        if -returncode == signal.SIGKILL:
            return {
                "kind": "oom",
                "message": f"the worker was killed (SIGKILL) during {stage}, most likely by the kernel for memory",
            }
        return {"kind": "runtime", "message": f"the worker died of signal {name} during {stage}"}
    return {
        "kind": "runtime",
        "message": f"the model code ended the worker process (exit status {returncode}) during {stage}; "
        "do not call exit() or os._exit()",
    }


def run_in_sandbox(
    payload: dict[str, Any],
    limits: SandboxLimits,
    *,
    data_dir: str | None = None,
    on_report: Callable[[str, dict[str, Any]], None] | None = None,
    cancel: threading.Event | None = None,
) -> SandboxOutcome:
    """Train ``payload`` (a ``workers.protocol.TrialPayload`` as a dict) in a fresh sandbox. When
    ``cancel`` is set (the server stops), the sandbox is killed within a second and the outcome's
    ``failure`` has kind ``cancelled``."""
    outcome = SandboxOutcome()
    epochs = int(payload["epochs"])
    cpu_s = int(limits.setup_timeout_s + (epochs + 1) * limits.epoch_timeout_s) + 10
    job = {
        "payload": payload,
        "limits": {"memory_mb": limits.memory_mb, "cpu_s": cpu_s, "file_mb": limits.file_mb,
                   "private_paths": list(limits.private_paths)},  # fmt: skip
    }
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cellar-model-") as home:
        read_fd, write_fd = os.pipe()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(_ROOT),
            "HOME": home,
            "TMPDIR": home,
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONHASHSEED": "0",
            # the sandbox dies with the thread that started it (PR_SET_PDEATHSIG): checked against this
            "CELLAR_SANDBOX_PARENT": str(os.getpid()),
        }
        if "CUDA_VISIBLE_DEVICES" in os.environ:  # the GPU(s) Ray assigned to this worker, or none
            env["CUDA_VISIBLE_DEVICES"] = os.environ["CUDA_VISIBLE_DEVICES"]
        if data_dir:
            env["CELLAR_DATA_DIR"] = data_dir
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "workers.sandbox", str(write_fd)],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=home,
                env=env,
                pass_fds=(write_fd,),
                start_new_session=True,
            )
        finally:
            os.close(write_fd)
        if limits.nice > os.getpriority(os.PRIO_PROCESS, 0):  # it has read none of the model's code yet
            os.setpriority(os.PRIO_PROCESS, process.pid, limits.nice)
        try:
            assert process.stdin is not None
            process.stdin.write(json.dumps(job).encode())
            process.stdin.close()
            _follow(process, read_fd, limits, epochs, outcome, on_report, cancel)
        finally:
            os.close(read_fd)
            _kill_group(process)  # also any process the code managed to leave behind
            outcome.wall_seconds = time.monotonic() - started
            log = Path(home) / "output.log"
            if log.exists():
                outcome.output_tail = log.read_bytes()[-2000:].decode(errors="replace")
    return outcome


def worker_name() -> str:
    """``host:pid`` of this process, as a submission's ``worker`` records it."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}"


def train_submission(payload: dict[str, Any], limits: dict[str, Any], data_dir: str | None) -> tuple[SandboxOutcome, str]:
    """The Ray task of a submitted model: a sandbox started from this Ray worker, which only
    follows it (the code never runs in the worker's own interpreter; the sandbox dies with the
    worker). The outcome, and the worker that followed it."""
    return run_in_sandbox(payload, SandboxLimits(**limits), data_dir=data_dir), worker_name()


def _follow(
    process: subprocess.Popen[bytes],
    fd: int,
    limits: SandboxLimits,
    epochs: int,
    outcome: SandboxOutcome,
    on_report: Callable[[str, dict[str, Any]], None] | None,
    cancel: threading.Event | None = None,
) -> None:
    """Read reports until the sandbox ends, misses a deadline or is cancelled."""
    selector = selectors.DefaultSelector()
    selector.register(fd, selectors.EVENT_READ)
    buffer = b""
    stage = "start-up"
    deadline = time.monotonic() + limits.setup_timeout_s
    while True:
        if cancel is not None and cancel.is_set():
            outcome.failure = {"kind": "cancelled", "message": f"the server stopped the training during {stage}"}
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            limit = limits.setup_timeout_s if stage in ("start-up", "checks") else limits.epoch_timeout_s
            outcome.failure = {
                "kind": "timeout",
                "message": f"{stage} took longer than its limit of {limit:g} s; the worker was stopped",
            }
            return
        if not selector.select(timeout=min(remaining, 1.0)):
            continue
        chunk = os.read(fd, 65536)
        if not chunk:  # the sandbox closed its end: it exited
            process.wait()
            if outcome.failure is None and outcome.final is None:
                outcome.failure = _exit_failure(process.returncode, stage)
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                continue  # not ours: the code wrote into the channel
            kind = message.pop("kind", None)
            if kind == "ready":
                outcome.isolation = message.get("network")
                stage = "checks"
            elif kind == "checked":
                outcome.checked = message
                stage = "setup"
                deadline = time.monotonic() + limits.epoch_timeout_s
            elif kind == "setup":
                outcome.setup = message
                stage = "epoch 1"
                deadline = time.monotonic() + limits.epoch_timeout_s
            elif kind == "epoch":
                outcome.epochs.append(message)
                done = len(outcome.epochs)
                stage = f"epoch {done + 1}" if done < epochs else "the final evaluation"
                deadline = time.monotonic() + limits.epoch_timeout_s
            elif kind == "final":
                outcome.final = message
                stage = "code-quality scoring"
            elif kind == "failure":
                outcome.failure = message.get("failure")
            elif kind == "quality":
                outcome.code_quality = message.get("code_quality")
            if on_report is not None and kind is not None:
                on_report(kind, message)
