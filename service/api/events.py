"""``/v1/jobs/{job_id}/events``: a job's progress as server-sent events.

Two kinds of event, each a JSON object:

* ``job``: the job as ``GET /v1/jobs/{id}`` shows it, whenever it changes;
* ``trial``: a trial moving, ``{"kind": "started" | "epoch" | "finished", "number": ..., ...}``:
  ``started`` when a trial begins (or, on a new stream, for each trial already running),
  ``epoch`` with one epoch's metrics (``epoch``, ``loss``, ``val_loss``, ``val_metric``,
  ``elapsed_seconds``), ``finished`` with the trial's ``state``, ``values``, ``val_metric`` and
  ``error``. Trials that ended before the stream began are not replayed: read them with
  ``GET /v1/jobs/{id}/trials``.

The stream opens with a ``job`` event. Then, every ``events_poll_s`` seconds, it reads the job, then
its trials, and sends the trial events since the last read before the job's event (when the job
changed): a ``job`` event never counts a trial end that has not been told. It ends after the ``job``
event of a finished job.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from ..store import JobStatus, Store, TrialState, queries
from .deps import ReadAccess, SettingsDep, StoreDep
from .errors import responses
from .jobs import job_view

__all__ = ["TrialWatch", "router"]

router = APIRouter(prefix="/v1", tags=["jobs"], responses=responses(422, 503))

#: the last event of a stream that ends because the server stops (the job goes on)
SHUTDOWN_EVENT = (
    'event: shutdown\ndata: {"detail": "the server is shutting down; the job goes on: '
    'follow it again once a server is back"}\n\n'
)


def _sse(event: str, data: dict[str, Any] | str) -> str:
    return f"event: {event}\ndata: {data if isinstance(data, str) else json.dumps(data)}\n\n"


class TrialWatch:
    """One stream's memory of a job's trials: which it saw running and how many epochs it told."""

    def __init__(self, store: Store, job_id: int) -> None:
        self.store, self.job_id = store, job_id
        self.running: dict[int, int] = {}  # trial id -> the last epoch told
        self.after_number: int | None = None  # trials above it are new; None before the first poll

    def poll(self) -> list[dict[str, Any]]:
        """The trial events since the last poll, in order (the first poll: the running trials)."""
        with self.store.read() as session:
            trials, highest = queries.trial_progress(
                session, self.job_id, watched=list(self.running), after_number=self.after_number
            )
            events: list[dict[str, Any]] = []
            for trial in trials:
                if trial.trial_id not in self.running:
                    if self.after_number is None and trial.state != TrialState.RUNNING:
                        continue  # it was running at the query, ended by the time of this read
                    events.append({"kind": "started", "number": trial.number, "trial_id": trial.trial_id})
                    self.running[trial.trial_id] = 0
                for row in trial.epoch_rows:
                    if row.epoch > self.running[trial.trial_id]:
                        events.append(
                            {
                                "kind": "epoch",
                                "number": trial.number,
                                "trial_id": trial.trial_id,
                                "epoch": row.epoch,
                                "loss": row.loss,
                                "val_loss": row.val_loss,
                                "val_metric": row.val_metric,
                                "elapsed_seconds": row.elapsed_seconds,
                            }
                        )
                        self.running[trial.trial_id] = row.epoch
                if trial.state != TrialState.RUNNING:
                    del self.running[trial.trial_id]
                    events.append(
                        {
                            "kind": "finished",
                            "number": trial.number,
                            "trial_id": trial.trial_id,
                            "state": trial.state,
                            "values": trial.values,
                            "val_metric": trial.val_metric,
                            "error": trial.error,
                        }
                    )
            self.after_number = max(highest, self.after_number if self.after_number is not None else -1)
        return events


@router.get(
    "/jobs/{job_id}/events",
    dependencies=[ReadAccess],
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "a stream of `trial` and `job` events; a last `shutdown` event when the server stops first",
        }
    }
    | responses(404, 422),
    response_class=StreamingResponse,
)
async def job_events(job_id: int, store: StoreDep, settings: SettingsDep, request: Request) -> StreamingResponse:
    """Server-sent events: ``trial`` events as trials start, finish epochs and end, and a ``job``
    event with the job's state whenever it changes, until the job ends. A server that stops first
    ends the stream with a ``shutdown`` event (the job does not end)."""
    versions = request.app.state.read_cache.version
    version = await versions.read()  # read before the data it stands for
    first = await run_in_threadpool(job_view, store, job_id)  # 404 before the stream starts
    shutdown = request.app.state.shutdown
    watch = TrialWatch(store, job_id)

    async def stream() -> AsyncIterator[str]:
        view, last, current = first, first.model_dump_json(), version
        yield _sse("job", last)  # the stream opens with the job as it is
        seen: object = object()  # the store's version when the trials were last read (none yet)
        while True:
            # trials are read after the job: every trial end the job's counts include is told first
            if current is None or current != seen:
                for event in await run_in_threadpool(watch.poll):
                    yield _sse("trial", event)
                seen = current
            snapshot = view.model_dump_json()
            if snapshot != last:
                yield _sse("job", snapshot)
                last = snapshot
            if view.status in JobStatus.FINISHED or await request.is_disconnected():
                return
            if await shutdown.wait(settings.events_poll_s):
                yield SHUTDOWN_EVENT
                return
            # nothing committed to the store since the last look: nothing to read, nothing to tell
            current = await versions.read()
            if current is None or current != seen:
                view = await run_in_threadpool(job_view, store, job_id)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
