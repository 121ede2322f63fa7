"""Stopping the server: a signal that long-lived responses and the job manager watch, and the
uvicorn server that sets it the moment a stop begins.

uvicorn stops in this order: stop accepting, wait for open responses to end (without a limit
unless ``timeout_graceful_shutdown``), then run the app's lifespan shutdown. An event stream never
ends on its own, so without a signal it would hold the whole stop up, and the job manager would go
on running the jobs meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from collections.abc import Callable
from types import FrameType

import uvicorn

__all__ = ["CellarServer", "ShutdownSignal"]

log = logging.getLogger("cellar")


class ShutdownSignal:
    """Set once, when the server begins to stop; safe to set from any thread or a signal handler.

    Event streams ``await wait(timeout)`` instead of sleeping and end when it says so. Callbacks
    (``on_set``) run on the event loop once it is set and must not block (``JobManager.request_stop``
    only sets a flag)."""

    def __init__(self) -> None:
        self._flag = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._callbacks: list[Callable[[], None]] = []

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start a serving period on ``loop`` (the lifespan's startup calls it): not set, no
        callbacks. An app served twice (tests) starts afresh each time."""
        self._flag.clear()
        self._callbacks.clear()
        self._loop, self._event = loop, asyncio.Event()

    def on_set(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)
        if self._flag.is_set():
            callback()

    def is_set(self) -> bool:
        return self._flag.is_set()

    def set(self) -> None:
        """Mark the stop; wake the streams and run the callbacks on the event loop, not inside a
        signal handler (which may have interrupted the very code a callback would call into)."""
        if self._flag.is_set():
            return
        self._flag.set()
        if self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._fire)
                return
            except RuntimeError:  # the loop is closed: nobody waits on it any more
                pass
        self._fire()

    def _fire(self) -> None:
        if self._event is not None:
            self._event.set()
        for callback in self._callbacks:
            try:
                callback()
            except Exception:  # one failing callback must not keep the others from running
                log.exception("a shutdown callback failed")

    async def wait(self, timeout: float) -> bool:
        """Sleep ``timeout`` seconds, less if the server begins to stop; whether it is stopping."""
        if self._event is None:
            await asyncio.sleep(timeout)
        else:
            try:
                await asyncio.wait_for(self._event.wait(), timeout)
            except TimeoutError:
                pass
        return self._flag.is_set()


class CellarServer(uvicorn.Server):
    """uvicorn's server, telling the app the moment a stop begins.

    First SIGTERM or SIGINT: stop accepting, set ``shutdown`` (event streams end with a last event
    within a fraction of a second, the job manager hands its jobs back and stops Ray), wait for the
    other open responses at most ``timeout_graceful_shutdown``, then the lifespan shutdown. Second:
    stop waiting for responses; the lifespan shutdown (which waits for the job manager, seconds)
    still runs, unlike plain uvicorn's forced exit. Third: exit at once."""

    def __init__(self, config: uvicorn.Config, shutdown: ShutdownSignal) -> None:
        super().__init__(config)
        self.shutdown_signal = shutdown
        self._signals = 0

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals >= 3:
            os.write(2, f"cellar: signal {sig} received a third time; exiting now\n".encode())
            os._exit(128 + sig)
        super().handle_exit(sig, frame)
        if self._signals == 2:
            self.force_exit = True  # plain uvicorn does so on a second SIGINT only
        self.shutdown_signal.set()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets)
        ran = getattr(self.lifespan, "shutdown_event", None)  # LifespanOn's; set once the app's shutdown ran
        if self.force_exit and ran is not None and not ran.is_set():
            # plain uvicorn skips the app's shutdown on a forced exit; the job manager's stop is waited for
            await self.lifespan.shutdown()
