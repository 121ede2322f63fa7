"""The dashboard (``/``, ``/jobs/{id}``, ``/data``) in a real headless Chromium, against a real server
whose job manager trains real networks on digits and iris (in-process, ``InlineExecutor``).

Each page is opened with the network cut off from everything but the server; the tests read what
the page rendered (job names, trial rows, a drawn cell and its ops, plotted curves, a Pareto front,
a CSV download), check that it matches the API's answers, and that the console stayed clean.
Screenshots go to ``build/test-artifacts/``.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from search_spaces.nb201 import Cell
from service.settings import Settings
from service.store import Store, upgrade
from tests.browser.conftest import LocalServer, Offline, screenshot
from tests.service.bodies import job_body
from tests.search_spaces.lemur_models import MLP_CODE
from tests.service.jobs.test_logs import CHATTY
from workers.inline_executor import InlineExecutor

pytestmark = pytest.mark.timeout(300)

KEY = "dashboard-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
CELLS = {"kind": "nb201", "params": {"channels": 8, "cells_per_stage": 1}}
TWO_OBJECTIVES = [{"metric": "val_accuracy", "direction": "maximize"}, {"metric": "params", "direction": "minimize"}]


def submit(server: LocalServer, body: dict[str, Any]) -> int:
    response = httpx.post(f"{server.url}/v1/jobs", json=body, headers=AUTH, timeout=30)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def read(server: LocalServer, path: str, **params: Any) -> Any:
    response = httpx.get(f"{server.url}{path}", params=params, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def wait(server: LocalServer, job_id: int, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (job := read(server, f"/v1/jobs/{job_id}"))["status"] not in ("succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    assert job["status"] == "succeeded", job["error"]
    return job


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalServer, dict[str, int]]]:
    """A server with finished jobs: single-objective cells, a two-objective cell search, KANs."""
    folder = tmp_path_factory.mktemp("dashboard")
    url = f"sqlite:///{folder / 'cellar.db'}"
    store = Store(url)
    upgrade(store)
    store.dispose()
    settings = Settings(database_url=url, api_key=KEY, poll_interval_s=0.05, events_poll_s=0.2,
                        artifacts_dir=folder / "artifacts")
    with LocalServer(settings, executor=InlineExecutor()) as server:
        jobs = {
            "single": submit(server, job_body(name="cells-single", search_space=CELLS,
                                              budget={"max_trials": 5, "epochs": 2, "parallelism": 1})),
            "pareto": submit(server, job_body(name="cells-pareto", search_space=CELLS, objectives=TWO_OBJECTIVES,
                                              strategy={"sampler": "nsga2", "seed": 1, "cache": False},
                                              budget={"max_trials": 6, "epochs": 2, "parallelism": 1})),
            "three": submit(server, job_body(name="cells-three", search_space=CELLS, objectives=[
                *TWO_OBJECTIVES, {"metric": "flops", "direction": "minimize"}], strategy={"sampler": "random", "seed": 2},
                budget={"max_trials": 4, "epochs": 1, "parallelism": 1})),
            "chatty": submit(server, job_body(name="prints", search_space={"kind": "code", "params": {"nn_code": CHATTY}},
                                              budget={"max_trials": 1, "epochs": 2, "parallelism": 1})),
            "kan": submit(server, job_body(name="kan-iris", search_space={"kind": "kan", "params": {}}, dataset="iris",
                                           strategy={"sampler": "random", "seed": 0},
                                           budget={"max_trials": 2, "epochs": 2, "parallelism": 1})),
        }
        for job_id in jobs.values():
            wait(server, job_id)
        # two submitted models (check_nn): one trains, one does not parse
        for code in (MLP_CODE, MLP_CODE.replace("def forward(self, x):", "def forward(self, x)")):
            model = {"nn_code": code, "task": "img-classification", "dataset": "digits", "metric": "acc",
                     "prm": {"lr": 0.05, "momentum": 0.9, "dropout": 0.0, "batch": 64, "epoch": 1, "transform": "norm"}}
            answer = httpx.post(f"{server.url}/v1/models", json=model, headers=AUTH, timeout=300)
            assert answer.status_code == 200, answer.text
        yield server, jobs


@pytest.fixture
def browse(browser: Any, lab: tuple[LocalServer, dict[str, int]]) -> Iterator[Offline]:
    offline = Offline(browser, lab[0])
    yield offline
    offline.close()


def plotted(page: Any, plot_id: str) -> int:
    """Points plotly drew in a plot (markers of scatter traces and bars)."""
    return page.locator(f"#{plot_id} .scatterlayer .point, #{plot_id} .barlayer .point").count()


def test_jobs_page_lists_the_jobs_and_follows_a_new_one_without_reloading(
    browse: Offline, lab: tuple[LocalServer, dict[str, int]]
) -> None:
    server, jobs = lab
    page = browse.page("/")
    page.wait_for_selector("#jobs tbody tr")
    for name, job_id in (("cells-single", jobs["single"]), ("cells-pareto", jobs["pareto"]), ("kan-iris", jobs["kan"]),
                         ("prints", jobs["chatty"])):
        row = page.locator(f'#jobs tr[data-job="{job_id}"]')
        assert name in row.inner_text() and "succeeded" in row.inner_text()
    best = read(server, f"/v1/jobs/{jobs['single']}")["best_trial"]
    assert f"(#{best['number']})" in page.locator(f'#jobs tr[data-job="{jobs["single"]}"]').inner_text()
    assert "5/5" in page.locator(f'#jobs tr[data-job="{jobs["single"]}"]').inner_text()
    screenshot(page, "dashboard-jobs")

    page.evaluate("window.stillTheSamePage = true")
    fresh = submit(server, job_body(name="arrives-later", search_space=CELLS,
                                    budget={"max_trials": 2, "epochs": 1, "parallelism": 1}))
    page.wait_for_selector(f'#jobs tr[data-job="{fresh}"]', timeout=20_000)
    wait(server, fresh)
    page.wait_for_function(
        f"document.querySelector('#jobs tr[data-job=\"{fresh}\"]').innerText.includes('succeeded')", timeout=20_000
    )
    assert page.evaluate("window.stillTheSamePage") is True
    # the state filter
    page.select_option("#state-filter", "running")
    page.wait_for_function("document.querySelectorAll('#jobs tbody tr').length === 0", timeout=10_000)
    assert not page.locator("#jobs-empty").is_hidden()
    browse.check_clean()


def test_jobs_page_lists_submitted_models_with_their_failure_kinds(
    browse: Offline, lab: tuple[LocalServer, dict[str, int]]
) -> None:
    server, _ = lab
    stored = read(server, "/v1/models")["data"]
    page = browse.page("/")
    page.wait_for_function(f"document.querySelectorAll('#models tbody tr').length === {len(stored)}", timeout=20_000)
    rows = {int(r.get_attribute("data-run")): r.inner_text() for r in page.locator("#models tbody tr").all()}
    for model in stored:
        assert model["name"] in rows[model["run_id"]]
        if model["failure"]:
            assert f"{model['failure']['kind']}: " in rows[model["run_id"]] and "failed" in rows[model["run_id"]]
        else:
            assert "complete" in rows[model["run_id"]] and f"{model['accuracy']:.4f}" in rows[model["run_id"]]
    page.select_option("#model-filter", "syntax")
    page.wait_for_function("document.querySelectorAll('#models tbody tr').length === 1", timeout=10_000)
    assert "syntax: " in page.locator("#models tbody tr").inner_text()
    # a submitted model is a job of one trial: its page renders too
    model_job = next(j for j in read(server, "/v1/jobs")["data"] if j["name"] == f"model {stored[-1]['name']}")
    job_page = browse.page(f"/jobs/{model_job['id']}")
    job_page.wait_for_selector('#trials tr[data-number="0"]')
    assert "check_nn" in job_page.locator("[data-fact=sampler]").inner_text()
    job_page.locator('#trials tr[data-number="0"] td.arch').click()
    job_page.wait_for_function("document.querySelector('#trial-code').textContent.includes('class Net')")
    browse.check_clean()


def test_job_page_shows_trials_curves_importance_and_a_drawn_cell(
    browse: Offline, lab: tuple[LocalServer, dict[str, int]]
) -> None:
    server, jobs = lab
    job = read(server, f"/v1/jobs/{jobs['single']}")
    trials = read(server, f"/v1/jobs/{jobs['single']}/trials")["data"]
    page = browse.page(f"/jobs/{jobs['single']}")
    page.wait_for_selector("#trials tbody tr")
    assert "cells-single" in page.locator("#job-title").inner_text()
    assert page.locator("#job-state").inner_text() == "succeeded"
    numbers = [int(n) for n in page.locator("#trials tbody tr").evaluate_all("rows => rows.map(r => r.dataset.number)")]
    assert numbers == [t["number"] for t in trials]
    # best so far: one marker per complete trial; the best trial's learning curve is drawn
    page.wait_for_function("document.querySelectorAll('#plot-best .scatterlayer .point').length > 0")
    assert plotted(page, "plot-best") >= sum(t["state"] == "complete" for t in trials)
    page.wait_for_function("document.querySelectorAll('#plot-curves .scatterlayer .trace').length > 0")
    assert page.locator("#plot-curves .legendtext").first.text_content() == f"trial {job['best_trial']['number']}"
    page.wait_for_function("document.querySelectorAll('#plot-importance .barlayer .point').length > 0", timeout=30_000)
    importance = read(server, f"/v1/jobs/{jobs['single']}/importance")["objectives"][0]["importances"]
    assert plotted(page, "plot-importance") == len(importance) > 0

    # choose a trial: its cell is drawn with its six ops, its code shown
    chosen = trials[1]
    page.locator(f'#trials tr[data-number="{chosen["number"]}"] td.arch').click()
    page.wait_for_selector("#drawing svg.cell g.edge")
    drawn = page.locator("#drawing g.edge").evaluate_all(
        "edges => edges.map(e => [Number(e.dataset.from), Number(e.dataset.to), e.dataset.op])"
    )
    cell = Cell.from_string(chosen["arch"])
    assert sorted(drawn) == sorted([j, i, op] for (i, j), op in zip(((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2)), cell.ops))
    assert page.locator("#drawing g.edge text").all_text_contents() == [e[2] for e in drawn]
    code = read(server, f"/v1/jobs/{jobs['single']}/trials/{chosen['number']}")["nn_code"]
    assert page.locator("#trial-code").inner_text().strip() == code.strip()
    # its curve joins the plot
    page.wait_for_function(f"[...document.querySelectorAll('#plot-curves .legendtext')].some(t => t.textContent === 'trial {chosen['number']}')")
    screenshot(page, "dashboard-job-single")

    # the best trial's weights download from its panel and load into its network
    import torch

    best = job["best_trial"]["number"]
    page.locator(f'#trials tr[data-number="{best}"] td.arch').click()
    page.wait_for_selector("#download-weights:not([hidden])")
    with page.expect_download() as download:
        page.click("#download-weights")
    saved = torch.load(download.value.path(), weights_only=True)
    assert saved["nn"] == read(server, f"/v1/jobs/{jobs['single']}/trials/{best}")["nn"] and saved["state_dict"]

    # sort by the objective, best first; filter by state
    header = page.locator("#trials th", has_text="val_accuracy")
    header.click()
    header.click()
    values = [t["values"][0] for t in trials if t["values"]]
    shown = page.locator("#trials tbody tr").evaluate_all("rows => rows.map(r => r.dataset.number)")
    assert int(shown[0]) == job["best_trial"]["number"] and len(values) == len(shown)
    page.select_option("#trial-state", "failed")
    assert page.locator("#trials tbody tr").count() == 0
    page.select_option("#trial-state", "complete")
    assert page.locator("#trials tbody tr").count() == sum(t["state"] == "complete" for t in trials)
    browse.check_clean()


def test_two_objectives_show_their_pareto_front(browse: Offline, lab: tuple[LocalServer, dict[str, int]]) -> None:
    server, jobs = lab
    front = read(server, f"/v1/jobs/{jobs['pareto']}/pareto")
    page = browse.page(f"/jobs/{jobs['pareto']}")
    page.wait_for_selector("#pareto-box:not([hidden]) #plot-pareto .scatterlayer .trace")
    traces = page.locator("#plot-pareto .scatterlayer .trace")
    assert traces.count() == 2
    # the second trace is the non-dominated set: as many points as the API's front
    assert traces.nth(1).locator(".point").count() == front["count"] > 0
    assert traces.nth(0).locator(".point").count() + front["count"] == read(server, f"/v1/jobs/{jobs['pareto']}")["counts"]["complete"]
    assert page.locator("#plot-pareto .legendtext").all_text_contents() == ["dominated", "non-dominated"]
    page.wait_for_selector("#plot-params .parcoords")
    screenshot(page, "dashboard-job-pareto")
    browse.check_clean()


def test_three_objectives_show_their_front_in_parallel_coordinates(
    browse: Offline, lab: tuple[LocalServer, dict[str, int]]
) -> None:
    server, jobs = lab
    page = browse.page(f"/jobs/{jobs['three']}")
    page.wait_for_selector("#pareto-box:not([hidden]) #plot-pareto .parcoords")
    labels = page.locator("#plot-pareto .parcoords .axis-title").all_text_contents()
    assert labels == ["val_accuracy (max)", "params (min)", "flops (min)"]
    front = read(server, f"/v1/jobs/{jobs['three']}/pareto")["count"]
    # the line colours: 1 for the non-dominated trials, 0 for the others
    colours = page.evaluate("document.getElementById('plot-pareto').data[0].line.color")
    assert sum(colours) == front > 0 and len(colours) == read(server, f"/v1/jobs/{jobs['three']}")["counts"]["complete"]
    screenshot(page, "dashboard-job-three-objectives")
    browse.check_clean()


def test_a_kan_trial_is_drawn_as_its_layers(browse: Offline, lab: tuple[LocalServer, dict[str, int]]) -> None:
    server, jobs = lab
    trial = read(server, f"/v1/jobs/{jobs['kan']}/trials/0")
    page = browse.page(f"/jobs/{jobs['kan']}")
    page.wait_for_selector('#trials tr[data-number="0"]')
    page.locator('#trials tr[data-number="0"] td.arch').click()
    page.wait_for_selector("#drawing svg.stack g.layer")
    labels = page.locator("#drawing g.layer").evaluate_all("layers => layers.map(l => l.dataset.label)")
    assert labels == [layer["label"] for layer in trial["drawing"]["layers"]]
    assert len(labels) == len(trial["arch"].split("|"))
    assert "→ output" in (page.locator("#drawing g.layer").last.text_content() or "")
    screenshot(page, "dashboard-job-kan")
    browse.check_clean()


def test_a_trials_log_and_code_show_without_a_drawing(browse: Offline, lab: tuple[LocalServer, dict[str, int]]) -> None:
    server, jobs = lab
    page = browse.page(f"/jobs/{jobs['chatty']}")
    page.wait_for_selector('#trials tr[data-number="0"]')
    page.locator('#trials tr[data-number="0"] td.arch').click()
    page.wait_for_function("document.querySelector('#trial-log').textContent.includes('learning')")
    log = page.locator("#trial-log").inner_text()
    assert log.strip() == httpx.get(f"{server.url}/v1/jobs/{jobs['chatty']}/trials/0/log").text.strip()
    assert "learning, call 2" in log and "UserWarning: this model learns slowly" in log
    assert page.locator("#drawing").inner_text() == "No drawing for this search space."
    assert "def supported_hyperparameters" in page.locator("#trial-code").inner_text()
    browse.check_clean()


def test_a_running_job_page_updates_from_its_events(browse: Offline, lab: tuple[LocalServer, dict[str, int]]) -> None:
    server, _ = lab
    job_id = submit(server, job_body(name="followed-live", search_space=CELLS, strategy={"sampler": "random", "seed": 5},
                                     budget={"max_trials": 3, "epochs": 3, "parallelism": 1}))
    page = browse.page(f"/jobs/{job_id}")
    page.wait_for_selector("#job-title:has-text('followed-live')")
    page.evaluate("window.stillTheSamePage = true")
    page.wait_for_function("document.querySelector('#job-state').textContent === 'succeeded'", timeout=120_000)
    # the trials table catches up with the job's last events (a read of the trials, not a reload)
    page.wait_for_function(
        "[...document.querySelectorAll('#trials tbody tr')].filter(r => r.innerText.includes('complete')).length === 3",
        timeout=20_000,
    )
    assert page.evaluate("window.stillTheSamePage") is True
    assert "3/3" in page.locator("[data-fact=trials]").inner_text()
    rows = page.locator("#trials tbody tr").all_inner_texts()
    assert all("3/3" in row for row in rows), rows
    page.wait_for_function("document.querySelectorAll('#plot-curves .scatterlayer .trace').length > 0")
    # the "nothing yet" notes shown while it started are gone once the plots have data
    page.wait_for_function("document.querySelectorAll('#plot-best .scatterlayer .point').length >= 3")
    assert page.locator("#plot-best .empty, #plot-curves .empty").count() == 0
    browse.check_clean()


def test_data_page_queries_and_downloads_csv(browse: Offline, lab: tuple[LocalServer, dict[str, int]]) -> None:
    server, jobs = lab
    expected = read(server, "/v1/data", dataset="digits", epoch=2, max_rows=500)["data"]
    page = browse.page("/data#dataset=digits&epoch=2")
    page.wait_for_function(f"document.querySelectorAll('#rows tbody tr').length === {len(expected)}", timeout=20_000)
    assert page.locator("#data-count").inner_text().startswith(f"{len(expected)} rows")
    assert set(page.locator("#rows tbody td:first-child").all_inner_texts()) == {r["nn"] for r in expected}
    with page.expect_download() as download:
        page.click("#csv")
    text = open(download.value.path(), encoding="utf-8").read()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["id"] for r in rows] == [r["id"] for r in expected]
    assert rows[0]["nn_code"] == expected[0]["nn_code"] and float(rows[0]["accuracy"]) == expected[0]["accuracy"]
    assert list(rows[0])[:16] == ["id", "task", "dataset", "metric", "metric_code", "metric_id", "nn", "nn_code", "nn_id",
                                  "epoch", "accuracy", "duration", "prm_id", "transform_code", "transform_id", "prm"]
    screenshot(page, "dashboard-data")
    # a query the API refuses says why
    page.fill("input[name=max_rows]", "0")
    page.click("#query button[type=submit]")
    page.wait_for_selector("#toast:not([hidden])")
    assert "max_rows" in page.locator("#toast").inner_text()
    browse.check_clean_but(expected_status=422)


def test_cancel_asks_for_the_key_and_cancels(browser: Any, api: LocalServer) -> None:
    """On a server without a job manager (the job stays queued), the cancel button asks to confirm,
    then for the key; a wrong key is asked again; the job ends cancelled."""
    response = httpx.post(f"{api.url}/v1/jobs", json=job_body(name="to-cancel"), headers={"Authorization": "Bearer browser-key"})
    job_id = response.json()["id"]
    offline = Offline(browser, api)
    try:
        page = offline.page(f"/jobs/{job_id}")
        page.wait_for_selector("#cancel:not([hidden])")
        answers = iter([None, "a-wrong-key", "browser-key"])  # confirm, then two prompts
        asked: list[str] = []

        def answer(dialog: Any) -> None:
            asked.append(dialog.type)
            reply = next(answers)
            dialog.accept() if reply is None else dialog.accept(reply)

        page.on("dialog", answer)
        page.click("#cancel")
        page.wait_for_function("document.querySelector('#job-state').textContent === 'cancelled'", timeout=20_000)
        assert asked == ["confirm", "prompt", "prompt"]
        assert httpx.get(f"{api.url}/v1/jobs/{job_id}").json()["status"] == "cancelled"
        assert page.locator("#cancel").is_hidden()
        offline.check_clean_but(expected_status=401)
    finally:
        offline.close()


def test_an_ended_job_is_extended_then_deleted_from_its_page(browser: Any, api: LocalServer) -> None:
    """Extend asks for the new total and queues the job again; Delete asks to confirm, removes the
    job and goes back to the jobs page (a server without a job manager: nothing runs)."""
    headers = {"Authorization": "Bearer browser-key"}
    job_id = httpx.post(f"{api.url}/v1/jobs", json=job_body(name="extend-me"), headers=headers).json()["id"]
    assert httpx.post(f"{api.url}/v1/jobs/{job_id}/cancel", headers=headers).json()["status"] == "cancelled"
    offline = Offline(browser, api)
    try:
        page = offline.page(f"/jobs/{job_id}")
        page.wait_for_selector("#extend:not([hidden])")
        page.evaluate("localStorage.setItem('cellar.apiKey', 'browser-key')")
        replies = iter(["12", None])  # the prompt's new total, then the delete's confirm
        page.on("dialog", lambda dialog: dialog.accept(next(replies) or ""))
        page.click("#extend")
        page.wait_for_function("document.querySelector('#job-state').textContent === 'queued'", timeout=20_000)
        extended = httpx.get(f"{api.url}/v1/jobs/{job_id}").json()
        assert extended["status"] == "queued" and extended["max_trials"] == 12
        assert page.locator("#extend").is_hidden() and not page.locator("#delete").is_hidden()
        page.click("#delete")
        page.wait_for_url(f"{api.url}/", timeout=20_000)
        assert httpx.get(f"{api.url}/v1/jobs/{job_id}").status_code == 404
        offline.check_clean()
    finally:
        offline.close()
