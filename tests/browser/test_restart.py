"""A job's page stays open while the server running the job stops and a new one resumes it: the
page follows the job to its end without a reload (a real ``cellar serve`` with its own Ray)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import screenshot
from tests.service.bodies import job_body
from tests.service.server import KEY, Server

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(400)]


def test_a_job_page_follows_its_job_across_a_server_restart(browser: Any, tmp_path: Path) -> None:
    server = Server(tmp_path, f"sqlite:///{tmp_path / 'cellar.db'}").start()
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        body = job_body(name="across-a-restart", strategy={"sampler": "random", "seed": 21},
                        budget={"max_trials": 6, "epochs": 3, "parallelism": 2})
        job_id = httpx.post(f"{server.url}/v1/jobs", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=30).json()["id"]
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{server.url}/jobs/{job_id}")
        page.wait_for_function("document.querySelector('#job-state').textContent === 'running'", timeout=60_000)
        page.evaluate("window.stillTheSamePage = true")
        page.wait_for_function("[...document.querySelectorAll('#trials tbody tr')].some(r => r.innerText.includes('running'))",
                               timeout=60_000)
        server.stop()  # SIGTERM: the server hands the job back; its event stream ends
        server.start()  # the same port: the page's next try reaches the new server, which resumes the job
        page.wait_for_function("document.querySelector('#job-state').textContent === 'succeeded'", timeout=240_000)
        page.wait_for_function(
            "[...document.querySelectorAll('#trials tbody tr')].filter(r => r.innerText.includes('complete')).length === 6",
            timeout=30_000,
        )
        assert page.evaluate("window.stillTheSamePage") is True
        assert "6/6" in page.locator("[data-fact=trials]").inner_text()
        screenshot(page, "dashboard-after-restart")
        assert errors == [], errors  # the outage shows as refused requests only, never as a script error
    finally:
        context.close()
        server.stop()
