"""``GET /v1/jobs/{id}/events`` when the server stops: the stream ends at once with a ``shutdown``
event, so that the stop never waits for a client that follows a job (no manager, no Ray)."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from service.api import create_app
from service.api.shutdown import CellarServer
from service.settings import Settings
from service.store import Store, upgrade
from tests.service.bodies import job_body
from tests.service.server import free_port

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def settings(sqlite_url: str) -> Settings:
    store = Store(sqlite_url)
    upgrade(store)
    store.dispose()
    # a backstop far longer than the tests wait: a stream must end on the signal, not on it
    return Settings(database_url=sqlite_url, api_key=KEY, start_manager=False, shutdown_timeout_s=60)


@pytest.mark.timeout(120)  # a stream that does not end would hold the test client for good
def test_a_stream_ends_with_a_shutdown_event_once_the_server_begins_to_stop(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        job = client.post("/v1/jobs", json=job_body(), headers=AUTH).json()  # queued for good: no manager
        timer = threading.Timer(1.0, client.app.state.shutdown.set)  # what CellarServer does on SIGTERM
        timer.start()
        started = time.monotonic()
        with client.stream("GET", f"/v1/jobs/{job['id']}/events") as response:
            lines = [line for line in response.iter_lines() if line]
        took = time.monotonic() - started
    assert lines[:1] == ["event: job"] and lines[-2] == "event: shutdown", lines
    assert lines[-1].startswith('data: {"detail": "the server is shutting down; the job goes on')
    assert 0.9 < took < 5, took


@pytest.fixture
def server(settings: Settings) -> Iterator[tuple[CellarServer, threading.Thread, str]]:
    """``cellar serve``'s server in a thread (signals are the main thread's: the test calls
    ``handle_exit`` as the signal handler would)."""
    app = create_app(settings)
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=settings.shutdown_timeout_s
    )
    running = CellarServer(config, app.state.shutdown)
    thread = threading.Thread(target=running.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not running.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running.started, "the server did not start"
    yield running, thread, f"http://127.0.0.1:{port}"
    running.should_exit = running.force_exit = True
    thread.join(30)


def test_sigterm_ends_a_followed_stream_and_the_server_stops_in_seconds(
    server: tuple[CellarServer, threading.Thread, str],
) -> None:
    running, thread, url = server
    job = httpx.post(f"{url}/v1/jobs", json=job_body(), headers=AUTH, timeout=30).json()
    with httpx.stream("GET", f"{url}/v1/jobs/{job['id']}/events", timeout=20) as response:
        lines = response.iter_lines()
        assert next(lines) == "event: job"
        signalled = time.monotonic()
        running.handle_exit(signal.SIGTERM, None)
        rest = [line for line in lines if line]  # a stream that goes on fails on the read timeout
    ended = time.monotonic() - signalled
    thread.join(20)
    stopped = time.monotonic() - signalled
    assert rest[-2] == "event: shutdown", rest
    assert ended < 5 and not thread.is_alive() and stopped < 10, (ended, stopped)
