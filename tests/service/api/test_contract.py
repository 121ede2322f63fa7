"""The HTTP contract's edges a new user hit: strict bodies, unknown query parameters, trials by job
and number, file datasets without files, and an OpenAPI document that says what each route needs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.api import create_app
from service.settings import Settings
from service.store import Store, Trial, TrialState, queries, upgrade
from tests.search_spaces.lemur_models import MLP_CODE
from tests.service.bodies import job_body

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


def _app(url: str, **settings: Any) -> TestClient:
    store = Store(url)
    upgrade(store)
    store.dispose()
    return TestClient(create_app(Settings(database_url=url, api_key=KEY, start_manager=False, **settings)))


@pytest.fixture
def client(store_url: str) -> Iterator[TestClient]:
    with _app(store_url) as test_client:
        yield test_client


def _problems(response: Any) -> list[tuple[str, str]]:
    assert response.status_code == 422, response.text
    return [(".".join(map(str, e["loc"])), e["msg"]) for e in response.json()["detail"]]


# ---- defect 6: typos in queries and lax body types -------------------------------------------------
@pytest.mark.parametrize(
    ("path", "typo"),
    [
        ("/v1/data?datset=digits", "datset"),
        ("/v1/jobs?stauts=running", "stauts"),
        ("/v1/jobs/1/trials?sate=complete", "sate"),
        ("/v1/prompt-examples?task=img-classification&kk=3", "kk"),
        ("/v1/search-spaces?verbose=1", "verbose"),
    ],
)
def test_an_unknown_query_parameter_is_a_422_naming_it(client: TestClient, path: str, typo: str) -> None:
    response = client.get(path)
    problems = _problems(response)
    assert [loc for loc, _ in problems] == [f"query.{typo}"]
    assert f"unknown query parameter '{typo}'" in problems[0][1]
    assert typo in response.json()["message"]


def test_the_message_lists_the_parameters_the_endpoint_takes(client: TestClient) -> None:
    message = client.get("/v1/data?datset=digits").json()["message"]
    for known in ("dataset", "task", "metric", "nn", "epoch", "only_best_accuracy", "max_rows"):
        assert known in message


def test_known_query_parameters_still_filter(client: TestClient) -> None:
    assert client.get("/v1/data?dataset=digits&max_rows=3").status_code == 200
    assert client.get("/v1/jobs?status=running&limit=5").status_code == 200


@pytest.mark.parametrize(
    ("changes", "where"),
    [
        ({"budget__max_trials": "5"}, "body.budget.max_trials"),
        ({"budget__epochs": 2.0}, "body.budget.epochs"),
        ({"search_space__params__channels": "8"}, "body.search_space"),
        ({"strategy__cache": 1}, "body.strategy.cache"),
        ({"strategy__seed": "0"}, "body.strategy.seed"),
        ({"training": {"lr": "0.1"}}, "body.training.lr"),
        ({"resources": {"cpus_per_trial": "1"}}, "body.resources.cpus_per_trial"),
    ],
)
def test_body_types_are_strict(client: TestClient, changes: dict[str, Any], where: str) -> None:
    before = client.get("/v1/jobs").json()["count"]
    problems = _problems(client.post("/v1/jobs", json=job_body(**changes), headers=AUTH))
    assert any(loc.startswith(where) for loc, _ in problems), problems
    assert client.get("/v1/jobs").json()["count"] == before


def test_numbers_may_be_written_as_json_numbers_of_either_kind(client: TestClient) -> None:
    # a float field takes 1 as well as 1.0; lists stand for tuples
    body = job_body(training={"lr": 1, "split": [0.5, 0.25, 0.25]}, resources={"cpus_per_trial": 1})
    response = client.post("/v1/jobs", json=body, headers=AUTH)
    assert response.status_code == 201, response.text
    assert response.json()["spec"]["training"]["lr"] == 1.0


# ---- defect 2: a submitted model on a dataset whose files are missing -------------------------------
def test_a_model_on_a_file_dataset_without_its_files_is_the_same_422_as_a_job(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'cellar.db'}"
    with _app(url, data_dir=tmp_path / "data") as client:
        job = client.post("/v1/jobs", json=job_body(dataset="cifar-10"), headers=AUTH)
        model = client.post(
            "/v1/models",
            json={"nn_code": MLP_CODE, "task": "img-classification", "dataset": "cifar-10", "metric": "acc",
                  "prm": {"lr": 0.01, "momentum": 0.9}},
            headers=AUTH,
        )
    assert job.status_code == model.status_code == 422, model.text
    assert model.json()["detail"][0]["loc"] == ["body", "dataset"]
    assert model.json()["message"] == job.json()["message"]
    assert "cifar-10-batches-py" in model.json()["message"]


# ---- defect 5: trials by job and number; ids labelled as ids ----------------------------------------
def _job_with_trials(url: str, count: int) -> int:
    store = Store(url)
    try:
        with store.write() as session:
            job = queries.create_job(
                session, name="j", search_space="nb201", dataset="digits", task="img-classification",
                metric="acc", spec=job_body(),
            )
            arch = queries.get_or_create_architecture(
                session, arch_hash="a" * 64, search_space="nb201", space_params={}, encoding="|none~0|",
                dedup_hash="d" * 64, in_shape=[1, 1, 8, 8], out_shape=[10], nn_name="cell", nn_code="class Net: pass",
            )
            for number in range(count):
                session.add(Trial(
                    job_id=job.job_id, number=number, architecture_id=arch.architecture_id,
                    state=TrialState.COMPLETE, params={}, distributions={}, prm={}, epochs=1, val_metric=0.5 + number / 10,
                ))
            return job.job_id
    finally:
        store.dispose()


def test_a_trial_is_read_by_its_job_and_number(store_url: str) -> None:
    with _app(store_url) as client:
        first, second = _job_with_trials(store_url, 2), _job_with_trials(store_url, 3)
        trial = client.get(f"/v1/jobs/{second}/trials/2")
        assert trial.status_code == 200, trial.text
        found = trial.json()
        assert (found["job_id"], found["number"]) == (second, 2)
        assert found["nn_code"] == "class Net: pass" and found["val_accuracy"] == pytest.approx(0.7)
        # the global id still reaches the same trial
        assert client.get(f"/v1/trials/{found['id']}").json()["number"] == 2
        assert client.get(f"/v1/jobs/{first}/trials/0").json()["id"] != found["id"]
        missing = client.get(f"/v1/jobs/{first}/trials/5")
        assert missing.status_code == 404
        assert missing.json()["message"] == f"job {first} has no trial number 5; its trials are numbered 0 to 1"
        assert client.get("/v1/jobs/999/trials/0").status_code == 404


def test_openapi_labels_trial_ids_and_numbers(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    trial = schema["components"]["schemas"]["TrialPublic"]["properties"]
    assert "id" in trial["id"]["description"] and "/v1/trials/" in trial["id"]["description"]
    assert "number" in trial["number"]["description"] and "/v1/jobs/" in trial["number"]["description"]
    for field in ("duplicate_of", "retry_of"):
        assert "trial id" in trial[field]["description"]


# ---- defect 9: the OpenAPI document ----------------------------------------------------------------
def _operations(schema: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in schema["paths"].items()
        for method, operation in item.items()
    }


def test_openapi_marks_only_writes_as_needing_a_key_and_lists_the_errors(client: TestClient) -> None:
    operations = _operations(client.get("/openapi.json").json())
    # reads whose arguments are too structured for a query string are POSTs that change nothing
    reads = {("POST", "/v1/data/query")}
    # reads that only an admin may make (the issued keys): keyed even when reads are open
    admin_reads = {("GET", "/v1/keys")}
    for (method, path), operation in operations.items():
        keyed = bool(operation.get("security"))
        writes = method in ("POST", "DELETE") and (method, path) not in reads
        assert keyed == (writes or (method, path) in admin_reads), f"{method} {path}: security {operation.get('security')}"
        responses = set(operation["responses"])
        if keyed:
            assert {"401", "403"} <= responses, f"{method} {path} lists no 401 or 403 (a key without the scope)"
        if "{" in path:
            assert "404" in responses, f"{method} {path} lists no 404"
        if operation.get("parameters") or operation.get("requestBody"):
            assert "422" in responses, f"{method} {path} lists no 422"
    assert "409" in operations[("POST", "/v1/jobs/{job_id}/cancel")]["responses"]
    assert "409" in operations[("POST", "/v1/jobs/{job_id}/extend")]["responses"]
    assert {"204", "409"} <= set(operations[("DELETE", "/v1/jobs/{job_id}")]["responses"])
    error = operations[("GET", "/v1/jobs/{job_id}")]["responses"]["404"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/ErrorPublic"}


def test_with_keyed_reads_openapi_marks_reads_as_needing_a_key(sqlite_url: str) -> None:
    with _app(sqlite_url, reads_require_key=True) as client:
        operations = _operations(client.get("/openapi.json").json())
    for (method, path), operation in operations.items():
        if path.startswith("/v1/"):
            assert operation.get("security"), f"{method} {path}"
            assert "401" in operation["responses"]
    assert not operations[("GET", "/healthz")].get("security")


# ---- /docs without a network --------------------------------------------------------------------------
def test_docs_pages_load_only_local_assets(client: TestClient) -> None:
    import re

    for page in ("/docs",):
        html = client.get(page)
        assert html.status_code == 200
        urls = re.findall(r'(?:src|href)=["\']([^"\']+)["\']', html.text) + re.findall(r"url: ?'([^']+)'", html.text)
        assert urls, page
        for url in urls:
            assert url.startswith("/"), f"{page} loads {url} from elsewhere"
            assert client.get(url).status_code == 200, url


# ---- defect 4: each task's own default training protocol ------------------------------------------
def test_each_task_trains_with_its_own_default_protocol(client: TestClient) -> None:
    from search_spaces.datasets import default_training

    def training(**changes: Any) -> dict[str, Any]:
        response = client.post("/v1/jobs", json=job_body(**changes), headers=AUTH)
        assert response.status_code == 201, response.text
        stored = response.json()["spec"]["training"]
        return {k: stored[k] for k in default_training("regression")}

    images = training()
    assert images == default_training("img-classification") and images["optimizer"] == "sgd"
    kan = {"search_space": {"kind": "kan", "params": {}}, "dataset": "kan-exp-sin"}
    assert training(**kan) == default_training("regression") == {
        "optimizer": "adam", "lr": 0.01, "momentum": 0.9, "weight_decay": 0.0, "nesterov": True,
        "scheduler": "cosine", "batch_size": 16,
    }
    graphs = training(search_space={"kind": "gnn", "params": {}}, dataset="karate")
    assert graphs == default_training("node-classification") and graphs["optimizer"] == "adam"
    # a field the job sets is kept; the others still come from its task
    chosen = training(**kan, training={"optimizer": "sgd", "lr": 0.02})
    assert chosen == {**default_training("regression"), "optimizer": "sgd", "lr": 0.02}
    listed = {d["name"]: d["training"] for d in client.get("/v1/datasets").json()}
    assert listed["kan-exp-sin"] == default_training("regression") and listed["digits"]["optimizer"] == "sgd"
