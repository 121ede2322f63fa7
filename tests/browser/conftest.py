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
    """``create_app`` served by uvicorn in a thread on a free loopback port; without ``executor``
    and with ``start_manager=False`` no job manager runs (jobs stay queued)."""

    def __init__(self, settings: Settings, executor: object | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(settings, executor=executor), host="127.0.0.1", port=self.port, log_level="warning"
        )
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


class Offline:
    """Opens pages of one server in a browser context that may reach that server only, and keeps
    what the pages asked of elsewhere (``refused``) and their console errors (``errors``)."""

    def __init__(self, browser: Any, server: LocalServer) -> None:
        self.server = server
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        self.refused: list[str] = []
        self.errors: list[str] = []
        self.context.route("**/*", self._route)

    def _route(self, request_route: Any) -> None:
        if request_route.request.url.startswith(self.server.url):
            request_route.continue_()
        else:
            self.refused.append(request_route.request.url)
            request_route.abort("internetdisconnected")

    def page(self, path: str = "/") -> Any:
        page = self.context.new_page()
        page.on("console", lambda message: self.errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.goto(f"{self.server.url}{path}")
        return page

    def check_clean(self) -> None:
        assert self.refused == [], f"the page asked for {self.refused}"
        assert self.errors == [], self.errors

    def check_clean_but(self, *, expected_status: int) -> None:
        """As ``check_clean``, where the test made the API refuse a request with ``expected_status``
        (Chromium logs each refused request as a console error)."""
        refusal = f"the server responded with a status of {expected_status}"
        assert any(refusal in error for error in self.errors), self.errors
        self.errors[:] = [error for error in self.errors if refusal not in error]
        self.check_clean()

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def offline_page(browser: Any, api: LocalServer) -> Iterator[tuple[Any, list[str], list[str]]]:
    """A page that may reach the server only; yields (page, requests refused, console errors)."""
    offline = Offline(browser, api)
    page = offline.context.new_page()
    page.on("console", lambda message: offline.errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: offline.errors.append(str(error)))
    yield page, offline.refused, offline.errors
    offline.close()


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
