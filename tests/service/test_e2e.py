"""End to end: a real ``cellar serve`` on loopback with its own local Ray, real training on digits.

HTTP requests go in; the tests read the answers over HTTP and the rows in the store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from sqlalchemy import func, select

from search_spaces.nb201 import Cell
from service.store import Architecture, Job, Store, Trial, TrialEpoch
from tests.search_spaces.lemur_models import MLP_CODE
from tests.service.bodies import job_body
from tests.service.server import KEY, Server
from workers.nn_module import load_nn_module

pytestmark = [pytest.mark.ray, pytest.mark.slow]

AUTH = {"Authorization": f"Bearer {KEY}"}
LEMUR_COLUMNS = ["id", "task", "dataset", "metric", "metric_code", "metric_id", "nn", "nn_code", "nn_id", "epoch",
                 "accuracy", "duration", "prm_id", "transform_code", "transform_id", "prm"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("e2e")
    running = Server(workdir, f"sqlite:///{workdir / 'cellar.db'}").start()
    yield running
    running.stop()


def submit(server: Server, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{server.url}/v1/jobs", json=body, headers=AUTH, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()


def get(server: Server, path: str, **params: Any) -> Any:
    response = httpx.get(f"{server.url}{path}", params=params, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def test_an_eight_trial_search_runs_to_the_end(server: Server) -> None:
    job = submit(server, job_body())
    assert job["status"] == "queued" and job["max_trials"] == 8
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 300
    while True:
        current = get(server, f"/v1/jobs/{job['id']}")
        seen.append(current)
        if current["status"] in ("succeeded", "failed", "cancelled"):
            break
        assert time.monotonic() < deadline, current
        time.sleep(0.1)
    assert current["status"] == "succeeded", current["error"]
    running_views = [v for v in seen if v["status"] == "running"]
    assert running_views, "the job was never seen running"
    assert max(v["counts"]["running"] for v in running_views) <= 2  # parallelism holds
    assert current["counts"] == {"total": 8, "running": 0, "complete": 8, "pruned": 0, "failed": 0}

    trials = get(server, f"/v1/jobs/{job['id']}/trials")
    assert trials["count"] == 8
    by_id = {t["id"]: t for t in trials["data"]}
    trained = [t for t in trials["data"] if t["duplicate_of"] is None]
    for trial in trials["data"]:
        assert trial["state"] == "complete" and trial["error"] is None
        assert Cell.from_string(trial["arch"]).to_string() == trial["arch"]  # NB-201's exact format
        if trial["duplicate_of"] is not None:
            # a cell computing the same function as one the job trained: its result, without training
            original = by_id[trial["duplicate_of"]]
            assert original["number"] < trial["number"] and trial["values"] == original["values"]
            assert trial["epochs"] == [] and not trial["cache_hit"]
            continue
        assert [e["epoch"] for e in trial["epochs"]] == [1, 2]
        assert all(0 <= e["val_accuracy"] <= 1 and e["loss"] > 0 for e in trial["epochs"])
        assert trial["val_accuracy"] == trial["epochs"][-1]["val_accuracy"] == trial["values"][0]
        assert 0 <= trial["test_accuracy"] <= 1 and trial["params"] > 0 and trial["train_seconds"] > 0
        assert trial["split"]["sizes"] == [1078, 359, 360] and trial["seed"] == 0
        assert trial["prm"]["batch"] == 64 and trial["prm"]["lr"] == 0.05
    best = max(trials["data"], key=lambda t: t["val_accuracy"])
    assert current["best_trial"]["id"] == best["id"]
    assert best["val_accuracy"] > 0.5  # ten classes: chance is 0.1

    # the stored nn_code is the network that was trained: same parameter count
    one = get(server, f"/v1/trials/{best['id']}")
    net = load_nn_module(one["nn_code"], one["nn"]).Net((1, 1, 8, 8), (10,), one["prm"], torch.device("cpu"))
    assert sum(p.numel() for p in net.parameters()) == best["params"]

    # LEMUR-style rows
    rows = get(server, "/v1/data", task="img-classification", dataset="digits", only_best_accuracy="true")["data"]
    ours = [r for r in rows if r["job_id"] == job["id"]]
    assert len(ours) == 2 * len({t["nn"] for t in trained})
    for row in ours:
        assert list(row)[: len(LEMUR_COLUMNS)] == LEMUR_COLUMNS
        assert row["metric"] == "acc" and "def create_metric" in row["metric_code"]
        assert "def transform(norm)" in row["transform_code"]
        assert "class Net" in row["nn_code"] and "def train_setup" in row["nn_code"] and "def learn" in row["nn_code"]
        trial = next(t for t in trials["data"] if t["id"] == row["run_id"])
        assert row["nn"] == trial["nn"] and row["arch"] == trial["arch"]
        assert row["accuracy"] == trial["epochs"][row["epoch"] - 1]["val_accuracy"]
        assert row["duration"] == round(trial["epochs"][row["epoch"] - 1]["elapsed_seconds"] * 1e9)
    unique = get(server, "/v1/data", dataset="digits", nn_prefixes="nb201-", unique_nn="true")["data"]
    assert len(unique) == len({r["nn"] for r in unique}) >= 1 and all(r["nn"].startswith("nb201-") for r in unique)
    assert get(server, "/v1/data", nn_prefixes="no-such-prefix-")["data"] == []

    # and the rows in the store
    store = Store(server.database_url)
    with store.read() as session:
        stored = session.get(Job, job["id"])
        assert stored is not None and stored.status == "succeeded" and stored.finished_at is not None
        arch_ids = session.scalars(
            select(Trial.architecture_id).where(Trial.job_id == job["id"], Trial.duplicate_of_trial_id.is_(None))
        ).all()
        archs = session.scalars(select(Architecture).where(Architecture.architecture_id.in_(arch_ids))).all()
        assert len(archs) == len(trained)  # each trained network measured (a duplicate is never built)
        assert all(a.search_space == "nb201" and a.num_params and len(a.dedup_hash) == 64 for a in archs)
        epochs = session.scalar(
            select(func.count()).select_from(TrialEpoch).join(Trial).where(Trial.job_id == job["id"])
        )
        assert epochs == 2 * len(trained)
    store.dispose()


def test_cancel_stops_a_running_job_and_keeps_what_finished(server: Server) -> None:
    body = job_body(
        name="long",
        search_space={"kind": "nb201", "params": {"channels": 16, "cells_per_stage": 2}},
        budget={"max_trials": 40, "epochs": 30, "parallelism": 2},
    )
    job = submit(server, body)
    deadline = time.monotonic() + 180
    while not any(t["epochs"] for t in get(server, f"/v1/jobs/{job['id']}/trials")["data"]):
        assert time.monotonic() < deadline, "no epoch finished"
        time.sleep(0.2)
    asked = time.monotonic()
    response = httpx.post(f"{server.url}/v1/jobs/{job['id']}/cancel", headers=AUTH, timeout=30)
    assert response.status_code == 200 and response.json()["cancel_requested"]
    while (current := get(server, f"/v1/jobs/{job['id']}"))["status"] != "cancelled":
        assert time.monotonic() - asked < 20, current
        time.sleep(0.1)
    trials = get(server, f"/v1/jobs/{job['id']}/trials")["data"]
    assert trials and len(trials) < 40
    assert not [t for t in trials if t["state"] == "running"]
    stopped = [t for t in trials if t["state"] == "failed"]
    assert stopped and all("cancelled" in t["error"] for t in stopped)
    assert any(t["epochs"] for t in stopped)  # the epochs a stopped trial finished are kept
    again = httpx.post(f"{server.url}/v1/jobs/{job['id']}/cancel", headers=AUTH, timeout=30)
    assert again.status_code == 409


def test_the_same_body_and_seed_sample_the_same_architectures(server: Server) -> None:
    # 14 TPE trials: past TPE's 10 random start-up trials, so the model of past results matters
    body = job_body(
        search_space={"kind": "nb201", "params": {"channels": 4, "cells_per_stage": 1}},
        budget={"max_trials": 14, "epochs": 1, "parallelism": 2},
    )
    body["strategy"]["cache"] = False  # train the second job too: the same samples, not cache hits
    first, second = submit(server, body), submit(server, body)
    other = submit(server, {**body, "strategy": {"sampler": "tpe", "seed": 1}})
    archs = []
    for job in (first, second, other):
        assert server.wait(job["id"])["status"] == "succeeded"
        trials = get(server, f"/v1/jobs/{job['id']}/trials")["data"]
        archs.append([t["arch"] for t in sorted(trials, key=lambda t: t["number"])])
    assert len(archs[0]) == 14
    assert archs[0] == archs[1]
    assert archs[0] != archs[2]


def test_a_trial_that_runs_out_of_memory_fails_and_the_job_goes_on(server: Server) -> None:
    # the all-3x3 cell needs over 400 MiB at this size, the others under 200 (measured)
    big = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    small = ["|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "|skip_connect~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"]
    body = job_body(
        name="memory-capped",
        search_space={"kind": "nb201", "params": {"channels": 64, "cells_per_stage": 5}},
        strategy={"sampler": "random", "seed": 0, "initial_architectures": [big, *small]},
        budget={"max_trials": 3, "epochs": 1, "parallelism": 2},
        resources={"cpus_per_trial": 1, "memory_mb_per_trial": 300},
    )
    job = server.wait(submit(server, body)["id"])
    trials = get(server, f"/v1/jobs/{job['id']}/trials")["data"]
    assert [t["arch"] for t in trials] == [big, *small]
    assert [t["state"] for t in trials] == ["failed", "complete", "complete"], [t["error"] for t in trials]
    assert trials[0]["error"].startswith(
        "TrialOutOfMemory: out of memory: the trial needed more than its memory cap of 300 MiB"
    )
    assert "Traceback" in trials[0]["error"]
    assert job["status"] == "succeeded" and job["counts"]["failed"] == 1 and job["best_trial"]["state"] == "complete"


def test_the_api_process_never_loads_torch(server: Server) -> None:
    assert server.process is not None
    maps = Path(f"/proc/{server.process.pid}/maps")
    if not maps.exists():
        pytest.skip("needs Linux /proc to inspect the server's loaded libraries")
    loaded = maps.read_text()
    assert "_raylet" in loaded  # the reading works: Ray's own library is mapped
    assert "libtorch" not in loaded


def test_events_stream_ends_with_the_finished_job(server: Server) -> None:
    job = server.wait(submit(server, job_body(budget={"max_trials": 2, "epochs": 1, "parallelism": 2}))["id"])
    with httpx.stream("GET", f"{server.url}/v1/jobs/{job['id']}/events", timeout=30) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        text = "".join(response.iter_text())
    events = [json.loads(line[len("data: "):]) for line in text.splitlines() if line.startswith("data: ")]
    assert text.startswith("event: job") and events[-1]["status"] == "succeeded"


def test_events_carry_each_trial_start_epochs_and_end(server: Server) -> None:
    """Followed from its submission, a job's stream tells every trial's start, each of its epochs
    with the metrics the store keeps, and its end, before the job's last event."""
    # trained here (no cache hit on the module's earlier jobs): every trial has epochs to tell
    job = submit(server, job_body(strategy={"sampler": "random", "seed": 31, "cache": False},
                                  budget={"max_trials": 3, "epochs": 2, "parallelism": 2}))
    with httpx.stream("GET", f"{server.url}/v1/jobs/{job['id']}/events", timeout=120) as response:
        text = "".join(response.iter_text())
    events = [
        (block.split("\n")[0].removeprefix("event: "), json.loads(block.split("\n")[1].removeprefix("data: ")))
        for block in text.strip().split("\n\n")
    ]
    assert events[0][0] == "job" and events[-1][0] == "job" and events[-1][1]["status"] == "succeeded", events[-1]
    trial_events = [data for name, data in events if name == "trial"]
    stored = {t["number"]: t for t in get(server, f"/v1/jobs/{job['id']}/trials")["data"]}
    assert sorted(stored) == [0, 1, 2]
    for number, trial in stored.items():
        told = [e for e in trial_events if e["number"] == number]
        assert [e["kind"] for e in told] == ["started", "epoch", "epoch", "finished"], told
        assert [e["epoch"] for e in told[1:3]] == [1, 2]
        for event, epoch in zip(told[1:3], trial["epochs"]):
            assert event["val_metric"] == epoch["val_metric"] and event["loss"] == epoch["loss"]
        assert told[-1]["state"] == "complete" and told[-1]["values"] == trial["values"]
    # a trial's end is told before the job event that counts it
    last_finish = max(i for i, (name, data) in enumerate(events) if name == "trial" and data["kind"] == "finished")
    assert all(name == "job" for name, _ in events[last_finish + 1 :])


