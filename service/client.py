"""A Python client for a Cellar server (httpx)."""

from __future__ import annotations

import functools
import json
import os
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

__all__ = ["CellarClient", "CellarHTTPError", "default_api_key", "default_url"]

FINISHED = ("succeeded", "failed", "cancelled")


def default_url() -> str:
    return os.environ.get("CELLAR_URL", "http://127.0.0.1:8000").rstrip("/")


def default_api_key() -> str | None:
    """``CELLAR_API_KEY``, else the key a local server generated into ``.cellar-api-key``."""
    key = os.environ.get("CELLAR_API_KEY")
    if key:
        return key
    path = Path(os.environ.get("CELLAR_API_KEY_FILE", ".cellar-api-key"))
    if path.is_file():
        return path.read_text().strip() or None
    return None


@functools.lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    """One TLS context per process: building one loads the CA bundle (20-30 ms here), and LEMUR's
    calls (``service.lemur.data``) open a client per call. httpx's defaults (certifi, or
    ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``)."""
    return httpx.create_ssl_context()


class CellarHTTPError(Exception):
    """The server answered with an error; ``message`` is its explanation."""

    def __init__(self, status_code: int, message: str, body: Any = None) -> None:
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code = status_code
        self.message = message
        self.body = body


class CellarClient:
    def __init__(self, url: str | None = None, api_key: str | None = None, *, timeout: float = 60.0) -> None:
        self.url = (url or default_url()).rstrip("/")
        key = api_key if api_key is not None else default_api_key()
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, verify=_tls_context())

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> CellarClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._send(method, path, **kwargs).json()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The answer to one request; an unreachable server or an error answer raises CellarHTTPError."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise self._unreachable(error) from error
        self._raise_for(response)
        return response

    def _unreachable(self, error: httpx.HTTPError) -> CellarHTTPError:
        return CellarHTTPError(
            0,
            f"cannot reach Cellar at {self.url} ({type(error).__name__}: {error}): start it with `make run` or "
            "`cellar serve`, or point CELLAR_URL (or --url) at the server",
        )

    def _raise_for(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        try:
            body = response.json()
            message = body.get("message") or body.get("detail") or response.text
        except ValueError:
            body, message = None, response.text
        if response.status_code == 401 and "Authorization" not in self._http.headers:
            message = f"{message} (this client sent no key: set CELLAR_API_KEY, or run where .cellar-api-key is)"
        raise CellarHTTPError(response.status_code, str(message), body)

    # ---- endpoints ---------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return self._request("GET", "/healthz")

    def submit_job(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", "/v1/jobs", json=body)

    def jobs(self, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        return self._request("GET", "/v1/jobs", params=params)["data"]

    def job(self, job_id: int) -> dict[str, Any]:
        return self._request("GET", f"/v1/jobs/{job_id}")

    def trials(self, job_id: int, state: str | None = None) -> list[dict[str, Any]]:
        params = {"state": state} if state else None
        return self._request("GET", f"/v1/jobs/{job_id}/trials", params=params)["data"]

    def trial(self, trial_id: int) -> dict[str, Any]:
        """A trial by its global id (a trial's ``id``), with its ``nn_code``."""
        return self._request("GET", f"/v1/trials/{trial_id}")

    def job_trial(self, job_id: int, number: int) -> dict[str, Any]:
        """Trial ``number`` of job ``job_id`` (its ``number``, as ``cellar trials`` shows), with its ``nn_code``."""
        return self._request("GET", f"/v1/jobs/{job_id}/trials/{number}")

    def log(self, job_id: int, number: int) -> str:
        """What trial ``number`` of the job printed and warned."""
        return self._send("GET", f"/v1/jobs/{job_id}/trials/{number}/log").text

    def weights(self, job_id: int, number: int) -> bytes:
        """The trial's trained weights: the bytes of a ``torch.save`` file (``torch.load(...,
        weights_only=True)`` reads it)."""
        return self._send("GET", f"/v1/jobs/{job_id}/trials/{number}/weights").content

    def optuna_db(self, job_id: int) -> bytes:
        """The job's study as an Optuna SQLite storage file (``GET /v1/jobs/{id}/optuna``)."""
        return self._send("GET", f"/v1/jobs/{job_id}/optuna", timeout=httpx.Timeout(60.0, read=600.0)).content

    def pareto(self, job_id: int) -> dict[str, Any]:
        """The job's non-dominated trials and their hypervolume."""
        return self._request("GET", f"/v1/jobs/{job_id}/pareto")

    def importance(self, job_id: int, evaluator: str = "fanova") -> dict[str, Any]:
        return self._request("GET", f"/v1/jobs/{job_id}/importance", params={"evaluator": evaluator})

    def events(self, job_id: int) -> Iterator[tuple[str, dict[str, Any]]]:
        """The job's server-sent events as ``(name, data)``: ``trial`` and ``job`` events until the
        job ends (or ``shutdown`` when the server stops first)."""
        return self._events(f"/v1/jobs/{job_id}/events")

    def _events(self, path: str, params: dict[str, Any] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        try:
            with self._http.stream("GET", path, params=params, timeout=httpx.Timeout(30.0, read=None)) as response:
                if response.status_code >= 400:
                    response.read()
                    self._raise_for(response)
                name, data = "message", []
                for line in response.iter_lines():
                    if line.startswith("event: "):
                        name = line[len("event: "):]
                    elif line.startswith("data: "):
                        data.append(line[len("data: "):])
                    elif not line and data:
                        yield name, json.loads("\n".join(data))
                        name, data = "message", []
        except httpx.HTTPError as error:
            raise self._unreachable(error) from error

    def extend(self, job_id: int, *, max_trials: int | None = None, time_limit_s: float | None = None) -> dict[str, Any]:
        """More trials (a new total) or more time (seconds more) for an ended job; it runs again."""
        body = {k: v for k, v in {"max_trials": max_trials, "time_limit_s": time_limit_s}.items() if v is not None}
        return self._request("POST", f"/v1/jobs/{job_id}/extend", json=body)

    def delete(self, job_id: int) -> None:
        """Remove an ended (or queued) job with its trials and kept weights."""
        self._send("DELETE", f"/v1/jobs/{job_id}")

    def cancel(self, job_id: int) -> dict[str, Any]:
        return self._request("POST", f"/v1/jobs/{job_id}/cancel")

    def submit_model(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /v1/models``: waits while the server trains the model (no read timeout)."""
        return self._request("POST", "/v1/models", json=body, timeout=httpx.Timeout(60.0, read=None))

    def prompt_examples(self, *, task: str | None = None, dataset: str | None = None, metric: str | None = None,
                        k: int = 5) -> list[dict[str, Any]]:  # fmt: skip
        """``GET /v1/prompt-examples``: the ``k`` best distinct models, each with its compacted ``code``."""
        params = {"task": task, "dataset": dataset, "metric": metric, "k": k}
        return self._request("GET", "/v1/prompt-examples", params={k: v for k, v in params.items() if v is not None})["data"]

    def submit_models(self, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``POST /v1/submissions``: queue models (each a ``submit_model`` body); their submissions,
        with ``id`` and ``status``, at once."""
        return self._request("POST", "/v1/submissions", json={"models": bodies})["data"]

    def submission(self, submission_id: int) -> dict[str, Any]:
        """A submission: ``status`` (queued, running, done) and, once done, its ``result``."""
        return self._request("GET", f"/v1/submissions/{submission_id}")

    def submissions(self, ids: list[int] | None = None, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit, "status": status, "ids": ",".join(map(str, ids)) if ids else None}
        return self._request("GET", "/v1/submissions", params={k: v for k, v in params.items() if v is not None})["data"]

    def as_completed(self, ids: list[int]) -> Iterator[dict[str, Any]]:
        """Each of the submissions ``ids`` once it is done (its ``result`` in it), in the order they
        finish, followed through ``GET /v1/submissions/events``; a server that stops meanwhile
        raises ``CellarHTTPError`` (503), and the submissions go on there."""
        pending = set(ids)
        for start in range(0, len(ids), 1000):
            chunk = ids[start:start + 1000]
            for name, data in self._events("/v1/submissions/events", {"ids": ",".join(map(str, chunk))}):
                if name == "shutdown":
                    raise CellarHTTPError(503, data.get("detail", "the server is shutting down"), data)
                if name == "submission" and data["status"] == "done" and data["id"] in pending:
                    pending.discard(data["id"])
                    yield data

    def model(self, run_id: int) -> dict[str, Any]:
        return self._request("GET", f"/v1/models/{run_id}")

    def data(self, **filters: Any) -> list[dict[str, Any]]:
        return self.data_page(**filters)["data"]

    def data_page(self, **filters: Any) -> dict[str, Any]:
        """One answer of ``GET /v1/data``: ``data``, ``count``, ``next_offset`` (and ``codes``)."""
        params = {k: v for k, v in filters.items() if v is not None}
        return self._request("GET", "/v1/data", params=params)

    def data_query(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /v1/data/query``: ``data()`` with ``sql`` (joined rows, codes once in ``codes``)."""
        return self._request("POST", "/v1/data/query", json=body)

    def nn_stats(self, **filters: Any) -> dict[str, Any]:
        """``GET /v1/nn-stats``: LEMUR's ``nn_stat`` rows (``data``, ``count``)."""
        return self._request("GET", "/v1/nn-stats", params={k: v for k, v in filters.items() if v is not None})

    def create_key(self, name: str, scopes: list[str], limits: dict[str, int] | None = None) -> dict[str, Any]:
        """``POST /v1/keys`` (an admin key): a new key, with its own ``limits`` where given; its
        ``key`` is shown this once."""
        body: dict[str, Any] = {"name": name, "scopes": scopes}
        if limits:
            body["limits"] = limits
        return self._request("POST", "/v1/keys", json=body)

    def keys(self, *, revoked: bool = True) -> list[dict[str, Any]]:
        """``GET /v1/keys`` (an admin key): the issued keys, without their secrets."""
        return self._request("GET", "/v1/keys", params={"revoked": revoked})["data"]

    def revoke_key(self, key_id: int) -> dict[str, Any]:
        """``DELETE /v1/keys/{id}`` (an admin key): the key is refused from now on."""
        return self._request("DELETE", f"/v1/keys/{key_id}")

    def wait(
        self,
        job_id: int,
        *,
        timeout: float | None = None,
        interval: float = 1.0,
        on_update: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll the job until it finishes; ``on_update`` sees every state. Returns the final job."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if on_update is not None:
                on_update(job)
            if job["status"] in FINISHED:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout} s")
            time.sleep(interval)
