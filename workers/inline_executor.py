"""``InlineExecutor``: trials run in this process, one step at a time, for debugging and tests.

Each call (setup and first epoch, an epoch, the test evaluation) runs to completion when the manager
makes it, with the same ``TrialRunner`` the Ray workers use; the reports wait in a queue per trial.
``poll`` hands out the head report of one trial at a time, the first-started trial first or, with
``shuffle_seed``, a trial picked at random: the manager then sees trials finish in orders that
real workers produce only now and then, which is what its ordering guarantees must survive.

It imports torch as soon as it runs a trial, so it is never used inside the API process; memory
caps (``memory_mb_per_trial``) are not applied, as they would cap the calling process.
"""

from __future__ import annotations

import dataclasses
import random
import traceback
from collections import deque
from concurrent.futures import Future
from typing import Any

from .executor import Executor, ExecutorEvent, TrialResources
from .protocol import CLEAN_ERRORS, ScreenRequest, TrialPayload

__all__ = ["InlineExecutor"]


class InlineExecutor(Executor):
    def __init__(self, *, shuffle_seed: int | None = None, cpus: float | None = None) -> None:
        self._random = random.Random(shuffle_seed) if shuffle_seed is not None else None
        self._cpus = cpus
        self._slots: dict[int, list[int | None]] = {}  # job -> trial id per slot
        self._runners: dict[tuple[int, int], Any] = {}  # (job, slot) -> TrialRunner
        self._trial_slot: dict[int, tuple[int, int]] = {}
        self._queues: dict[int, deque[ExecutorEvent]] = {}  # trial -> reports not yet polled
        self.calls = 0

    # ---- resources ---------------------------------------------------------------------------
    def capacity(self) -> dict[str, float]:
        return {} if self._cpus is None else {"CPU": self._cpus, "GPU": 0.0}

    def node_resources(self) -> list[dict[str, float]]:
        return [] if self._cpus is None else [self.capacity()]

    def open_job(self, job_id: int, slots: int, resources: TrialResources) -> None:
        self._slots.setdefault(job_id, [None] * slots)

    def free_slots(self, job_id: int) -> int:
        return sum(1 for trial in self._slots.get(job_id, []) if trial is None)

    def close_job(self, job_id: int) -> None:
        for trial_id in [t for t, (j, _) in self._trial_slot.items() if j == job_id]:
            self._vacate(trial_id)
        self._slots.pop(job_id, None)
        for key in [k for k in self._runners if k[0] == job_id]:
            del self._runners[key]

    # ---- trial calls -------------------------------------------------------------------------
    def start_trial(self, job_id: int, payload: TrialPayload) -> None:
        slots = self._slots[job_id]
        index = slots.index(None)
        slots[index] = payload.trial_id
        self._trial_slot[payload.trial_id] = (job_id, index)
        self._queues[payload.trial_id] = deque()
        payload = dataclasses.replace(payload, memory_limit_mb=None)
        if self._run(payload.trial_id, "setup", "setup", payload.to_dict()):
            self._run(payload.trial_id, "epoch", "train_epoch")

    def score(self, job_id: int, request: ScreenRequest) -> Future[list[float | None]]:
        """Scored here and now, by one runner (the job's first slot's)."""
        from .screen import score_candidates

        future: Future[list[float | None]] = Future()
        try:
            future.set_result(score_candidates(self._runner_at((job_id, 0)), request.to_dict()))
        except Exception as error:
            future.set_exception(error)
        return future

    def train_epoch(self, trial_id: int) -> None:
        self._run(trial_id, "epoch", "train_epoch")

    def finish(self, trial_id: int) -> None:
        self._run(trial_id, "final", "finish")

    def release(self, trial_id: int) -> None:
        self._vacate(trial_id)

    def abort(self, trial_id: int) -> None:
        key = self._trial_slot.get(trial_id)
        self._vacate(trial_id)
        if key is not None:
            self._runners.pop(key, None)  # as a killed worker: nothing of it survives

    def poll(self, timeout: float) -> list[ExecutorEvent]:
        ready = [trial_id for trial_id, queue in self._queues.items() if queue]
        if not ready:
            return []
        trial_id = self._random.choice(ready) if self._random else ready[0]
        event = self._queues[trial_id].popleft()
        if event.kind == "error":
            self._vacate(trial_id)  # as the Ray executor: a failed trial's slot is free again
        return [event]

    # ---- internals ---------------------------------------------------------------------------
    def _runner(self, trial_id: int) -> Any:
        return self._runner_at(self._trial_slot[trial_id])

    def _runner_at(self, key: tuple[int, int]) -> Any:
        """The ``TrialRunner`` of slot ``key`` (job, slot), made when first needed."""
        if key not in self._runners:
            from .runner import TrialRunner

            self._runners[key] = TrialRunner(threads=1)
        return self._runners[key]

    def _run(self, trial_id: int, kind: str, method: str, *args: Any) -> bool:
        self.calls += 1
        runner = self._runner(trial_id)
        try:
            data = getattr(runner, method)(*args)
        except Exception as error:
            name = type(error).__name__
            self._queues[trial_id].append(
                ExecutorEvent(
                    trial_id, "error", error=f"{name}: {error}", error_type=name, traceback=traceback.format_exc(),
                    log=getattr(error, "cellar_log", None),
                )
            )
            if name not in CLEAN_ERRORS:
                self._runners.pop(self._trial_slot[trial_id], None)
            return False
        self._queues[trial_id].append(ExecutorEvent(trial_id, kind, data=data))  # type: ignore[arg-type]
        return True

    def _vacate(self, trial_id: int) -> None:
        key = self._trial_slot.pop(trial_id, None)
        self._queues.pop(trial_id, None)
        if key is not None and key[0] in self._slots:
            self._slots[key[0]][key[1]] = None
