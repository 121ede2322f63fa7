"""The submission queue: submitted models wait in the store and train on Ray workers (or, without
Ray, on the server's own threads), ``settings.model_workers`` at a time per server.

``submit`` stores the submissions (``queued``; one whose code, ``prm``, dataset and seed trained
before is ``done`` at once, from the store) and wakes the dispatcher thread. The dispatcher claims
queued rows under a lease it renews, sends each to Ray as a task
(``service.lemur.sandbox.train_submission``: one CPU, and the GPUs it asked for, fractions
included) that starts the sandbox process from the Ray worker, and writes each result with its
stored run in one transaction as it comes back. Where the trainings run:

- ``model_executor="ray"``: on the cluster of the job manager's Ray executor (waits for it);
- ``"local"``: threads of the server, each following a sandbox process it started;
- ``"auto"`` (the default): Ray when the job manager runs on Ray, else local.

A clean stop hands the running rows back to the queue (their sandboxes are killed); a server that
died leaves leases that expire, and the next dispatcher claims the rows again, at most
``MAX_ATTEMPTS`` times. This module imports neither torch nor, until Ray is used, Ray.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from ..settings import Settings
from ..store import QueuedModel, Store, SubmissionStatus, utcnow
from ..store.queue import claim_submissions, hand_back_submissions, renew_submission_leases
from .sandbox import SandboxOutcome, run_in_sandbox, train_submission, worker_name
from .schemas import ModelFailure, ModelSubmission
from .submissions import ModelChecker, Prepared

__all__ = ["MAX_ATTEMPTS", "SubmissionQueue"]

log = logging.getLogger(__name__)

#: claims of one submission before it fails for good (each a server that stopped during it)
MAX_ATTEMPTS = 3


class _LocalPool:
    """``model_workers`` daemon threads, each following one sandbox at a time. A sandbox dies with
    the thread that started it, so the threads live as long as the pool."""

    def __init__(self, size: int, cancel: threading.Event) -> None:
        self._jobs: queue.SimpleQueue[tuple[Future[Any], Prepared, str | None] | None] = queue.SimpleQueue()
        self._cancel = cancel
        self._threads = [threading.Thread(target=self._work, name=f"cellar-model-{i}", daemon=True) for i in range(size)]
        for thread in self._threads:
            thread.start()

    def submit(self, prepared: Prepared, data_dir: str | None) -> Future[Any]:
        future: Future[Any] = Future()
        self._jobs.put((future, prepared, data_dir))
        return future

    def _work(self) -> None:
        while (item := self._jobs.get()) is not None:
            future, prepared, data_dir = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                outcome = run_in_sandbox(prepared.payload, prepared.limits, data_dir=data_dir, cancel=self._cancel)
                future.set_result((outcome, worker_name()))
            except BaseException as error:  # reported to the dispatcher, which keeps going
                future.set_exception(error)

    def close(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)


class _RayPool:
    """Ray tasks, one per submission: one CPU and the GPUs it asked for."""

    def __init__(self) -> None:
        import ray

        self._ray = ray
        self._task = ray.remote(max_retries=0)(train_submission)
        self._refs: list[Any] = []

    def submit(self, prepared: Prepared, data_dir: str | None) -> Future[Any]:
        limits = prepared.limits.__dict__
        ref = self._task.options(num_cpus=1, num_gpus=prepared.submission.gpus).remote(prepared.payload, limits, data_dir)
        self._refs.append(ref)
        return ref.future()

    def close(self) -> None:
        for ref in self._refs:
            try:
                self._ray.cancel(ref, force=True)  # kills the worker; its sandbox dies with it
            except Exception:  # finished, or Ray is gone already
                pass
        self._refs.clear()


class SubmissionQueue:
    """Stores submissions, trains them and stores their results (see the module's docstring)."""

    def __init__(
        self, store: Store, settings: Settings, checker: ModelChecker, *, ray_ready: Callable[[], bool | None] | None = None
    ) -> None:
        self.store, self.settings, self.checker = store, settings, checker
        #: None: no Ray here (train locally); else whether the job manager's Ray is connected yet
        self._ray_ready = ray_ready if settings.model_executor != "local" else None
        self.owner = f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop, self._wake, self._cancel = threading.Event(), threading.Event(), threading.Event()
        self._inflight: dict[int, tuple[Future[Any], Prepared]] = {}
        self._pool: _LocalPool | _RayPool | None = None
        self._thread: threading.Thread | None = None
        self._renewed = 0.0
        self.backend = "starting"

    # ---- the API's side --------------------------------------------------------------------------
    def submit(self, submissions: list[ModelSubmission], *, owner_key_id: int | None = None) -> list[QueuedModel]:
        """Store ``submissions`` in one transaction: queued, or done from the store's cache; owned by
        the API key ``owner_key_id`` (None: the bootstrap key)."""
        prepared = [self.checker.prepare(s) for s in submissions]
        rows = []
        with self.store.write() as session:
            for item in prepared:
                row = QueuedModel(
                    status=SubmissionStatus.QUEUED, name=item.name, request=item.submission.model_dump(),
                    gpus=item.submission.gpus, attempts=0, created_at=utcnow(), owner_key_id=owner_key_id,
                )  # fmt: skip
                cached = self.checker.cached(session, item)
                if cached is not None:
                    row.status, row.result, row.run_id = SubmissionStatus.DONE, cached.model_dump(mode="json"), cached.run_id
                    row.started_at = row.finished_at = row.created_at
                session.add(row)
                rows.append(row)
            session.flush()
            for row in rows:
                session.expunge(row)
        self._wake.set()
        return rows

    def get(self, submission_id: int) -> QueuedModel | None:
        with self.store.read() as session:
            row = session.get(QueuedModel, submission_id)
            if row is not None:
                session.expunge(row)
            return row

    def gpu_capacity(self) -> float | None:
        """The Ray cluster's GPUs (infinite while Ray is still starting), or None: trained locally."""
        ready = self._ray_ready() if self._ray_ready is not None else None
        if ready is None:
            return None
        if not ready:
            return float("inf")
        import ray

        return float(ray.cluster_resources().get("GPU", 0.0))

    # ---- the dispatcher thread ---------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="cellar-submissions", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def stop(self, timeout: float = 15.0) -> None:
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout)

    def _main(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self._round()
                except Exception:  # a store outage or a bug: the queue keeps going
                    log.exception("submission queue round failed; continuing")
                    self._stop.wait(self.settings.store_retry_s)
                self._wake.wait(self.settings.poll_interval_s if self._inflight else 2.0)
                self._wake.clear()
        finally:
            self._close()

    def _backend(self) -> _LocalPool | _RayPool | None:
        """The pool to train on, once known (None while the job manager's Ray is starting)."""
        if self._pool is None:
            ready = self._ray_ready() if self._ray_ready is not None else None
            if ready is None:
                self._pool, self.backend = _LocalPool(self.settings.model_workers, self._cancel), "local"
            elif ready:
                self._pool, self.backend = _RayPool(), "ray"
        return self._pool

    def _round(self) -> None:
        self._collect()
        lease_s = self.settings.lease_s
        if self._inflight and time.monotonic() - self._renewed > lease_s / 3:
            with self.store.write() as session:
                renew_submission_leases(session, list(self._inflight), owner=self.owner, lease_s=lease_s)
            self._renewed = time.monotonic()
        pool = self._backend()
        free = self.settings.model_workers - len(self._inflight)
        if pool is None or free <= 0 or self._stop.is_set():
            return
        with self.store.write() as session:
            claimed = [(row.submission_id, dict(row.request), row.attempts) for row in
                       claim_submissions(session, owner=self.owner, lease_s=lease_s, limit=free)]  # fmt: skip
        self._renewed = time.monotonic() if claimed else self._renewed
        data_dir = str(self.settings.data_dir) if self.settings.data_dir else None
        for submission_id, request, attempts in claimed:
            try:
                prepared = self.checker.prepare(ModelSubmission.model_validate(request))
            except Exception as error:  # the dataset's files went away since it was accepted
                self._finish_failed(submission_id, request, f"could not prepare the training: {error}")
                continue
            if attempts > MAX_ATTEMPTS:
                self._finish_failed(
                    submission_id, request,
                    f"the servers training it stopped {MAX_ATTEMPTS} times before it finished; submit it again",
                )  # fmt: skip
                continue
            self._inflight[submission_id] = (pool.submit(prepared, data_dir), prepared)

    def _collect(self) -> None:
        for submission_id, (future, prepared) in list(self._inflight.items()):
            if not future.done():
                continue
            del self._inflight[submission_id]
            try:
                outcome, worker = future.result()
            except Exception as error:  # the worker died, Ray went away: train it again later
                log.warning("submission %s: its worker failed (%s); it goes back to the queue", submission_id, error)
                with self.store.write() as session:
                    hand_back_submissions(session, [submission_id], owner=self.owner, count_attempt=True)
                continue
            if outcome.failure is not None and outcome.failure.get("kind") == "cancelled":
                continue  # the server is stopping: handed back in _close
            self._finish(submission_id, prepared, outcome, worker)

    def _finish(self, submission_id: int, prepared: Prepared, outcome: SandboxOutcome, worker: str) -> None:
        with self.store.write() as session:
            row = session.get(QueuedModel, submission_id)
            if row is None or row.owner != self.owner or row.status != SubmissionStatus.RUNNING:
                return  # deleted, or taken over by another server after this one stalled
            result = self.checker.complete(session, prepared, outcome)
            row.status, row.result, row.run_id = SubmissionStatus.DONE, result.model_dump(mode="json"), result.run_id
            row.worker, row.finished_at, row.lease_until = worker, utcnow(), None

    def _finish_failed(self, submission_id: int, request: dict[str, Any], message: str) -> None:
        failure = ModelFailure(kind="runtime", message=message)
        with self.store.write() as session:
            row = session.get(QueuedModel, submission_id)
            if row is None:
                return
            result = self.checker.unrun(ModelSubmission.model_validate(request), row.name, failure)
            row.status, row.result, row.finished_at = SubmissionStatus.DONE, result.model_dump(mode="json"), utcnow()

    def _close(self) -> None:
        """Stop the trainings and hand their rows back to the queue."""
        self._cancel.set()
        if self._pool is not None:
            self._pool.close()
        ids = list(self._inflight)
        self._inflight.clear()
        if ids:
            try:
                with self.store.write() as session:
                    hand_back_submissions(session, ids, owner=self.owner)
            except Exception:  # the store is down: the leases expire and another server takes them
                log.exception("could not hand back submissions %s; they resume once their leases expire", ids)
