"""Cellar's MCP tools, through the MCP Python SDK's own client: over streamable HTTP at a running
server's ``/mcp`` (a real job trained by its manager, a model submitted and its structured failure)
and over stdio from ``cellar mcp``."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from service.settings import Settings
from service.store import Store, upgrade
from tests.aio import run_async
from tests.browser.conftest import LocalServer
from tests.search_spaces.lemur_models import MLP_CODE
from tests.service.bodies import job_body
from workers.inline_executor import InlineExecutor

pytestmark = pytest.mark.timeout(300)

KEY = "mcp-key"


TOOLS = {"list_search_spaces", "list_datasets", "list_strategies", "submit_job", "job_status", "job_summary",
         "pareto_set", "cancel_job", "query_results", "prompt_examples", "submit_model", "queue_models",
         "submission_results"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    folder = tmp_path_factory.mktemp("mcp")
    url = f"sqlite:///{folder / 'cellar.db'}"
    store = Store(url)
    upgrade(store)
    store.dispose()
    settings = Settings(database_url=url, api_key=KEY, poll_interval_s=0.05, artifacts_dir=folder / "artifacts")
    with LocalServer(settings, executor=InlineExecutor()) as running:
        yield running


def over_http(server: LocalServer, key: str = KEY) -> Client:
    transport = streamable_http_client(f"{server.url}/mcp", http_client=httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}))
    return Client(transport)


def structured(result: Any) -> Any:
    assert not result.is_error, result.content
    if result.structured_content is not None:
        content = result.structured_content
        return content.get("result", content) if set(content) == {"result"} else content
    return json.loads(result.content[0].text)


def test_an_agent_searches_reads_and_submits_code_over_http(server: LocalServer) -> None:
    async def session() -> dict[str, Any]:
        async with over_http(server) as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            spaces = structured(await client.call_tool("list_search_spaces", {}))
            job = structured(await client.call_tool("submit_job", {"job": job_body(
                name="by-an-agent", budget={"max_trials": 3, "epochs": 1, "parallelism": 1})}))
            for _ in range(600):
                status = structured(await client.call_tool("job_status", {"job_id": job["id"]}))
                if status["status"] in ("succeeded", "failed", "cancelled"):
                    break
                await anyio.sleep(0.2)
            summary = structured(await client.call_tool("job_summary", {"job_id": job["id"], "top": 2}))
            rows = structured(await client.call_tool("query_results", {"dataset": "digits", "max_rows": 5}))
            examples = structured(await client.call_tool(
                "prompt_examples", {"task": "img-classification", "dataset": "digits", "metric": "acc", "k": 2}))
            prm = {"lr": 0.05, "momentum": 0.9, "dropout": 0.0, "batch": 64, "epoch": 1, "transform": "norm"}
            broken = structured(await client.call_tool("submit_model", {
                "nn_code": MLP_CODE.replace("def forward(self, x):", "def forward(self, x)"), "task": "img-classification",
                "dataset": "digits", "metric": "acc", "prm": prm, "prefix": "rl-bb-test1"}))
            refused = await client.call_tool("submit_job", {"job": {"dataset": "digits"}})
            missing = await client.call_tool("job_status", {"job_id": 999})
            return dict(tools=tools, spaces=spaces, job=job, status=status, summary=summary, rows=rows,
                        examples=examples, broken=broken, refused=refused, missing=missing)

    seen = run_async(session)
    assert TOOLS <= seen["tools"]
    assert {s["kind"] for s in seen["spaces"]} >= {"nb201", "gnn", "kan", "code"}
    assert seen["job"]["status"] == "queued" and seen["status"]["status"] == "succeeded"
    api = httpx.get(f"{server.url}/v1/jobs/{seen['job']['id']}").json()
    assert seen["status"]["best"]["number"] == api["best_trial"]["number"]
    summary = seen["summary"]
    assert summary["job"]["trials"]["complete"] == 3 and len(summary["best"]) == 2
    assert summary["best"][0]["number"] == api["best_trial"]["number"] and len(json.dumps(summary)) <= 2000
    expected = httpx.get(f"{server.url}/v1/data", params={"dataset": "digits", "only_best_accuracy": True, "max_rows": 5}).json()
    assert [r["nn"] for r in seen["rows"]["rows"]] == [r["nn"] for r in expected["data"]] and seen["rows"]["count"] == 3
    assert len(seen["examples"]) == 2 and "class Net" in seen["examples"][0]["code"]
    assert seen["broken"]["status"] == "failed" and seen["broken"]["failure"]["kind"] == "syntax"
    assert seen["broken"]["failure"]["line"] and seen["broken"]["name"].startswith("rl-bb-test1-")
    # the API's own refusals reach the agent as tool errors it can read
    assert seen["refused"].is_error and "search_space" in seen["refused"].content[0].text
    assert seen["missing"].is_error and "job 999 does not exist" in seen["missing"].content[0].text


def test_an_agent_queues_models_and_follows_them(server: LocalServer) -> None:
    prm = {"lr": 0.05, "momentum": 0.9, "dropout": 0.0, "batch": 64, "epoch": 1, "transform": "norm"}
    model = {"task": "img-classification", "dataset": "digits", "metric": "acc", "prm": prm, "prefix": "mcp-queue"}
    models = [
        {**model, "nn_code": MLP_CODE.replace("nn.Linear(features, 64), nn.ReLU()", "nn.Linear(features, 64), nn.GELU()")},
        {**model, "nn_code": MLP_CODE.replace("nn.Linear(64, out_shape[0])", "nn.Linear(63, out_shape[0])")},
    ]
    assert models[0]["nn_code"] != MLP_CODE and models[1]["nn_code"] != MLP_CODE

    async def session() -> tuple[Any, Any, Any]:
        async with over_http(server) as client:
            queued = structured(await client.call_tool("queue_models", {"models": models}))
            for _ in range(900):
                seen = structured(await client.call_tool("submission_results", {"ids": [q["id"] for q in queued]}))
                if all(s["status"] == "done" for s in seen):
                    break
                await anyio.sleep(0.2)
            refused = await client.call_tool("queue_models", {"models": [{**model, "dataset": "no-such"}]})
            return queued, seen, refused

    queued, seen, refused = run_async(session)
    assert [q["status"] for q in queued] == ["queued", "queued"] and queued[0]["name"].startswith("mcp-queue-")
    assert [s["id"] for s in seen] == [q["id"] for q in queued]
    good, broken = (s["result"] for s in seen)
    assert good["status"] == "ok" and good["accuracy"] > 0.5 and len(good["epochs"]) == 1
    assert broken["status"] == "failed" and broken["failure"]["kind"] == "shape"
    # the same as the HTTP API's answer
    stored = httpx.get(f"{server.url}/v1/submissions/{queued[0]['id']}", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert stored["result"]["accuracy"] == good["accuracy"]
    assert refused.is_error and "no-such" in refused.content[0].text


def test_the_http_endpoint_needs_the_key(server: LocalServer) -> None:
    answer = httpx.post(f"{server.url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert answer.status_code == 401 and "Authorization: Bearer" in answer.json()["detail"]

    async def wrong_key() -> None:
        async with over_http(server, key="wrong") as client:
            await client.list_tools()

    with pytest.raises(Exception):  # noqa: B017 - the SDK raises its own error for the 401
        run_async(wrong_key)


def test_cellar_mcp_serves_the_tools_over_stdio(server: LocalServer, tmp_path: Path) -> None:
    cellar = Path(sys.executable).with_name("cellar")
    params = StdioServerParameters(
        command=str(cellar), args=["mcp", "--url", server.url], cwd=str(tmp_path),
        env={**os.environ, "CELLAR_API_KEY": KEY},
    )

    async def session() -> tuple[set[str], Any]:
        async with Client(params) as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            return tools, structured(await client.call_tool("list_datasets", {}))

    tools, datasets = run_async(session)
    assert TOOLS <= tools
    assert {"digits", "iris", "karate"} <= {d["name"] for d in datasets}
