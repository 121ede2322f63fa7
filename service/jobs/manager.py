"""The job manager: one thread that admits jobs and drives every active job's runner.

It owns the executor. Each round (``tick``) it renews its leases, starts queued jobs (and resumes
interrupted ones) while the cluster has room, hands the workers' reports to the runners, then
applies cancels and limits and starts new trials. A job is run by one server at a time: the one
holding its lease (``service.store.leases``).

A clean stop (``request_stop``; the API calls it on SIGTERM or Ctrl-C) ends the loop; the thread
then hands its jobs back (gives their leases back) before it stops the executor: a server started
next resumes the jobs at once, even if stopping Ray is cut short, and runs the trials that were
running again from their start, in place.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import uuid
from typing import Any

from workers.executor import Executor, ExecutorError, ExecutorEvent

from ..errors import StoreUnavailableError
from ..settings import Settings
from ..store import Job, Store, leases
from .runner import JobRunner
from .spec import JobCreate

__all__ = ["JobManager"]

log = logging.getLogger(__name__)

#: how long the executor's status is reused (``status``)
_STATUS_EVERY_S = 1.0


def _demand(runner: JobRunner) -> dict[str, float]:
    """What one slot of the runner's job holds while the job runs."""
    resources = runner.spec.resources
    return {"CPU": resources.cpus_per_trial, "GPU": resources.gpus_per_trial}


def _slots_within(runner: JobRunner, free: dict[str, float]) -> int:
    """How many of the job's ``parallelism`` slots fit in ``free`` resources (0: none)."""
    slots = runner.parallelism
    for name, need in _demand(runner).items():
        if need > 0:
            available = round(free.get(name, 0.0), 4)  # Ray counts resources in 1e-4 units
            slots = min(slots, math.floor(available / need + 1e-9))
    return max(0, slots)