def _best_number(server: Server, job_id: int) -> int:
    return server.client().job(job_id)["best_trial"]["number"]


def test_the_cli_submits_follows_and_lists(server: Server, tmp_path: Path) -> None:
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps(job_body(name="from-cli", budget={"max_trials": 3, "epochs": 1, "parallelism": 2})))
    cellar = Path(sys.executable).with_name("cellar")
    env = {**os.environ, "CELLAR_URL": server.url, "CELLAR_API_KEY": KEY}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(cellar), *args], capture_output=True, text=True, env=env, timeout=300)

    submitted = run("submit", str(job_file), "--follow")
    assert submitted.returncode == 0, submitted.stderr
    job_id = int(submitted.stdout.split()[1])
    assert f"job {job_id} succeeded; best: " in submitted.stdout
    assert "3/3" in submitted.stderr  # the progress bar: trials done / total
    listed = run("trials", str(job_id))
    assert listed.returncode == 0 and listed.stdout.count("complete") == 3
    as_json = json.loads(run("trials", str(job_id), "--json").stdout)
    assert all(t["arch"] in listed.stdout for t in as_json)  # whole arch strings in the table
    jobs = run("jobs")
    assert "from-cli" in jobs.stdout and "succeeded" in jobs.stdout
    # a trial is addressed by its job and its number; its global id is labelled as an id
    best = next(t for t in as_json if t["number"] == 1)
    assert f"(trial #{_best_number(server, job_id)})" in jobs.stdout
    shown = run("trial", str(job_id), "1")
    assert shown.returncode == 0, shown.stderr
    assert f"job {job_id} trial #1 (id {best['id']}): complete" in shown.stdout
    assert best["arch"] in shown.stdout and "class Net" in shown.stdout  # the metrics, then the nn_code
    assert f"{best['val_metric']:.4f}" in shown.stdout
    missing = run("trial", str(job_id), "7")
    assert missing.returncode == 1 and f"job {job_id} has no trial number 7; its trials are numbered 0 to 2" in missing.stderr
    refused = run("cancel", str(job_id))
    assert refused.returncode == 1 and "already succeeded" in refused.stderr
    unauthorised = subprocess.run(
        [str(cellar), "submit", str(job_file)], capture_output=True, text=True,
        env={**env, "CELLAR_API_KEY": "wrong"}, timeout=60, cwd=tmp_path,
    )
    assert unauthorised.returncode == 1 and "wrong API key" in unauthorised.stderr


