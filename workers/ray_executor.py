"""``RayExecutor``: trials run in Ray actors, one actor per slot, reused from trial to trial.

Reusing actors matters: a fresh worker process spends seconds importing torch, a warm one starts
a small trial in milliseconds. An actor that dies (its process was killed, the node went away) is
replaced before its slot runs the next trial. This module imports Ray but never torch: the
actor's methods import the runner inside the worker process.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

# Ray reads this once, when it is imported: set later, it does nothing. The driver is the API
# server: SIGTERM must reach uvicorn's handler, not Ray's C++ failure handler, which prints a stack
# for it and aborts the process 3 s later, whatever the shutdown is doing then.
os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")

import psutil  # noqa: E402
import ray  # noqa: E402
from ray.exceptions import RayActorError, RayTaskError, TaskCancelledError  # noqa: E402

from .executor import Executor, ExecutorError, ExecutorEvent, TrialResources, gather  # noqa: E402
from .protocol import CLEAN_ERRORS, ScreenRequest, TrialError, TrialPayload  # noqa: E402

__all__ = ["PRELOAD_MODULE", "RayExecutor"]

log = logging.getLogger(__name__)

_TRACEBACK_LIMIT = 6000
#: how long the local Ray's processes get to exit after ray.shutdown() before they are killed
_REAP_TIMEOUT_S = 5.0
#: imported by every worker process of the local Ray before it takes work (see workers/preload.py)
PRELOAD_MODULE = "workers.preload"


class _TrialActor:
    """Ray actor wrapping ``workers.runner.TrialRunner``. Exceptions leave it as ``TrialError``."""

    def __init__(self, threads: int) -> None:
        from workers.runner import TrialRunner

        self._runner = TrialRunner(threads)
        #: a step of the current trial raised: its steps queued behind it return at once
        self._failed = False

    def _call(self, method: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
        if self._failed:
            raise TrialError("Skipped", "an earlier step of this trial failed", "", None)
        try:
            return method(*args)
        except Exception as error:
            self._failed = True
            raise TrialError(
                type(error).__name__, str(error), traceback.format_exc(), getattr(error, "cellar_log", None)
            ) from None

    def setup(self, payload: dict[str, Any]) -> dict[str, Any]:
        self._failed = False
        return self._call(self._runner.setup, payload)

    def train_epoch(self) -> dict[str, Any]:
        return self._call(self._runner.train_epoch)

    def finish(self) -> dict[str, Any]:
        return self._call(self._runner.finish)

    def reset(self) -> None:
        self._failed = False
        self._runner.reset()

    def score(self, request: dict[str, Any]) -> list[float | None]:
        from workers.screen import score_candidates

        try:
            return score_candidates(self._runner, request)
        except Exception as error:
            raise TrialError(type(error).__name__, str(error), traceback.format_exc(), None) from None

    def pid(self) -> int:
        return os.getpid()


@dataclass
class _Slot:
    actor: Any = None
    trial_id: int | None = None


@dataclass
class _JobPool:
    resources: TrialResources
    slots: list[_Slot] = field(default_factory=list)


class RayExecutor(Executor):
    """Runs trials on a Ray cluster: a local one it starts itself, or one at ``address``."""

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: int | None = None,
        num_gpus: int | None = None,
        object_store_mb: int = 256,
    ) -> None:
        self.address = address
        self._num_cpus = num_cpus
        self._num_gpus = num_gpus
        self._object_store_mb = object_store_mb
        self._pools: dict[int, _JobPool] = {}
        self._trial_slot: dict[int, tuple[int, _Slot]] = {}
        self._pending: dict[Any, tuple[int, str]] = {}  # ObjectRef -> (trial_id, call)
        #: trials whose epochs and finish were all queued at start (``queue_rest``)
        self._ahead: set[int] = set()
        self._failed: set[int] = set()  # trials that failed in the last batch of events (poll)
        self._started = False
        self._actor_class: Any = None
        #: the local Ray's processes, listed once it started (its agents among them), to reap at shutdown
        self._local: list[psutil.Process] = []

    # ---- lifecycle ---------------------------------------------------------------------------
    def connect(self) -> None:
        """Connect to Ray (or start a local Ray with capped memory)."""
        if self._started:
            return
        # Ray 2.60 enables token auth for local clusters by default; the service's own local Ray
        # and the clusters it joins are trusted networks, so keep it off consistently.
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        try:
            if self.address:
                ray.init(address=self.address, log_to_driver=False, include_dashboard=False)
            else:
                ray.init(
                    address="local",
                    num_cpus=self._num_cpus,
                    num_gpus=self._num_gpus,
                    object_store_memory=self._object_store_mb * 1024 * 1024,
                    include_dashboard=False,
                    log_to_driver=False,
                    # Ray starts a worker per CPU as the driver connects: they import torch
                    # while the server waits for its first job, not inside its first trial
                    _system_config={"preload_python_modules": [PRELOAD_MODULE]},
                )
        except Exception as error:  # Ray raises many types here; all mean "no cluster"
            if self.address:
                # a Ray driver attaches to a Ray node on its own machine (Ray finds its raylet);
                # without one, ray.init(address=...) fails after a timeout
                raise ExecutorError(
                    f"could not join the Ray cluster at {self.address}: {error}. Check CELLAR_RAY_ADDRESS, "
                    f"and that this machine runs a node of that cluster (`ray start --address={self.address}`, "
                    "with --num-cpus=0 to keep trials off it), or unset CELLAR_RAY_ADDRESS to run a local Ray."
                ) from error
            raise ExecutorError(f"could not start a local Ray: {error}") from error
        self._actor_class = ray.remote(max_restarts=0, max_task_retries=0)(_TrialActor)
        self._local = [] if self.address else _local_ray_processes()
        self._started = True

    def shutdown(self) -> None:
        """Kill the workers and disconnect; a local Ray this executor started stops with it, and
        any of its processes still running 5 s later are killed. Call it from the thread that
        called ``connect``: Ray ties its local processes to that thread's life (PR_SET_PDEATHSIG),
        and they must stop in order, not be killed when it ends."""
        if not self._started:
            return
        try:
            for job_id in list(self._pools):
                self.close_job(job_id)
        finally:
            # the agents are the raylet's children: if it died first, only the list made at start knows them
            local = {p.pid: p for p in [*self._local, *([] if self.address else _local_ray_processes())]}
            try:
                ray.shutdown()
            finally:
                self._started, self._local = False, []
                _reap(list(local.values()))

    @property
    def elastic(self) -> bool:  # type: ignore[override]
        """A cluster Cellar joined may grow; the local Ray it started does not."""
        return bool(self.address)

    def capacity(self) -> dict[str, float]:
        self._require_started()
        resources = ray.cluster_resources()
        return {"CPU": float(resources.get("CPU", 0.0)), "GPU": float(resources.get("GPU", 0.0))}

    def node_resources(self) -> list[dict[str, float]]:
        self._require_started()
        return [
            {"CPU": float(node["Resources"].get("CPU", 0.0)), "GPU": float(node["Resources"].get("GPU", 0.0))}
            for node in ray.nodes()
            if node.get("Alive")
        ]

    def status(self) -> dict[str, Any]:
        if not self._started:
            return {"status": "not started"}
        resources = ray.cluster_resources()
        return {
            "status": "ok",
            "address": self.address or "local",
            "nodes": sum(1 for node in ray.nodes() if node.get("Alive")),
            "cpus": resources.get("CPU", 0.0),
            "gpus": resources.get("GPU", 0.0),
        }

    # ---- slots -------------------------------------------------------------------------------
    def open_job(self, job_id: int, slots: int, resources: TrialResources) -> None:
        self._require_started()
        if job_id in self._pools:
            return
        self._pools[job_id] = _JobPool(resources=resources, slots=[_Slot() for _ in range(slots)])

    def free_slots(self, job_id: int) -> int:
        pool = self._pools.get(job_id)
        return 0 if pool is None else sum(1 for slot in pool.slots if slot.trial_id is None)

    def close_job(self, job_id: int) -> None:
        pool = self._pools.pop(job_id, None)
        if pool is None:
            return
        for slot in pool.slots:
            if slot.trial_id is not None:
                self._forget(slot.trial_id)
            self._replace_actor(slot)

    # ---- trial calls -------------------------------------------------------------------------
    def start_trial(self, job_id: int, payload: TrialPayload) -> None:
        pool = self._pools[job_id]
        slot = next((s for s in pool.slots if s.trial_id is None), None)
        if slot is None:
            raise ExecutorError(f"job {job_id} has no free slot for trial {payload.trial_id}")
        if slot.actor is None:
            slot.actor = self._new_actor(pool.resources)
        slot.trial_id = payload.trial_id
        self._trial_slot[payload.trial_id] = (job_id, slot)
        self._submit(payload.trial_id, "setup", slot.actor.setup.remote(payload.to_dict()))
        self._submit(payload.trial_id, "epoch", slot.actor.train_epoch.remote())

    def score(self, job_id: int, request: ScreenRequest) -> Future[list[float | None]]:
        """Each of the job's slots scores a contiguous share of the candidates."""
        pool = self._pools[job_id]
        parts = []
        for slot, share in zip(pool.slots, request.split(len(pool.slots)), strict=False):
            if slot.actor is None:
                slot.actor = self._new_actor(pool.resources)
            parts.append(slot.actor.score.remote(share.to_dict()).future())
        return gather(parts)

    def train_epoch(self, trial_id: int) -> None:
        if trial_id not in self._ahead and trial_id not in self._failed:
            self._submit(trial_id, "epoch", self._actor(trial_id).train_epoch.remote())

    def finish(self, trial_id: int) -> None:
        if trial_id not in self._ahead and trial_id not in self._failed:
            self._submit(trial_id, "final", self._actor(trial_id).finish.remote())

    def queue_rest(self, trial_id: int, epochs: int) -> None:
        """Epochs 2..N and the finish go to the trial's actor now (Ray runs an actor's calls in
        order): the worker never waits for the manager between them. Their results come back in
        call order, as they would one by one."""
        actor = self._actor(trial_id)
        for _ in range(epochs - 1):
            self._submit(trial_id, "epoch", actor.train_epoch.remote())
        self._submit(trial_id, "final", actor.finish.remote())
        self._ahead.add(trial_id)

    def release(self, trial_id: int) -> None:
        slot = self._vacate(trial_id)
        if slot is not None and slot.actor is not None:
            slot.actor.reset.remote()  # frees the model; runs after anything still queued

    def abort(self, trial_id: int) -> None:
        slot = self._vacate(trial_id)
        if slot is not None:
            self._replace_actor(slot)

    def poll(self, timeout: float) -> list[ExecutorEvent]:
        if not self._pending:
            return []
        refs = list(self._pending)
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        if not ready:
            return []
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        # Results of one trial are handled in call order (setup before its first epoch), and only
        # once every earlier call of the trial is in: Ray may see a later call's result first, and
        # a step skipped after a failure must never stand for the failure itself.
        done = set(ready)
        waiting: set[int] = set()
        # a trial's epoch and its failure in the next call may come in one batch: the slot is
        # freed at the failure, and the manager's next call for it, on the epoch before, is moot
        self._failed = set()
        events = []
        for ref in refs:
            if ref not in self._pending:
                continue  # dropped by an earlier event of this batch
            trial_id, call = self._pending[ref]
            if trial_id in waiting or ref not in done:
                waiting.add(trial_id)
                continue
            del self._pending[ref]
            event = self._collect(trial_id, call, ref)
            events.append(event)
            if event.kind == "error":
                self._after_error(trial_id, event)
                self._failed.add(trial_id)
        return events

    # ---- internals ---------------------------------------------------------------------------
    def _require_started(self) -> None:
        if not self._started:
            raise ExecutorError("the Ray executor is not started")

    def _new_actor(self, resources: TrialResources) -> Any:
        """A worker holding one trial's Ray resources for as long as it lives: ``num_cpus`` and
        ``num_gpus`` as the job asks (fractions pack several trials onto one GPU; Ray sets the
        actor's CUDA_VISIBLE_DEVICES), and torch threads = the whole CPUs, at least one."""
        threads = max(1, int(resources.cpus))
        return self._actor_class.options(num_cpus=resources.cpus, num_gpus=resources.gpus).remote(threads)

    def _actor(self, trial_id: int) -> Any:
        _, slot = self._trial_slot[trial_id]
        return slot.actor

    def _submit(self, trial_id: int, call: str, ref: Any) -> None:
        self._pending[ref] = (trial_id, call)

    def _forget(self, trial_id: int) -> None:
        self._ahead.discard(trial_id)
        entry = self._trial_slot.pop(trial_id, None)
        if entry is not None:
            entry[1].trial_id = None
        for ref in [r for r, (t, _) in self._pending.items() if t == trial_id]:
            del self._pending[ref]

    def _vacate(self, trial_id: int) -> _Slot | None:
        """Free the trial's slot and drop its pending calls; the slot, or None if it had none."""
        entry = self._trial_slot.get(trial_id)
        if entry is None:
            return None
        self._forget(trial_id)
        return entry[1]

    @staticmethod
    def _replace_actor(slot: _Slot) -> None:
        """Kill the slot's worker; a fresh one is made when the slot next runs a trial."""
        if slot.actor is not None:
            ray.kill(slot.actor, no_restart=True)
            slot.actor = None

    def _collect(self, trial_id: int, call: str, ref: Any) -> ExecutorEvent:
        try:
            data = ray.get(ref, timeout=30)
        except RayTaskError as error:
            cause = getattr(error, "cause", None)
            if isinstance(cause, TrialError):
                return ExecutorEvent(
                    trial_id, "error", error=str(cause), error_type=cause.error_type, traceback=_trim(cause.traceback),
                    log=cause.log,
                )
            return ExecutorEvent(
                trial_id, "error", error=str(error).splitlines()[-1], error_type=type(error).__name__, traceback=_trim(str(error))
            )
        except (RayActorError, TaskCancelledError) as error:
            return ExecutorEvent(
                trial_id,
                "error",
                error=f"WorkerLost: the worker process running this trial died ({type(error).__name__})",
                error_type=type(error).__name__,
                traceback=_trim(str(error)),
                worker_lost=True,
            )
        except Exception as error:  # lost objects, dead nodes, unschedulable actors, ...
            # whatever it is, the worker cannot be trusted with the next trial: it is replaced
            return ExecutorEvent(
                trial_id,
                "error",
                error=f"{type(error).__name__}: the cluster could not run this trial's step",
                error_type=type(error).__name__,
                traceback=_trim(str(error)),
                worker_lost=True,
            )
        return ExecutorEvent(trial_id, "setup" if call == "setup" else call, data=data)  # type: ignore[arg-type]

    def _after_error(self, trial_id: int, event: ExecutorEvent) -> None:
        slot = self._vacate(trial_id)
        if slot is None or slot.actor is None:
            return
        if event.worker_lost or event.error_type not in CLEAN_ERRORS:
            self._replace_actor(slot)
        else:
            slot.actor.reset.remote()


