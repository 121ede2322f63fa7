"""A job simulated on a results table, in the dashboard: marked as such in the jobs list and on its
page, with its simulated time; a screened job, with what its workers scored (a server with a real
job manager, a real browser)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from service.settings import Settings
from service.store import Store, upgrade
from service.tabular import import_table
from tests.browser.conftest import LocalServer, Offline
from tests.browser.test_dashboard import KEY, submit, wait
from workers.inline_executor import InlineExecutor

SHIPPED = Path(__file__).resolve().parents[2] / "benchmarks" / "tables" / "nb201-c4-4ops-digits.jsonl.xz"


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("simulated")
    url = f"sqlite:///{folder / 'cellar.db'}"
    store = Store(url)
    upgrade(store)
    import_table(store, SHIPPED)
    store.dispose()
    settings = Settings(database_url=url, api_key=KEY, poll_interval_s=0.05, artifacts_dir=folder / "artifacts")
    with LocalServer(settings, executor=InlineExecutor()) as server:
        body = {"name": "on-the-table", "search_space": {"kind": "nb201"},
                "dataset": "digits", "executor": {"table": "nb201-c4-4ops-digits"},
                "strategy": {"sampler": "evolution", "seed": 0}, "budget": {"max_trials": 50}}  # fmt: skip
        job_id = submit(server, body)
        assert wait(server, job_id)["status"] == "succeeded"
        yield server, job_id


def test_a_simulated_job_is_marked_in_the_list_and_on_its_page(browser: Any, simulated: Any) -> None:
    server, job_id = simulated
    offline = Offline(browser, server)
    try:
        page = offline.page("/")
        row = page.locator(f"tr[data-job='{job_id}']")
        row.wait_for()
        tag = row.locator(".tag")
        assert tag.inner_text().strip() == "simulated"
        assert tag.get_attribute("title") == "simulated on results table nb201-c4-4ops-digits"
        page = offline.page(f"/jobs/{job_id}")
        page.wait_for_selector("[data-fact='simulated on']")
        assert page.locator("[data-fact='simulated on'] b").inner_text() == "table nb201-c4-4ops-digits"
        assert page.locator("[data-fact='simulated time']").count() == 1
        assert page.locator("[data-fact='elapsed']").count() == 0
        offline.check_clean()
    finally:
        offline.close()


def test_a_screened_job_shows_what_its_workers_scored(browser: Any, simulated: Any) -> None:
    server, _ = simulated
    body = {"name": "screened", "search_space": {"kind": "nb201", "params": {"channels": 4, "cells_per_stage": 1}},
            "dataset": "digits", "strategy": {"sampler": "random", "screen": {"proxy": "synflow", "samples": 12, "keep": 2}},
            "budget": {"max_trials": 3, "epochs": 1}}  # fmt: skip
    job_id = submit(server, body)
    assert wait(server, job_id)["status"] == "succeeded"
    offline = Offline(browser, server)
    try:
        page = offline.page(f"/jobs/{job_id}")
        page.wait_for_selector("[data-fact='screened']")
        text = page.locator("[data-fact='screened'] b").inner_text()
        assert text.startswith("12 by synflow in ") and text.endswith(", best 2 first"), text
        offline.check_clean()
    finally:
        offline.close()
