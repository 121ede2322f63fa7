"""``/v1/jobs/{job_id}/events``: a job's progress as server-sent events."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from ..store import JobStatus
from .deps import ReadAccess, SettingsDep, StoreDep
from .errors import responses
from .jobs import job_view

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["jobs"], responses=responses(422, 503))

#: the last event of a stream that ends because the server stops (the job goes on)
SHUTDOWN_EVENT = (
    'event: shutdown\ndata: {"detail": "the server is shutting down; the job goes on: '
    'follow it again once a server is back"}\n\n'
)


@router.get(
    "/jobs/{job_id}/events",
    dependencies=[ReadAccess],
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "a stream of `job` events; a last `shutdown` event when the server stops first",
        }
    }
    | responses(404, 422),
    response_class=StreamingResponse,
)
async def job_events(job_id: int, store: StoreDep, settings: SettingsDep, request: Request) -> StreamingResponse:
    """Server-sent events: a ``job`` event with the job's state whenever it changes, until it ends.
    A server that stops first ends the stream with a ``shutdown`` event (the job does not end)."""
    first = await run_in_threadpool(job_view, store, job_id)  # 404 before the stream starts
    shutdown = request.app.state.shutdown

    async def stream() -> AsyncIterator[str]:
        view, last = first, None
        while True:
            snapshot = view.model_dump_json()
            if snapshot != last:
                yield f"event: job\ndata: {snapshot}\n\n"
                last = snapshot
            if view.status in JobStatus.FINISHED or await request.is_disconnected():
                return
            if await shutdown.wait(settings.events_poll_s):
                yield SHUTDOWN_EVENT
                return
            view = await run_in_threadpool(job_view, store, job_id)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
