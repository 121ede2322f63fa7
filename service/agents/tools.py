"""The MCP tools: Cellar's API for agents, in compact answers."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from .. import __version__

__all__ = ["ApiCaller", "build_server"]

INSTRUCTIONS = """\
Cellar searches neural architectures and trains model code. Typical use: list_search_spaces and
list_datasets, submit_job, then job_summary until it has ended; query_results and prompt_examples
read past results (LEMUR's data()); submit_model trains your own model code (LEMUR's check_nn) and
answers with its accuracy or a structured failure (kind, message, line) to fix and resubmit."""


class ApiCaller:
    """Calls Cellar's HTTP API: over the network (``base_url``), or in process (``transport``, an
    ``httpx.ASGITransport`` of the app), with the key in ``api_key``."""

    def __init__(self, base_url: str, api_key: str | None, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.transport = transport

    async def __call__(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            async with httpx.AsyncClient(
                base_url=self.base_url, headers=self.headers, transport=self.transport,
                timeout=httpx.Timeout(30.0, read=None),
            ) as client:
                response = await client.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise ToolError(f"cannot reach Cellar at {self.base_url}: {type(error).__name__}: {error}") from None
        if response.status_code >= 400:
            try:
                body = response.json()
                message = body.get("message") or body.get("detail")
            except ValueError:
                message = response.text
            raise ToolError(f"HTTP {response.status_code}: {message}")
        return response.json() if response.content else None


def _compact_job(job: dict[str, Any]) -> dict[str, Any]:
    best = job.get("best_trial")
    return {
        "id": job["id"],
        "name": job["name"],
        "status": job["status"],
        "counts": job["counts"],
        "max_trials": job.get("max_trials"),
        "best": {"number": best["number"], "values": best["values"], "arch": best["arch"]} if best else None,
        "pareto_set_size": len(job.get("best_trials") or []),
        "error": job.get("error"),
    }


def _compact_result(result: dict[str, Any]) -> dict[str, Any]:
    """A trained model's answer without its per-epoch details: the accuracies only."""
    keep = ("name", "status", "accuracy", "accuracy_to_time", "code_quality", "test_accuracy", "params", "failure",
            "run_id", "cached")  # fmt: skip
    return {k: result.get(k) for k in keep} | {"epochs": [e["accuracy"] for e in result["epochs"]]}