class JobManager:
    """Owns the executor and the runners; one thread, started and stopped with the API.

    ``tick()`` is one round of work; the thread calls it in a loop (tests may call it directly).
    """

    def __init__(self, store: Store, executor: Executor, settings: Settings, *, max_running_jobs: int | None = None) -> None:
        self.store = store
        self.executor = executor
        self.settings = settings
        self.max_running_jobs = max_running_jobs or settings.max_running_jobs
        self.runners: dict[int, JobRunner] = {}
        self._status_cache: tuple[float, dict[str, Any] | None] = (0.0, None)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        #: events whose handling failed on a store outage; handled again before new ones
        self._retry: list[ExecutorEvent] = []
        #: this server's name on the leases of the jobs it runs
        self.owner = f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._renewed = 0.0
        #: when the queue and the cancel flags were last read
        self._looked = 0.0
        self._told_waiting: set[tuple[int, str]] = set()
        self._holders_checked = 0.0
        self.state = "starting"
        self.error: str | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="cellar-job-manager", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        """Begin stopping without waiting: no trial starts any more; the thread hands the jobs back
        and stops the executor. Safe from any thread; ``stop`` waits for it."""
        self._stop.set()
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error(
                    "the job manager did not stop within %g s; jobs it did not hand back are taken over "
                    "once their leases expire", timeout,
                )

    def wake(self) -> None:
        """Look at the store now (a job was submitted or cancelled)."""
        self._wake.set()

    def status(self, ask: bool = True, stale: bool = False) -> dict[str, Any] | None:
        """The manager's state and the executor's own status, asked at most once a second (Ray's
        answer is a round trip to its control store, and /healthz may be polled many times a
        second). With ``ask=False``: ``None`` instead of that round trip, when the answer kept is
        stale (the event loop then asks in a thread); with ``stale`` too, the stale answer, if the
        executor was ever asked."""
        status: dict[str, Any] = {"status": self.state, "running_jobs": len(self.runners)}
        if self.error:
            status["error"] = self.error
        if self.state == "ok":
            asked, answer = self._status_cache
            old = answer is None or time.monotonic() - asked > _STATUS_EVERY_S
            if old and not ask:
                return status | answer if stale and answer is not None else None
            try:
                if old:
                    answer = self.executor.status()
                    self._status_cache = (time.monotonic(), answer)
                status.update(answer)
            except Exception as error:  # status is diagnostic; never fail a health check on it
                status["status"], status["error"] = "error", str(error)
        return status

    # ---- the thread --------------------------------------------------------------------------
    def _main(self) -> None:
        while not self._stop.is_set():
            try:
                self.executor.connect()
                break
            except ExecutorError as error:
                self.state, self.error = "error", str(error)
                log.error("%s; trying again in %g s", error, self.settings.executor_retry_s)
                self._stop.wait(self.settings.executor_retry_s)
        else:
            self._hand_back()
            return
        self.state, self.error = "ok", None
        try:
            while not self._stop.is_set():
                try:
                    self.tick()
                    self.error = None
                except StoreUnavailableError as error:
                    self.error = str(error)
                    log.warning("store unavailable, retrying: %s", error)
                    self._stop.wait(self.settings.store_retry_s)
                except Exception as error:  # a bug or an executor outage must not end the thread
                    self.error = f"{type(error).__name__}: {error}"
                    log.exception("job manager tick failed; continuing")
                    self._stop.wait(self.settings.store_retry_s)
        finally:
            self.close()

    def close(self) -> None:
        """A clean stop's last steps, which the thread takes as it ends (whoever drives ``tick``
        itself calls it instead): hand the jobs back first, then drop the workers and stop the
        executor. Call it from the thread that connected the executor (Ray binds its local
        processes to that thread's life)."""
        self._hand_back()
        try:
            for runner in self.runners.values():
                runner.abandon()
        finally:
            self.runners.clear()
            self.executor.shutdown()
            self.state = "stopped"
            log.info("job manager stopped")

    def tick(self) -> None:
        """One round: start jobs, handle the workers' reports, then apply cancels and limits and
        start new trials. Reports come first, so a cancel never discards a result already in."""
        self._renew_leases()
        # the queue and the cancel flags are read once per poll interval (or when woken), not on
        # every report: a trial sends three, and each read is a query on the manager's path
        look = self._wake.is_set() or time.monotonic() - self._looked >= self.settings.poll_interval_s
        if look:
            self._wake.clear()
            self._looked = time.monotonic()
            self._adopt()
        if any(runner.running for runner in self.runners.values()):
            self._handle_events(self.executor.poll(self.settings.poll_interval_s))
        elif self._retry:
            self._handle_events([])
        else:
            self._wake.wait(self.settings.poll_interval_s)
        cancels: dict[int, bool] = {}
        if look:
            with self.store.read() as session:
                cancels = leases.cancel_flags(session, list(self.runners))
        for job_id, runner in list(self.runners.items()):
            if not runner.done:
                self._guard(runner, runner.advance, cancels.get(job_id, False))
            if runner.done:
                del self.runners[job_id]

    # ---- leases ------------------------------------------------------------------------------
    def _renew_leases(self) -> None:
        """Extend this server's leases (every third of ``lease_s``) and heartbeat its running
        trials. A job whose lease another server took over (this one stalled past it) is dropped
        here without writing anything more."""
        lease_s = self.settings.lease_s
        if not self.runners or time.monotonic() - self._renewed < lease_s / 3:
            return
        job_ids = list(self.runners)
        with self.store.write() as session:
            held = leases.renew_leases(session, job_ids, owner=self.owner, lease_s=lease_s)
        self._renewed = time.monotonic()
        for job_id in job_ids:
            if job_id not in held and not self.runners[job_id].done:
                log.error("job %s: lease lost to another server; this server stops running it", job_id)
                runner = self.runners.pop(job_id)
                runner.reports.abort_all()
                runner.abandon()

    def _hand_back(self) -> None:
        """On a clean stop: give the leases back, so that a server started next resumes the jobs at
        once instead of waiting for the leases to expire. Their running trials run again there,
        from their start, in place."""
        try:
            with self.store.write() as session:
                released, interrupted = leases.hand_back(session, owner=self.owner)
        except Exception as failure:  # the store may be what stopped us; the leases then simply expire
            log.warning(
                "could not hand jobs back (%s); another server takes them over once their leases expire "
                "(CELLAR_LEASE_S = %g s)", failure, self.settings.lease_s,
            )
            return
        if released:
            log.info(
                "handed jobs %s back (%d trial(s) were running: they run again, in place, when a server "
                "resumes the jobs, at once)", released, interrupted,
            )

    def _handle_events(self, events: list[ExecutorEvent]) -> None:
        events, self._retry = self._retry + events, []
        for index, event in enumerate(events):
            runner = next((r for r in self.runners.values() if not r.done and event.trial_id in r.running), None)
            if runner is None:
                continue
            try:
                self._guard(runner, runner.on_event, event)
            except StoreUnavailableError:
                # handlers write before they change any state: handle it again once the store answers
                self._retry = events[index:]
                raise

    def _guard(self, runner: JobRunner, method: Any, *args: Any) -> None:
        """Run a runner step; a bug or a permanent store error fails that job, never the manager."""
        try:
            method(*args)
        except StoreUnavailableError:
            raise
        except Exception as error:
            log.exception("job %s failed in the manager", runner.job_id)
            try:
                runner.reports.abort_all()
            finally:
                runner.done = True
                self.executor.close_job(runner.job_id)
            self._fail_job(runner.job_id, error)

    def _fail_job(self, job_id: int, error: Exception) -> None:
        message = str(error) if isinstance(error, ExecutorError) else f"internal error: {error!r}"
        with self.store.write() as session:
            leases.fail_job(session, job_id, message)

    # ---- admission ---------------------------------------------------------------------------
    def _adopt(self) -> None:
        """Start queued (and resume interrupted) jobs, first come first served, while the cluster
        has room for at least one slot of the next job. A job holds its slots until it ends, so
        admitting more than fits could leave two jobs each waiting for the other's workers."""
        free_jobs = self.max_running_jobs - len(self.runners)
        if free_jobs <= 0:
            return
        with self.store.read() as session:
            job_ids = leases.adoptable_jobs(session, owner=self.owner, running=list(self.runners), limit=free_jobs)
            expired = leases.expired_leases(session, job_ids, owner=self.owner)
            if time.monotonic() - self._holders_checked > 5.0:
                self._holders_checked = time.monotonic()
                self._say_who_holds(leases.lease_holders(session, owner=self.owner))
        if not job_ids:
            return
        total = self.executor.capacity()
        nodes = self.executor.node_resources()
        free = dict(total)
        for runner in self.runners.values():
            for name, need in _demand(runner).items():
                free[name] = free.get(name, 0.0) - need * runner.slots
        for job_id in job_ids:
            try:
                runner = self._runner(job_id)
            except StoreUnavailableError:
                raise
            except Exception as error:  # e.g. a stored spec this version can no longer read
                log.exception("job %s cannot be run", job_id)
                self._fail_job(job_id, error)
                continue
            if not isinstance(runner, JobRunner):  # looked up in a results table, in a thread of its own: no workers
                self._guard(runner, runner.resume, 0, self.owner, self.settings.lease_s)
                if not runner.done:
                    self.runners[job_id] = runner
                continue
            if total and not any(_slots_within(runner, node) for node in nodes):
                needs = ", ".join(f"{v:g} {k}" for k, v in _demand(runner).items() if v > 0)
                have = "; ".join(", ".join(f"{v:g} {k}" for k, v in node.items()) for node in nodes) or "no nodes"
                message = f"one trial needs {needs} but no Ray node has that (nodes: {have})"
                if not self.executor.elastic:
                    self._fail_job(job_id, ExecutorError(f"{message}; lower resources.cpus_per_trial / gpus_per_trial"))
                    continue
                with self.store.write() as session:
                    leases.note_waiting(session, job_id, f"waiting: {message}; the job starts when such a node joins")
                break
            slots = _slots_within(runner, free) if total else runner.parallelism
            if slots == 0:
                break  # wait for running jobs to free workers; keep the queue's order
            self._guard(runner, runner.resume, slots, self.owner, self.settings.lease_s, job_id in expired)
            if not runner.done:
                self.runners[job_id] = runner
                for name, need in _demand(runner).items():
                    free[name] = free.get(name, 0.0) - need * slots
                if job_id in expired:
                    holder, expired_at = expired[job_id]
                    log.warning(
                        "job %s: taking it over from server %s, whose lease expired at %s (UTC)",
                        job_id, holder, expired_at.isoformat(timespec="seconds"),
                    )
                log.info("job %s started with %s slot(s)", job_id, slots)

    def _runner(self, job_id: int) -> Any:
        """The job's runner: a ``JobRunner`` on the executor, or for a job whose body names a results
        table, a ``SimulatedRunner`` that looks its trials up there."""
        with self.store.read() as session:
            job = session.get(Job, job_id)
            spec = JobCreate.model_validate(job.spec) if job is not None else None
        if spec is not None and spec.simulated:
            from ..tabular.serve import SimulatedRunner  # the tabular package builds on this one

            return SimulatedRunner(job_id, self.store, self.settings, spec)
        return JobRunner(job_id, self.store, self.executor, self.settings)

    def _say_who_holds(self, held: list[tuple[int, str, Any]]) -> None:
        """Log, once per job and holder, an active job another server's live lease keeps from us."""
        for job_id, holder, expires in held:
            if (job_id, holder) not in self._told_waiting:
                self._told_waiting.add((job_id, holder))
                log.warning(
                    "job %s is held by server %s until %s (UTC); it is resumed here if that server stops "
                    "renewing its lease (CELLAR_LEASE_S)",
                    job_id, holder, expires.isoformat(timespec="seconds") if expires else "?",
                )
