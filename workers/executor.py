"""The executor interface: how the job manager runs trials without knowing where they run."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from .protocol import ScreenRequest, TrialPayload

__all__ = ["Executor", "ExecutorEvent", "ExecutorError", "TrialResources", "gather"]


class ExecutorError(Exception):
    """Root of the workers' errors (e.g. the Ray cluster cannot be reached)."""


@dataclass(frozen=True)
class TrialResources:
    """What one trial asks of the cluster."""

    cpus: float = 1.0
    gpus: float = 0.0


EventKind = Literal["setup", "epoch", "final", "error"]


@dataclass(frozen=True)
class ExecutorEvent:
    """Something a trial's worker reported: a finished call's result, or its failure.

    For a failure, ``error`` is one line (``Type: message``), ``traceback`` the worker's traceback
    and ``worker_lost`` tells a crashed worker process apart from an exception in the trial.
    """

    trial_id: int
    kind: EventKind
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    error_type: str | None = None
    traceback: str | None = None
    worker_lost: bool = False
    #: for a failure: what the trial printed during the failed call (a result carries it as data["log"])
    log: str | None = None


class Executor(ABC):
    """Runs trials in slots. A job opens a number of slots; each slot runs one trial at a time.

    The manager drives every trial call by call: ``start_trial`` (setup, then the first epoch),
    ``train_epoch``, ``finish``; ``release`` frees the slot of a trial that ended early and
    ``abort`` stops one at once, even mid-epoch. ``poll`` returns the events that arrived.
    """

    def connect(self) -> None:  # noqa: B027 - nothing to connect to by default
        """Reach the compute (e.g. start or join a Ray cluster); raise ``ExecutorError`` if it fails."""

    @abstractmethod
    def open_job(self, job_id: int, slots: int, resources: TrialResources) -> None: ...

    @abstractmethod
    def free_slots(self, job_id: int) -> int: ...

    @abstractmethod
    def start_trial(self, job_id: int, payload: TrialPayload) -> None: ...

    @abstractmethod
    def train_epoch(self, trial_id: int) -> None: ...

    @abstractmethod
    def finish(self, trial_id: int) -> None: ...

    def queue_rest(self, trial_id: int, epochs: int) -> None:  # noqa: B027 - optional
        """Queue the started trial's other epochs and its finish at once: the job decides nothing
        between epochs (no pruner), so its worker may run them back to back, and ``train_epoch`` /
        ``finish`` for this trial are then no-ops. By default nothing is queued ahead."""

    @abstractmethod
    def release(self, trial_id: int) -> None: ...

    @abstractmethod
    def abort(self, trial_id: int) -> None: ...

    @abstractmethod
    def close_job(self, job_id: int) -> None: ...

    @abstractmethod
    def poll(self, timeout: float) -> list[ExecutorEvent]: ...

    def score(self, job_id: int, request: ScreenRequest) -> Future[list[float | None]]:
        """Score ``request``'s candidates, untrained, on the job's slots (``strategy.screen``); the
        future holds one value per candidate, in order. Called before the job's first trial."""
        raise ExecutorError(f"{type(self).__name__} cannot score candidates; strategy.screen needs workers")

    #: whether nodes may join later (an external cluster); a job no node can run then waits
    elastic: bool = False
    #: results are looked up, not trained (``TabularExecutor``): kept out of the result cache
    simulated: bool = False

    def capacity(self) -> dict[str, float]:
        """Total resources trials can use (``CPU``, ``GPU``); empty when unknown (no limit)."""
        return {}

    def node_resources(self) -> list[dict[str, float]]:
        """Resources of each node (a trial must fit on one); empty when unknown."""
        return []

    def status(self) -> dict[str, Any]:
        return {}

    def now(self) -> datetime:
        """The clock jobs run by: time limits, start and finish times. Wall-clock time (UTC) here;
        a simulating executor (``TabularExecutor``) returns its simulated time instead."""
        return datetime.now(UTC)

    def shutdown(self) -> None:  # noqa: B027 - nothing to release by default
        pass


def gather(parts: list[Future[list[Any]]]) -> Future[list[Any]]:
    """One future of the parts' lists joined in order; it fails with the first part that fails."""
    joined: Future[list[Any]] = Future()
    left = [len(parts)]
    lock = threading.Lock()  # the parts complete on other threads (Ray's)

    def done(_part: Future[list[Any]]) -> None:
        with lock:
            left[0] -= 1
            last = left[0] == 0
        if last:
            failed = next((part.exception() for part in parts if part.exception() is not None), None)
            if failed is not None:
                joined.set_exception(failed)
            else:
                joined.set_result([value for part in parts for value in part.result()])

    if not parts:
        joined.set_result([])
    for part in parts:
        part.add_done_callback(done)
    return joined
