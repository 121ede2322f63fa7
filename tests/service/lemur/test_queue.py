"""Submitted models through the queue (``POST /v1/submissions``): trained on the Ray workers of a
real ``cellar serve`` with its own local Ray, followed by events, kept across a crash."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from service.client import CellarHTTPError
from service.lemur import check_nn
from service.lemur.generation import ScriptedGenerator, run_loop
from tests.search_spaces.lemur_models import MLP_CODE
from tests.service.server import KEY, Server

AUTH = {"Authorization": f"Bearer {KEY}"}
PRM = {"lr": 0.05, "momentum": 0.9, "dropout": 0.1, "batch": 64, "epoch": 1, "transform": "norm"}


def model(width: int, **fields: Any) -> dict[str, Any]:
    """A distinct model per width (its code, hence its name, differs)."""
    code = MLP_CODE.replace("nn.Linear(features, 64), nn.ReLU()", f"nn.Linear(features, {width}), nn.ReLU()")
    code = code.replace("nn.Linear(64, out_shape[0])", f"nn.Linear({width}, out_shape[0])")
    assert code != MLP_CODE or width == 64
    return {"nn_code": code, "task": "img-classification", "dataset": "digits", "metric": "acc", "prm": PRM, **fields}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("queue")
    server = Server(
        workdir,
        f"sqlite:///{workdir / 'cellar.db'}",
        CELLAR_MODEL_WORKERS="4",  # in flight; the local Ray's 2 CPUs run two at a time
        CELLAR_MODEL_MEMORY_MB="512",
        CELLAR_LEASE_S="4",
    ).start()
    yield server
    server.stop()


def _overlapping(done: list[dict[str, Any]]) -> int:
    """The most submissions that were training at one moment."""
    moments = []
    for item in done:
        moments += [(datetime.fromisoformat(item["started_at"]), 1), (datetime.fromisoformat(item["finished_at"]), -1)]
    running = most = 0
    for _, step in sorted(moments, key=lambda m: (m[0], m[1])):
        running += step
        most = max(most, running)
    return most


def _loads_torch(pid: int) -> bool:
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


def test_twenty_models_train_on_ray_workers_while_the_api_process_stays_light(server: Server) -> None:
    assert server.process is not None
    api = server.process.pid
    with server.client() as client:
        queued = client.submit_models([model(16 + i) for i in range(20)])
        assert [q["status"] for q in queued] == ["queued"] * 20
        ids = [q["id"] for q in queued]
        done = list(client.as_completed(ids))
    assert sorted(d["id"] for d in done) == sorted(ids)
    assert all(d["result"]["status"] == "ok" and d["result"]["accuracy"] > 0.5 for d in done), [
        d["result"]["failure"] for d in done if d["result"]["status"] != "ok"
    ]
    # followed by Ray workers, not by the API process; each in a sandbox that has ended
    workers = {int(d["worker"].rsplit(":", 1)[1]) for d in done}
    assert api not in workers
    ray_workers = [p for p in psutil.Process(api).children(recursive=True) if p.pid in workers]
    assert ray_workers, "the workers are the server's local Ray's processes"
    assert _overlapping(done) >= 2, "two trainings at a time on the 2 CPUs of the local Ray"
    # the API process never loaded torch, and stays small
    assert not _loads_torch(api)
    assert psutil.Process(api).memory_info().rss < 800 * 2**20
    # each stored like any run: /v1/data lists it
    rows = httpx.get(f"{server.url}/v1/data", params={"task": "img-classification", "dataset": "digits"}, timeout=30).json()
    assert {d["result"]["run_id"] for d in done} <= {row["run_id"] for row in rows["data"]}


def test_check_nn_waits_on_the_same_queue_and_a_repeat_is_cached(server: Server, tmp_path: Path) -> None:
    body = model(40)
    name, accuracy, _, _ = check_nn(
        body["nn_code"], "img-classification", "digits", "acc", PRM, prefix="queued", url=server.url, api_key=KEY
    )
    assert name.startswith("queued-") and accuracy > 0.5
    with server.client() as client:
        (again,) = client.submit_models([{**body, "prefix": "queued"}])
        assert again["status"] == "done" and again["result"]["cached"] and again["result"]["accuracy"] == accuracy
        listed = client.submissions(status="done", limit=1000)
        assert again["id"] in {s["id"] for s in listed}


def test_wrong_requests_name_the_problem(server: Server) -> None:
    with server.client() as client:
        with pytest.raises(CellarHTTPError) as gpus:
            client.submit_models([model(8), model(9, gpus=0.5)])
        assert gpus.value.status_code == 422 and "0 GPU" in str(gpus.value)
        assert gpus.value.body["detail"][0]["loc"] == ["body", "models", 1, "gpus"]  # which of the models
        with pytest.raises(CellarHTTPError) as empty:
            client.submit_models([])
        assert empty.value.status_code == 422
        with pytest.raises(CellarHTTPError) as missing:
            client.submission(10**9)
        assert missing.value.status_code == 404
    bad = httpx.get(f"{server.url}/v1/submissions/events", params={"ids": "1,x"}, headers=AUTH, timeout=30)
    assert bad.status_code == 422 and "ids" in bad.json()["message"]
    huge = httpx.get(f"{server.url}/v1/submissions", params={"ids": str(2**63)}, headers=AUTH, timeout=30)
    assert huge.status_code == 422 and "from 1 to" in huge.json()["message"]
    unknown = httpx.get(f"{server.url}/v1/submissions/events", params={"ids": "999999"}, headers=AUTH, timeout=30)
    assert unknown.status_code == 404


def test_a_crash_mid_training_loses_nothing_and_the_submission_trains_again(tmp_path: Path) -> None:
    server = Server(tmp_path, f"sqlite:///{tmp_path / 'cellar.db'}", CELLAR_MODEL_MEMORY_MB="512", CELLAR_LEASE_S="3")
    server.start()
    slow = {**PRM, "epoch": 30}
    try:
        with server.client() as client:
            first, second = client.submit_models([model(12), model(13, prm=slow)])
            (finished,) = client.as_completed([first["id"]])
            deadline = time.monotonic() + 120
            while client.submission(second["id"])["status"] != "running":
                assert time.monotonic() < deadline
                time.sleep(0.2)
        server.kill()  # the server, its Ray and the sandbox: no clean-up at all
        server.start()
        with server.client() as client:
            assert client.submission(first["id"])["result"] == finished["result"]
            (resumed,) = client.as_completed([second["id"]])
        assert resumed["attempts"] == 2 and resumed["result"]["status"] == "ok"
        assert len(resumed["result"]["epochs"]) == 30
    finally:
        server.stop()


def test_the_generation_loop_runs_end_to_end_without_an_llm(server: Server) -> None:
    """A scripted generator: examples in, mutated code out through the queue, failures read, and
    the next round's examples hold the previous round's successes."""
    prm = {**PRM, "seed_tag": "loop"}  # a prm of its own: the examples are this loop's models
    with server.client() as client:
        (seed,) = client.submit_models([model(24, prm=prm, prefix="loopseed")])
        assert next(client.as_completed([seed["id"]]))["result"]["status"] == "ok"
        generator = ScriptedGenerator(seed=3)
        rounds = run_loop(client, generator, rounds=2, per_round=4, task="img-classification", dataset="digits",
                          metric="acc", prm=prm, k=50)  # fmt: skip
    first, second = rounds
    assert len(first.results) == len(first.submitted) == 4
    assert first.successes, [r["failure"] for r in first.results]
    # the successes of round 1 are examples in round 2; every failure came with its kind
    assert set(first.successes) <= set(second.examples)
    for result in [*first.results, *second.results]:
        assert result["status"] == "ok" or result["failure"]["kind"] in {"shape", "accuracy", "runtime"}
    # what the generator learnt: the failures it read, by move
    failed = [r for r in [*first.results, *second.results] if r["status"] != "ok"]
    assert sum(len(kinds) for kinds in generator.failures.values()) == len(failed)


def test_a_mutation_is_made_through_the_ast() -> None:
    generator = ScriptedGenerator(seed=1)
    scaled = generator.mutate(model(64)["nn_code"], "scale_width")
    assert scaled is not None and "nn.Linear(features, 64)" not in scaled and "nn.Linear(64, out_shape[0])" not in scaled
    one = ScriptedGenerator(seed=1).mutate(model(64)["nn_code"], "one_layer_width")
    assert one is not None and ("nn.Linear(features, 64)" in one) != ("nn.Linear(64, out_shape[0])" in one)
    swapped = generator.mutate(model(64)["nn_code"], "swap_activation")
    assert swapped is not None and "nn.ReLU()" not in swapped