def build_server(call: ApiCaller) -> MCPServer:
    """The MCP server whose tools call Cellar through ``call``."""
    server = MCPServer(name="cellar", title="Cellar", version=__version__, instructions=INSTRUCTIONS)

    @server.tool()
    async def list_search_spaces() -> list[dict[str, Any]]:
        """The search spaces (nb201 cells, gnn, kan, code), their tasks and the JSON schema of their params."""
        return await call("GET", "/v1/search-spaces")

    @server.tool()
    async def list_datasets() -> list[dict[str, Any]]:
        """The datasets: task, metric and its direction, shapes, whether their files are present."""
        rows = await call("GET", "/v1/datasets")
        keep = ("name", "task", "metric", "metric_direction", "in_shape", "out_shape", "num_classes", "available", "reason")
        return [{k: row.get(k) for k in keep} for row in rows]

    @server.tool()
    async def list_strategies() -> dict[str, Any]:
        """Samplers and pruners, with the JSON schema of their parameters."""
        return await call("GET", "/v1/strategies")

    @server.tool()
    async def submit_job(
        job: Annotated[dict[str, Any], Field(description="the job body of POST /v1/jobs: search_space, dataset, budget, ...")],
    ) -> dict[str, Any]:
        """Submit a search job; answers its id and state. A wrong body is refused with what to fix."""
        return _compact_job(await call("POST", "/v1/jobs", json=job))

    @server.tool()
    async def job_status(job_id: int) -> dict[str, Any]:
        """A job's state, trial counts and best trial."""
        return _compact_job(await call("GET", f"/v1/jobs/{job_id}"))

    @server.tool()
    async def job_summary(
        job_id: int,
        top: Annotated[int, Field(ge=1, le=50, description="best trials (or Pareto-set trials) to list")] = 5,
        budget: Annotated[int, Field(ge=300, le=100_000, description="the most characters of the answer")] = 2000,
    ) -> dict[str, Any]:
        """A job in a few hundred tokens: state, counts, best trials or Pareto set, failure histogram."""
        return await call("GET", f"/v1/jobs/{job_id}/summary", params={"top": top, "budget": budget})

    @server.tool()
    async def pareto_set(job_id: int) -> dict[str, Any]:
        """The non-dominated trials of a job (any number of objectives) and their hypervolume."""
        front = await call("GET", f"/v1/jobs/{job_id}/pareto")
        return {
            "objectives": front["objectives"],
            "hypervolume": front["hypervolume"],
            "trials": [{"number": t["number"], "values": t["values"], "arch": t["arch"]} for t in front["data"]],
        }

    @server.tool()
    async def cancel_job(job_id: int) -> dict[str, Any]:
        """Stop a queued or running job; finished trials stay."""
        return _compact_job(await call("POST", f"/v1/jobs/{job_id}/cancel"))

    @server.tool()
    async def query_results(
        task: str | None = None,
        dataset: str | None = None,
        metric: str | None = None,
        nn: str | None = None,
        nn_prefix: str | None = None,
        only_best_accuracy: bool = True,
        unique_nn: bool = False,
        max_rows: Annotated[int, Field(ge=1, le=200)] = 20,
        include_code: bool = False,
    ) -> dict[str, Any]:
        """LEMUR's data(): trained models and their per-epoch accuracy, best first when only_best_accuracy."""
        params: dict[str, Any] = {
            "only_best_accuracy": only_best_accuracy, "unique_nn": unique_nn, "max_rows": max_rows, "codes": "separate",
        }
        for key, value in (("task", task), ("dataset", dataset), ("metric", metric), ("nn", nn), ("nn_prefixes", nn_prefix)):
            if value is not None:
                params[key] = value
        answer = await call("GET", "/v1/data", params=params)
        keep = ("nn", "task", "dataset", "metric", "epoch", "accuracy", "prm", "job_id", "run_id", "arch")
        rows = [{k: row.get(k) for k in keep} for row in answer["data"]]
        if include_code:
            for row, full in zip(rows, answer["data"]):
                row["nn_code"] = (answer.get("codes") or {}).get(full["nn_id"])
        return {"count": answer["count"], "rows": rows, "more": answer.get("next_offset") is not None}

    @server.tool()
    async def prompt_examples(
        task: str, dataset: str, metric: str, k: Annotated[int, Field(ge=1, le=20)] = 5
    ) -> list[dict[str, Any]]:
        """The k best distinct models for a task, dataset and metric, with compacted code: few-shot examples."""
        answer = await call("GET", "/v1/prompt-examples", params={"task": task, "dataset": dataset, "metric": metric, "k": k})
        return answer["data"]

    @server.tool()
    async def submit_model(
        nn_code: Annotated[str, Field(description="model source under LEMUR's contract: class Net(in_shape, out_shape, prm, device)")],
        task: str,
        dataset: str,
        metric: str,
        prm: Annotated[dict[str, Any], Field(description="LEMUR's prm: lr, momentum, batch, epoch, transform, ...")],
        prefix: str | None = None,
        save_to_db: bool = True,
    ) -> dict[str, Any]:
        """Train model code in Cellar's sandbox (LEMUR's check_nn); answers its accuracy, or its
        failure: kind (syntax, contract, shape, nan_loss, oom, timeout, runtime, accuracy), message, line."""
        body: dict[str, Any] = {"nn_code": nn_code, "task": task, "dataset": dataset, "metric": metric, "prm": prm,
                                "save_to_db": save_to_db}
        if prefix is not None:
            body["prefix"] = prefix
        return _compact_result(await call("POST", "/v1/models", json=body))

    @server.tool()
    async def queue_models(
        models: Annotated[list[dict[str, Any]], Field(
            min_length=1, max_length=100,
            description="model bodies as submit_model takes them: nn_code, task, dataset, metric, prm, prefix")],
    ) -> list[dict[str, Any]]:  # fmt: skip
        """Queue many models at once without waiting (POST /v1/submissions); answers each one's id,
        status and name. Follow them with submission_results."""
        answer = await call("POST", "/v1/submissions", json={"models": models})
        return [{k: s[k] for k in ("id", "status", "name")} for s in answer["data"]]

    @server.tool()
    async def submission_results(
        ids: Annotated[list[int], Field(min_length=1, max_length=100, description="ids from queue_models")],
    ) -> list[dict[str, Any]]:  # fmt: skip
        """Where queued models stand (queued, running, done) and, once done, each one's result as
        submit_model answers it: its accuracy, or its failure's kind, message and line."""
        answer = await call("GET", "/v1/submissions", params={"ids": ",".join(map(str, ids)), "limit": len(ids)})
        return [
            {"id": s["id"], "status": s["status"], "name": s["name"]}
            | ({"result": _compact_result(s["result"])} if s["result"] is not None else {})
            for s in answer["data"]
        ]

    return server