def test_the_cli_watches_exports_and_names_its_server(server: Server, tmp_path: Path) -> None:
    """watch (re-attach, Ctrl-C), export csv|parquet, pareto, best: what a user and a script read."""
    import signal

    import pandas as pd

    cellar = Path(sys.executable).with_name("cellar")
    env = {**os.environ, "CELLAR_URL": server.url, "CELLAR_API_KEY": KEY, "COLUMNS": "120"}

    def run(*args: str, **changes: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(cellar), *args], capture_output=True, text=True, env={**env, **changes}, timeout=300, cwd=tmp_path)

    body = job_body(name="watched", objectives=[{"metric": "val_accuracy", "direction": "maximize"},
                                                {"metric": "params", "direction": "minimize"}],
                    # no cache: a job of cache hits could end before the Ctrl-C below
                    strategy={"sampler": "random", "seed": 11, "cache": False},
                    budget={"max_trials": 4, "epochs": 3, "parallelism": 2})
    (tmp_path / "job.json").write_text(json.dumps(body))
    # Ctrl-C while following: the follower says the job goes on, and it does
    # SIGINT as a terminal sends it: by default in the child even where this test runs with it ignored
    # (a shell's background job ignores it, and a child inherits that)
    following = subprocess.Popen([str(cellar), "submit", "job.json", "--follow"], cwd=tmp_path, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    first = following.stdout.readline()  # "job N queued"
    job_id = int(first.split()[1])
    deadline = time.monotonic() + 60  # once a trial trains (not on a timer: a loaded machine is slow to start)
    while time.monotonic() < deadline and not get(server, f"/v1/jobs/{job_id}")["counts"].get("running"):
        time.sleep(0.1)
    following.send_signal(signal.SIGINT)
    _, stderr = following.communicate(timeout=30)
    assert following.returncode == 130, stderr
    assert f"stopped following job {job_id}; it keeps running" in stderr and f"cellar cancel {job_id}" in stderr
    # re-attach: one JSON line per event, trial events included, the last one the finished job
    watched = run("watch", str(job_id), "--json")
    assert watched.returncode == 0, watched.stderr
    events = [json.loads(line) for line in watched.stdout.splitlines()]
    assert events[-1]["event"] == "job" and events[-1]["data"]["status"] == "succeeded"
    assert {"started", "epoch", "finished"} & {e["data"]["kind"] for e in events if e["event"] == "trial"}
    again = run("watch", str(job_id))
    assert again.returncode == 0 and f"job {job_id} succeeded; Pareto set: " in again.stdout

    trials = server.client().trials(job_id)
    assert run("export", str(job_id)).returncode == 0
    exported = pd.read_csv(tmp_path / f"job-{job_id}.csv")
    assert list(exported["number"]) == [t["number"] for t in trials]
    assert list(exported["value_params"]) == [t["values"][1] for t in trials]
    assert list(exported["param_edge_3_0"]) == [t["choices"]["edge_3_0"] for t in trials]
    parquet = run("export", str(job_id), "--format", "parquet", "-o", "all.parquet", "--json")
    assert json.loads(parquet.stdout)["rows"] == len(trials)
    columnar = pd.read_parquet(tmp_path / "all.parquet")
    assert list(columnar.columns) == list(exported.columns)
    assert list(columnar["arch"]) == list(exported["arch"]) and list(columnar["value_params"]) == list(exported["value_params"])

    front = json.loads(run("pareto", str(job_id), "--json").stdout)
    assert front == server.client().pareto(job_id)
    table = run("pareto", str(job_id)).stdout
    assert all(t["arch"] in table for t in front["data"])
    refused = run("best", str(job_id))
    assert refused.returncode == 1 and f"cellar pareto {job_id}" in refused.stderr

    single = server.wait(submit(server, job_body(name="best-of", budget={"max_trials": 2, "epochs": 1, "parallelism": 2}))["id"])
    assert run("best", str(single["id"]), "-o", "best.py").returncode == 0
    assert (tmp_path / "best.py").read_text() == server.client().job_trial(single["id"], single["best_trial"]["number"])["nn_code"]

    unreachable = run("jobs", CELLAR_URL="http://127.0.0.1:9")
    assert unreachable.returncode == 1 and "cannot reach Cellar at http://127.0.0.1:9" in unreachable.stderr
    assert "CELLAR_URL" in unreachable.stderr and "--url" in unreachable.stderr
    keyless = run("cancel", str(job_id), CELLAR_API_KEY="")
    assert keyless.returncode == 1 and "this client sent no key: set CELLAR_API_KEY" in keyless.stderr


def test_the_best_trials_weights_download_and_rebuild_its_network(server: Server, tmp_path: Path) -> None:
    """The weights a Ray worker kept, downloaded over HTTP and loaded into the trial's nn_code, give
    back the test accuracy the worker measured; `cellar weights` writes a folder that loads them."""
    import importlib

    from search_spaces.metrics import metric_module
    from workers.protocol import TrialPayload
    from workers.runner import TrialRunner, _Active

    body = job_body(name="weights", strategy={"sampler": "random", "seed": 32, "cache": False},
                    budget={"max_trials": 4, "epochs": 2, "parallelism": 2})
    job = server.wait(submit(server, body)["id"])
    best = get(server, f"/v1/jobs/{job['id']}/trials/{job['best_trial']['number']}")
    assert best["weights"] is True
    response = httpx.get(f"{server.url}/v1/jobs/{job['id']}/trials/{best['number']}/weights", timeout=30)
    assert response.status_code == 200 and response.headers["content-type"] == "application/octet-stream"
    (tmp_path / "best.pt").write_bytes(response.content)
    saved = torch.load(tmp_path / "best.pt", weights_only=True)
    module = load_nn_module(best["nn_code"], best["nn"])
    net = module.Net(tuple(saved["in_shape"]), tuple(saved["out_shape"]), saved["prm"], torch.device("cpu"))
    net.load_state_dict(saved["state_dict"])
    payload = TrialPayload(trial_id=best["id"], job_id=job["id"], number=best["number"], nn_name=best["nn"],
                           nn_code=best["nn_code"], dataset="digits", prm=best["prm"], epochs=2, seed=best["seed"],
                           split_seed=best["seed"])
    runner = TrialRunner()
    runner.load(payload)
    info, _, batches, _, out_shape = runner.prepare(payload)
    metric = importlib.import_module(metric_module(info.metric)).create_metric(out_shape)
    test_accuracy, _ = TrialRunner._evaluate(_Active(payload=payload, model=net, metric=metric, data=batches), batches.test)
    assert test_accuracy == pytest.approx(best["test_metric"], abs=1e-9)

    # the job kept 3 of its 4 trials' weights; the fourth says why it has none
    numbers = [t["number"] for t in get(server, f"/v1/jobs/{job['id']}/trials")["data"]]
    missing = [n for n in numbers if not get(server, f"/v1/jobs/{job['id']}/trials/{n}")["weights"]]
    assert len(missing) == 1
    refused = httpx.get(f"{server.url}/v1/jobs/{job['id']}/trials/{missing[0]}/weights", timeout=30)
    assert refused.status_code == 404 and "keeps the best 3" in refused.json()["detail"]

    cellar = Path(sys.executable).with_name("cellar")
    env = {**os.environ, "CELLAR_URL": server.url, "CELLAR_API_KEY": KEY}
    wrote = subprocess.run([str(cellar), "weights", str(job["id"]), str(best["number"]), "-o", "best"], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=120)
    assert wrote.returncode == 0, wrote.stderr
    loaded = subprocess.run([sys.executable, "load.py"], cwd=tmp_path / "best", capture_output=True, text=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr
    assert "Net(" in loaded.stdout


def test_a_trials_output_crosses_from_its_ray_worker(server: Server, tmp_path: Path) -> None:
    """Prints and warnings of each call, and those of the call that failed, reach the store from a
    Ray worker; GET .../log and `cellar logs` read them."""
    from tests.service.jobs.test_logs import FAILING

    body = job_body(name="chatty", search_space={"kind": "code", "params": {"nn_code": FAILING}},
                    budget={"max_trials": 1, "epochs": 3, "parallelism": 1})
    job = server.wait(submit(server, body)["id"])
    # a worker lost to the machine (Ray's memory monitor under load) is retried as a new trial: the
    # trial that failed by the model's own error is the last one
    listed = get(server, f"/v1/jobs/{job['id']}/trials")["data"]
    last = listed[-1]["number"]
    failed = get(server, f"/v1/jobs/{job['id']}/trials/{last}")
    assert "gave up in the second epoch" in (failed["error"] or ""), failed["error"]
    response = httpx.get(f"{server.url}/v1/jobs/{job['id']}/trials/{last}/log", timeout=30)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    log = response.text
    assert "learning, call 1" in log and "learning, call 2" in log and "UserWarning: this model learns slowly" in log
    cellar = Path(sys.executable).with_name("cellar")
    shown = subprocess.run([str(cellar), "logs", str(job["id"]), str(last)], capture_output=True, text=True,
                           timeout=60, env={**os.environ, "CELLAR_URL": server.url})
    assert shown.returncode == 0 and shown.stdout == log
    missing = httpx.get(f"{server.url}/v1/jobs/{job['id']}/trials/{last + 5}/log", timeout=30)
    assert missing.status_code == 404 and f"numbered 0 to {last}" in missing.json()["detail"]


@pytest.mark.postgres
def test_a_search_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    server = Server(tmp_path, postgres_url).start()
    try:
        job = server.wait(submit(server, job_body(budget={"max_trials": 4, "epochs": 1, "parallelism": 2}))["id"])
        assert job["status"] == "succeeded" and job["counts"]["complete"] == 4
        rows = get(server, "/v1/data", dataset="digits", only_best_accuracy="true")["data"]
        assert rows and all(r["job_id"] == job["id"] for r in rows)
    finally:
        server.stop()
    store = Store(postgres_url)
    with store.read() as session:
        assert session.scalar(select(func.count()).select_from(Trial)) == 4
        assert session.scalar(select(func.count()).select_from(TrialEpoch)) == 4
    store.dispose()


def test_the_median_pruner_stops_hopeless_trials_and_keeps_their_curves(server: Server) -> None:
    good = [
        "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|",
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|skip_connect~0|none~1|nor_conv_3x3~2|",
    ]
    # no path from the input to the output: these stay at chance
    hopeless = [
        "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
        "|skip_connect~0|+|none~0|none~1|+|none~0|none~1|none~2|",
    ]
    body = job_body(
        name="pruned",
        strategy={"sampler": "random", "seed": 0, "pruner": "median", "initial_architectures": good + hopeless},
        budget={"max_trials": 4, "epochs": 4, "parallelism": 1},
    )
    job = server.wait(submit(server, body)["id"])
    assert job["status"] == "succeeded"
    trials = get(server, f"/v1/jobs/{job['id']}/trials")["data"]
    assert [t["state"] for t in trials] == ["complete", "complete", "pruned", "pruned"]
    for trial in trials[2:]:
        assert 1 <= len(trial["epochs"]) < 4 and trial["error"] is None and trial["values"] is None
    assert job["counts"]["pruned"] == 2


def test_a_time_limit_stops_the_job(server: Server) -> None:
    body = job_body(
        name="time-limited",
        search_space={"kind": "nb201", "params": {"channels": 16, "cells_per_stage": 2}},
        budget={"max_trials": 100, "epochs": 50, "parallelism": 2, "time_limit_s": 8},
    )
    job = server.wait(submit(server, body)["id"], timeout=120)
    # no trial can train 50 epochs in 8 s here: the job ends without a result, and says so
    assert job["status"] == "failed" and job["error"].startswith("no trial completed")
    from datetime import datetime

    took = datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["started_at"])
    assert took.total_seconds() < 8 + 10
    trials = get(server, f"/v1/jobs/{job['id']}/trials")["data"]
    assert not [t for t in trials if t["state"] == "running"]
    stopped = [t for t in trials if t["state"] == "failed"]
    assert stopped and all("time_limit_s (8 s) was reached" in t["error"] for t in stopped)


def test_a_job_the_cluster_can_never_run_fails_and_says_why(server: Server) -> None:
    body = job_body(name="needs-a-gpu", resources={"cpus_per_trial": 1, "gpus_per_trial": 1})
    job = server.wait(submit(server, body)["id"], timeout=60)
    assert job["status"] == "failed"
    assert "one trial needs 1 CPU, 1 GPU but no Ray node has that (nodes: 2 CPU, 0 GPU)" in job["error"]
    assert job["counts"]["total"] == 0


SPACES = [
    ("gnn", "karate", {"max_layers": 2, "hidden_sizes": [8, 16], "readouts": ["mean"]}, {"lr": 0.01, "optimizer": "adam"}),
    ("code", "iris", {"nn_code": MLP_CODE, "prefix": "mlp"}, {}),
    ("kan", "kan-exp-sin", {"max_layers": 2, "widths": [4, 8], "bases": ["bspline", "rbf"]}, {"lr": 0.01, "optimizer": "adam"}),
]


@pytest.mark.parametrize(("kind", "dataset", "params", "training"), SPACES, ids=[s[0] for s in SPACES])
def test_every_kind_of_space_searches_through_the_api(
    server: Server, kind: str, dataset: str, params: dict[str, Any], training: dict[str, Any]
) -> None:
    body = job_body(
        name=f"{kind}-{dataset}",
        search_space={"kind": kind, "params": params},
        dataset=dataset,
        budget={"max_trials": 3, "epochs": 3, "parallelism": 2},
        training=training,
    )
    job = server.wait(submit(server, body)["id"])
    assert job["status"] == "succeeded", job["error"]
    trials = get(server, f"/v1/jobs/{job['id']}/trials")["data"]
    assert [t["state"] for t in trials] == ["complete"] * 3
    info = next(d for d in get(server, "/v1/datasets") if d["name"] == dataset)
    for trial in trials:
        assert trial["metric"] == info["metric"] and trial["params"] > 0 and trial["latency_ms"] > 0
        assert trial["prm"]["transform"] == info["transform"]
    values = [t["val_metric"] for t in trials]  # the best follows the metric's direction
    assert job["best_trial"]["val_metric"] == (min if info["metric_direction"] == "minimize" else max)(values)
    rows = get(server, "/v1/data", dataset=dataset, task=info["task"])["data"]
    ours = [r for r in rows if r["job_id"] == job["id"]]
    assert len(ours) == 3 * 3 and all(r["search_space"] == kind for r in ours)
    for row in ours:
        trial = next(t for t in trials if t["id"] == row["run_id"])
        assert row["nn"] == trial["nn"] and row["metric"] == info["metric"]
        assert row["accuracy"] == trial["epochs"][row["epoch"] - 1]["val_metric"]
    one = get(server, f"/v1/trials/{trials[0]['id']}")
    assert "class Net" in one["nn_code"]
    if kind == "code":  # the sampled hyperparameters are the trial's prm, the file is the nn_code
        assert one["nn_code"] == MLP_CODE and one["nn"].startswith("mlp-")
        assert {"lr", "momentum", "dropout", "batch"} <= set(one["prm"]) and one["prm"] != trials[1]["prm"]


def test_a_multi_objective_job_returns_its_pareto_set_with_hypervolume(server: Server) -> None:
    from service.jobs.strategies import hypervolume, non_dominated

    objectives = [{"metric": "val_accuracy", "direction": "maximize"}, {"metric": "params", "direction": "minimize"}]
    body = job_body(
        name="pareto",
        search_space={"kind": "nb201", "params": {"channels": 4, "cells_per_stage": 1}},
        objectives=objectives,
        strategy={"sampler": "nsga2", "seed": 0, "pruner": "asha", "cache": False},
        budget={"max_trials": 8, "epochs": 3, "parallelism": 2},
    )
    job = server.wait(submit(server, body)["id"])
    assert job["status"] == "succeeded"
    pareto = get(server, f"/v1/jobs/{job['id']}/pareto")
    complete = [t for t in get(server, f"/v1/jobs/{job['id']}/trials")["data"] if t["state"] == "complete"]
    front = [complete[i] for i in non_dominated([t["values"] for t in complete], ["maximize", "minimize"])]
    assert pareto["objectives"] == objectives and pareto["count"] == len(front) >= 1
    assert sorted(t["id"] for t in pareto["data"]) == sorted(t["id"] for t in front)
    assert all(t["values"] == [t["val_accuracy"], t["params"]] for t in pareto["data"])
    assert pareto["hypervolume"] == pytest.approx(
        hypervolume([t["values"] for t in front], ["maximize", "minimize"], pareto["reference_point"])
    )
    # a fixed reference makes jobs comparable: every point inside it adds its box
    fixed = get(server, f"/v1/jobs/{job['id']}/pareto", reference=[0.0, 10**6])
    assert fixed["reference_point"] == [0.0, 10**6] and fixed["hypervolume"] > pareto["hypervolume"]
    bad = httpx.get(f"{server.url}/v1/jobs/{job['id']}/pareto", params={"reference": [0.0]}, timeout=30)
    assert bad.status_code == 422 and "one finite value per objective (2: val_accuracy, params)" in bad.text


def test_lemurs_data_function_reads_the_server_into_a_dataframe(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pandas as pd

    from service import lemur

    body = job_body(
        name="lemur-data",
        search_space={"kind": "nb201", "params": {"channels": 4, "cells_per_stage": 1}},
        strategy={"sampler": "random", "seed": 5, "cache": False},
        budget={"max_trials": 3, "epochs": 2, "parallelism": 1},
    )
    assert server.wait(submit(server, body)["id"])["status"] == "succeeded"
    monkeypatch.setenv("CELLAR_URL", server.url)
    frame = lemur.data(task="img-classification", dataset="digits")
    rows = get(server, "/v1/data", task="img-classification", dataset="digits")["data"]
    assert isinstance(frame, pd.DataFrame) and list(frame.columns)[: len(LEMUR_COLUMNS)] == LEMUR_COLUMNS
    assert frame["id"].tolist() == [r["id"] for r in rows] and len(rows) >= 6
    # the client asks for each code text once (codes=separate) and fills the columns back in
    for column in ("nn_code", "metric_code", "transform_code"):
        assert frame[column].tolist() == [r[column] for r in rows] and rows[0][column]
    # pages of 4 rows are stitched back in order; max_rows cuts across pages
    from service.lemur import query as lemur_query

    monkeypatch.setattr(lemur_query, "_PAGE", 4)
    assert lemur.data(task="img-classification", dataset="digits")["id"].tolist() == [r["id"] for r in rows]
    assert lemur.data(dataset="digits", max_rows=5)["id"].tolist() == [r["id"] for r in rows[:5]]
    best = lemur.data(only_best_accuracy=True, dataset="digits", epoch=2, unique_nn=True)
    assert best["nn"].is_unique and set(best["epoch"]) == {2}
    # nothing matches: an empty frame with the same columns as a full one, LEMUR's first
    empty = lemur.data(nn="no-such-model")
    assert empty.empty and list(empty.columns) == list(frame.columns)
    lemur.data.cache_clear()  # LEMUR pipelines call it; nothing is cached here


def test_prompt_examples_are_the_best_distinct_models_with_compact_code(server: Server) -> None:
    from service.lemur.prompts import compact_code

    body = job_body(
        name="prompt-examples",
        search_space={"kind": "nb201", "params": {"channels": 4, "cells_per_stage": 1}},
        strategy={"sampler": "random", "seed": 9, "cache": False},
        budget={"max_trials": 3, "epochs": 1, "parallelism": 1},
    )
    assert server.wait(submit(server, body)["id"])["status"] == "succeeded"
    examples = get(server, "/v1/prompt-examples", task="img-classification", dataset="digits", k=3)
    best = get(server, "/v1/data", task="img-classification", dataset="digits", unique_nn="true")["data"]
    expected = sorted(best, key=lambda r: (-r["accuracy"], r["run_id"]))[:3]
    assert examples["count"] == 3 and [e["nn"] for e in examples["data"]] == [r["nn"] for r in expected]
    for example, row in zip(examples["data"], expected):
        assert example["accuracy"] == row["accuracy"] and example["code"] == compact_code(row["nn_code"])
        assert "class Net" in example["code"] and len(example["code"]) < len(row["nn_code"])
    bad = httpx.get(f"{server.url}/v1/prompt-examples", params={"k": 0}, timeout=30)
    assert bad.status_code == 422


def test_a_screened_job_is_scored_on_its_ray_workers_then_trains_the_best_first(server: Server) -> None:
    tiny = {"kind": "nb201", "params": {"channels": 4, "cells_per_stage": 1}}
    screen = {"proxy": "synflow", "samples": 60, "keep": 3}
    body = job_body(name="screened", search_space=tiny, strategy={"sampler": "evolution", "seed": 3, "screen": screen},
                    budget={"max_trials": 5, "epochs": 1, "parallelism": 2})  # fmt: skip
    job = server.wait(submit(server, body)["id"])
    assert job["status"] == "succeeded", job["error"]
    record = job["screen"]
    assert (record["proxy"], record["samples"], record["scored"]) == ("synflow", 60, 60)
    kept = [entry["score"] for entry in record["kept"]]
    assert len(kept) == 3 and kept == sorted(kept, reverse=True)
    trials = get(server, f"/v1/jobs/{job['id']}/trials")["data"]
    first = sorted(trials, key=lambda t: t["number"])[:3]
    assert [t["arch"] for t in first] == [entry["encoding"] for entry in record["kept"]]
    # trained on the workers that scored them: the same network, seed and batch give the same score
    assert [t["proxies"]["synflow"] for t in first] == pytest.approx(kept, rel=1e-9)


def test_a_cancel_while_the_workers_score_stops_the_job_at_once(server: Server) -> None:
    big = {"kind": "nb201", "params": {"channels": 16, "cells_per_stage": 5}}
    screen = {"proxy": "naswot", "samples": 20_000, "keep": 10}  # about an hour of scoring here
    body = job_body(name="screen-cancel", search_space=big, strategy={"screen": screen},
                    budget={"max_trials": 20, "epochs": 1, "parallelism": 2})  # fmt: skip
    job = submit(server, body)
    deadline = time.monotonic() + 60
    while get(server, f"/v1/jobs/{job['id']}")["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(2)  # drawing the 20,000 candidates (about 4 s) or scoring them
    asked = time.monotonic()
    response = httpx.post(f"{server.url}/v1/jobs/{job['id']}/cancel", headers=AUTH, timeout=30)
    assert response.status_code == 200
    while (current := get(server, f"/v1/jobs/{job['id']}"))["status"] != "cancelled":
        assert time.monotonic() - asked < 20, current
        time.sleep(0.1)
    assert current["screen"] is None and get(server, f"/v1/jobs/{job['id']}/trials")["count"] == 0
    # the slots are free again: the next job runs
    after = server.wait(submit(server, job_body(name="after-cancel", budget={"max_trials": 2, "epochs": 1}))["id"])
    assert after["status"] == "succeeded"