def _local_ray_processes() -> list[psutil.Process]:
    """The processes of the local Ray that ``ray.init`` started here (GCS, raylet, monitors) and
    theirs (dashboard and runtime-env agents, workers)."""
    node = getattr(ray._private.worker, "_global_node", None)  # noqa: SLF001 - no public API for it
    if node is None:
        return []
    found: dict[int, psutil.Process] = {}
    for infos in list(node.all_processes.values()):
        for info in infos:
            try:
                process = psutil.Process(info.process.pid)
                found[process.pid] = process
                for child in process.children(recursive=True):
                    found[child.pid] = child
            except (psutil.Error, AttributeError):
                continue
    return list(found.values())


def _reap(processes: list[psutil.Process]) -> None:
    """Wait a little for the processes ``ray.shutdown()`` stopped; kill the ones left (an agent
    whose raylet died first outlives it by a minute otherwise)."""
    deadline = time.monotonic() + _REAP_TIMEOUT_S
    while (alive := _still_running(processes)) and time.monotonic() < deadline:
        time.sleep(0.1)
    if not alive:
        return
    log.warning(
        "killing %d Ray process(es) still running %g s after ray.shutdown(): %s",
        len(alive), _REAP_TIMEOUT_S, ", ".join(f"{p.pid} ({_describe(p)})" for p in alive),
    )
    for process in alive:
        try:
            process.kill()  # psutil refuses a pid that another process took meanwhile
        except psutil.Error:
            pass


def _still_running(processes: list[psutil.Process]) -> list[psutil.Process]:
    """The processes not gone yet; a zombie is gone (an orphan's may wait long for its reaper)."""
    running = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                running.append(process)
        except psutil.Error:
            continue
    return running


def _describe(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())[:60] or process.name()
    except psutil.Error:
        return "?"


def _trim(text: str) -> str:
    """Keep the end of a long traceback: that is where the cause is."""
    if len(text) <= _TRACEBACK_LIMIT:
        return text
    return "... (traceback trimmed)\n" + text[-_TRACEBACK_LIMIT:]
