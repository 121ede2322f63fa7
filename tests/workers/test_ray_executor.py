"""The Ray executor on a real local Ray: events, errors, killed workers, aborts."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import psutil
import pytest

from tests.workers.test_runner import ALL_NONE, RESNET, payload
from workers.executor import ExecutorEvent, TrialResources
from workers.ray_executor import RayExecutor

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def executor() -> Iterator[RayExecutor]:
    ex = RayExecutor(num_cpus=2, object_store_mb=100)
    ex.connect()
    yield ex
    ex.shutdown()


def drive(ex: RayExecutor, epochs: dict[int, int], timeout: float = 120) -> list[ExecutorEvent]:
    """Step trials the way the manager does until none is left; return every event."""
    events: list[ExecutorEvent] = []
    open_trials = set(epochs)
    deadline = time.monotonic() + timeout
    while open_trials:
        assert time.monotonic() < deadline, f"trials {open_trials} did not finish"
        for event in ex.poll(1.0):
            events.append(event)
            if event.kind == "epoch":
                if event.data["epoch"] < epochs[event.trial_id]:
                    ex.train_epoch(event.trial_id)
                else:
                    ex.finish(event.trial_id)
            elif event.kind == "final":
                ex.release(event.trial_id)
                open_trials.discard(event.trial_id)
            elif event.kind == "error":
                open_trials.discard(event.trial_id)
    return events


def test_the_local_ray_s_workers_import_torch_before_their_first_trial(executor: RayExecutor) -> None:
    # Ray starts a worker per CPU as the driver connects; each imports the trial runner while it
    # waits (workers/preload.py), so that a job's first trial does not pay for torch
    import ray

    @ray.remote(num_cpus=1)
    def imported() -> tuple[bool, bool]:
        import sys

        return "workers.preload" in sys.modules, "torch" in sys.modules

    assert ray.get(imported.remote(), timeout=60) == (True, True)


def test_two_slots_run_two_trials_in_order(executor: RayExecutor) -> None:
    executor.open_job(1, 2, TrialResources(cpus=1))
    assert executor.free_slots(1) == 2
    executor.start_trial(1, payload(RESNET, trial_id=11, epochs=2))
    executor.start_trial(1, payload(ALL_NONE, trial_id=12, epochs=2))
    assert executor.free_slots(1) == 0
    events = drive(executor, {11: 2, 12: 2})
    # Ray starts its workers below the driver's priority (its worker_niceness, 15): the API server
    # and its job manager keep the CPU they need when trials fill every core
    pids = {int(e.data["worker"].rsplit(":", 1)[1]) for e in events if e.kind == "setup"}
    assert len(pids) == 2 and all(psutil.Process(pid).nice() >= os.nice(0) + 10 for pid in pids)
    for trial_id in (11, 12):
        kinds = [(e.kind, e.data.get("epoch")) for e in events if e.trial_id == trial_id]
        assert kinds == [("setup", None), ("epoch", 1), ("epoch", 2), ("final", None)]
    workers = {e.data["worker"] for e in events if e.kind == "setup"}
    assert len(workers) == 2 and all(str(os.getpid()) not in w for w in workers)
    assert executor.free_slots(1) == 2
    executor.close_job(1)


def test_an_exception_in_a_trial_becomes_an_error_event(executor: RayExecutor) -> None:
    executor.open_job(2, 1, TrialResources(cpus=1))
    executor.start_trial(2, payload(RESNET, trial_id=21, max_params=1000))
    events = drive(executor, {21: 1})
    error = events[-1]
    assert error.kind == "error" and error.error_type == "ConstraintViolation"
    assert (error.error or "").startswith("ConstraintViolation: ") and "exceed the job's max_params 1000" in error.error
    assert "Traceback" in (error.traceback or "") and "workers/runner.py" in (error.traceback or "")
    assert not error.worker_lost
    # the slot is free again and its worker runs the next trial
    executor.start_trial(2, payload(ALL_NONE, trial_id=22, epochs=1))
    assert [e.kind for e in drive(executor, {22: 1})] == ["setup", "epoch", "final"]
    executor.close_job(2)


def test_a_killed_worker_is_reported_and_replaced(executor: RayExecutor) -> None:
    executor.open_job(3, 1, TrialResources(cpus=1))
    executor.start_trial(3, payload(RESNET, trial_id=31, channels=32, cells=3, epochs=50))
    deadline = time.monotonic() + 60
    setup = None
    while setup is None and time.monotonic() < deadline:
        setup = next((e for e in executor.poll(1.0) if e.kind == "setup"), None)
    assert setup is not None
    os.kill(int(setup.data["worker"].rsplit(":", 1)[1]), signal.SIGKILL)
    events = drive(executor, {31: 50})
    assert events[-1].kind == "error" and events[-1].worker_lost
    assert "the worker process running this trial died" in (events[-1].error or "")
    executor.start_trial(3, payload(ALL_NONE, trial_id=32, epochs=1))
    events = drive(executor, {32: 1})
    assert [e.kind for e in events] == ["setup", "epoch", "final"]
    assert events[0].data["worker"] != setup.data["worker"]
    executor.close_job(3)


def test_abort_stops_a_trial_mid_epoch(executor: RayExecutor) -> None:
    executor.open_job(4, 1, TrialResources(cpus=1))
    executor.start_trial(4, payload(RESNET, trial_id=41, channels=64, cells=5, epochs=100))
    deadline = time.monotonic() + 60
    while not any(e.kind == "setup" for e in executor.poll(1.0)):
        assert time.monotonic() < deadline
    started = time.monotonic()
    executor.abort(41)
    assert executor.free_slots(4) == 1
    assert executor.poll(2.0) == []  # nothing more from the aborted trial
    executor.start_trial(4, payload(ALL_NONE, trial_id=42, epochs=1))
    assert [e.kind for e in drive(executor, {42: 1})] == ["setup", "epoch", "final"]
    assert time.monotonic() - started < 60
    executor.close_job(4)


def test_an_epoch_and_the_failure_after_it_in_one_batch_end_the_trial_cleanly(executor: RayExecutor) -> None:
    """Found on CI: the epoch queued after a good one failed at once, both results came back in one
    poll, the failure freed the slot, and the manager's call for the next epoch (on the good one's
    event) hit a trial the executor no longer held: the whole job failed with an internal error."""
    import ray

    from tests.service.jobs.test_logs import FAILING

    executor.open_job(6, 1, TrialResources(cpus=1))
    executor.start_trial(6, payload(trial_id=61, epochs=3, nn_name="failing", nn_code=FAILING))
    executor.queue_rest(61, 3)
    pending = list(executor._pending)
    ray.wait(pending, num_returns=len(pending), timeout=120)  # every result in before the first poll
    events = drive(executor, {61: 3})
    assert [e.kind for e in events] == ["setup", "epoch", "error"]
    assert "gave up in the second epoch" in (events[-1].error or "")
    assert executor.free_slots(6) == 1
    executor.close_job(6)
