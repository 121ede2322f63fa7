"""Simulated jobs on a server: a job whose body names a results table runs here, not on Ray.

The job manager adopts such a job like any other (it holds the job's lease and renews it), but
hands it to a ``SimulatedRunner``: a thread that loads the table, runs the search in memory with
``Simulation`` (the job runner's own parts, on the table's simulated clock) and writes the job's
trials and end in one transaction (``simulate_job``'s path). It takes no worker slot.

A cancel stops the simulation where it is and writes what it ran, cancelled. A server that stops
mid-simulation has written nothing; the job goes back with its lease and the next server runs the
simulation again from its start (a simulation is deterministic and takes seconds).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from ..jobs.spec import JobCreate
from ..settings import Settings
from ..store import Store, leases
from .load import load_table
from .simulate import Simulation, Stopped, write_simulation

__all__ = ["SimulatedRunner"]

log = logging.getLogger(__name__)


class _NoReports:
    """What the manager calls on a runner's reports; a simulated job has no workers to stop."""

    running: dict[int, Any] = {}

    def abort_all(self) -> None:
        pass


class SimulatedRunner:
    """The manager's runner for a simulated job: the same surface as ``JobRunner``, no slots."""

    simulated = True

    def __init__(self, job_id: int, store: Store, settings: Settings, spec: JobCreate) -> None:
        assert spec.executor is not None
        self.job_id = job_id
        self.store = store
        self.settings = settings
        self.spec = spec
        self.parallelism = 0
        self.slots = 0
        self.done = False
        self.running: dict[int, Any] = {}
        self.reports = _NoReports()
        self._cancel = threading.Event()
        self._abandon = threading.Event()
        self._thread: threading.Thread | None = None

    def resume(self, slots: int, owner: str, lease_s: float, lease_expired: bool = False) -> None:
        with self.store.write() as session:
            if not leases.claim_job(session, self.job_id, owner=owner, lease_s=lease_s):
                self.done = True
                return
        self._thread = threading.Thread(target=self._run, name=f"cellar-simulation-{self.job_id}", daemon=True)
        self._thread.start()
        log.info("job %s: simulated on results table %r", self.job_id, self.spec.executor.table)  # type: ignore[union-attr]

    def _run(self) -> None:
        assert self.spec.executor is not None
        try:
            table = load_table(self.store, self.spec.executor.table)
            simulation = Simulation(self.spec, table, job_id=self.job_id, data_dir=self.settings.data_dir)
            status = simulation.run(stop=self._cancel, abandon=self._abandon)
            with self.store.write() as session:
                write_simulation(session, simulation)
            self.done = True  # written, the lease given back: nothing for the manager to renew
            log.info("simulated job %s %s: %d trials", self.job_id, status, len(simulation.trials))
        except Stopped:
            log.info("simulated job %s: the server stopped; the next server runs it again", self.job_id)
        except Exception as error:
            log.exception("simulated job %s failed", self.job_id)
            try:
                with self.store.write() as session:
                    leases.fail_job(session, self.job_id, f"internal error: {error!r}")
            except Exception:
                log.exception("simulated job %s: could not store its failure", self.job_id)

    def advance(self, cancel_requested: bool) -> None:
        if cancel_requested:
            self._cancel.set()
        if self._thread is not None and not self._thread.is_alive():
            self.done = True

    def on_event(self, event: Any) -> None:  # no workers, no events
        pass

    def abandon(self) -> None:
        """Server shutdown: stop without writing; the job runs again on the next server."""
        self._abandon.set()
        if self._thread is not None:
            self._thread.join(10.0)
