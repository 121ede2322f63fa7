"""``RayExecutor``: trials run in Ray actors, one actor per slot, reused from trial to trial.

Reusing actors matters: a fresh worker process spends seconds importing torch, a warm one starts
a small trial in milliseconds. An actor that dies (its process was killed, the node went away) is
replaced before its slot runs the next trial. This module imports Ray but never torch: the
actor's methods import the runner inside the worker process.
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import RayActorError, RayTaskError, TaskCancelledError

from .executor import Executor, ExecutorError, ExecutorEvent, TrialResources
from .protocol import CLEAN_ERRORS, TrialError, TrialPayload

__all__ = ["RayExecutor"]

log = logging.getLogger(__name__)

_TRACEBACK_LIMIT = 6000


class _TrialActor:
    """Ray actor wrapping ``workers.runner.TrialRunner``. Exceptions leave it as ``TrialError``."""

    def __init__(self, threads: int) -> None:
        from workers.runner import TrialRunner

        self._runner = TrialRunner(threads)

    def _call(self, method: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
        try:
            return method(*args)
        except Exception as error:
            raise TrialError(type(error).__name__, str(error), traceback.format_exc()) from None

    def setup(self, payload: dict[str, Any]) -> dict[str, Any]:
        return self._call(self._runner.setup, payload)

    def train_epoch(self) -> dict[str, Any]:
        return self._call(self._runner.train_epoch)

    def finish(self) -> dict[str, Any]:
        return self._call(self._runner.finish)

    def reset(self) -> None:
        self._runner.reset()

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
        self._started = False
        self._actor_class: Any = None

    # ---- lifecycle ---------------------------------------------------------------------------
    def connect(self) -> None:
        """Connect to Ray (or start a local Ray with capped memory)."""
        if self._started:
            return
        # Ray 2.60 enables token auth for local clusters by default; the service's own local Ray
        # and the clusters it joins are trusted networks, so keep it off consistently.
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        # the driver is the API server: let uvicorn handle SIGTERM quietly, not Ray's crash dumper
        os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
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
        self._started = True

    def shutdown(self) -> None:
        for job_id in list(self._pools):
            self.close_job(job_id)
        if self._started:
            ray.shutdown()
            self._started = False

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

    def train_epoch(self, trial_id: int) -> None:
        self._submit(trial_id, "epoch", self._actor(trial_id).train_epoch.remote())

    def finish(self, trial_id: int) -> None:
        self._submit(trial_id, "final", self._actor(trial_id).finish.remote())

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
        # Results of one trial must be handled in call order (setup before its first epoch).
        order = {ref: i for i, ref in enumerate(refs)}
        events = []
        for ref in sorted(ready, key=order.__getitem__):
            if ref not in self._pending:
                continue  # dropped by an earlier event of this batch
            trial_id, call = self._pending.pop(ref)
            event = self._collect(trial_id, call, ref)
            events.append(event)
            if event.kind == "error":
                self._after_error(trial_id, event)
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
                    trial_id, "error", error=str(cause), error_type=cause.error_type, traceback=_trim(cause.traceback)
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


def _trim(text: str) -> str:
    """Keep the end of a long traceback: that is where the cause is."""
    if len(text) <= _TRACEBACK_LIMIT:
        return text
    return "... (traceback trimmed)\n" + text[-_TRACEBACK_LIMIT:]
