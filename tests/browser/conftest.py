"""A real headless Chromium (Debian's package, driven by Playwright) against a real Cellar server.

The browser's network is cut off from everything but the server: a page that needed a CDN would not
render, as on a machine without internet. Screenshots go to ``build/test-artifacts/``.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from service.api import create_app
from service.settings import Settings
from service.store import Store, upgrade
from tests.service.server import free_port

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "build" / "test-artifacts"
#: Debian's chromium; `make test` installs it when it is missing
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


class LocalServer:
    """``create_app`` served by uvicorn in a thread on a free loopback port (no job manager)."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LocalServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    url = f"sqlite:///{tmp_path_factory.mktemp('browser') / 'cellar.db'}"
    store = Store(url)
    upgrade(store)
    store.dispose()
    with LocalServer(Settings(database_url=url, api_key="browser-key", start_manager=False)) as server:
        yield server


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: `make test` installs Debian's chromium package (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic"],
        )
        yield browser
        browser.close()


@pytest.fixture
def offline_page(browser: Any, api: LocalServer) -> Iterator[tuple[Any, list[str], list[str]]]:
    """A page that may reach the server only; yields (page, requests refused, console errors)."""
    context = browser.new_context()
    refused: list[str] = []
    errors: list[str] = []

    def route(request_route: Any) -> None:
        if request_route.request.url.startswith(api.url):
            request_route.continue_()
        else:
            refused.append(request_route.request.url)
            request_route.abort("internetdisconnected")

    context.route("**/*", route)
    page = context.new_page()
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page, refused, errors
    context.close()


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
