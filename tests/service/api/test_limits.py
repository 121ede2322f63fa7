"""What a request may send: a body over ``CELLAR_MAX_REQUEST_MB`` is a 413 before any route parses
it (announced or streamed), nothing is stored; CORS stays closed unless origins are named."""

from __future__ import annotations

from collections.abc import Iterator

from tests.service.api.test_contract import KEY, _app
from tests.service.bodies import job_body

AUTH = {"Authorization": f"Bearer {KEY}"}


def test_a_body_over_the_bound_is_a_413_and_stores_nothing(sqlite_url: str) -> None:
    with _app(sqlite_url, max_request_mb=1) as client:
        small = client.post("/v1/jobs", json=job_body(name="fits"), headers=AUTH)
        assert small.status_code == 201, small.text
        big = {**job_body(name="too-big"), "padding": "x" * (2 * 2**20)}  # under the bound: a 422 (extra field)
        refused = client.post("/v1/jobs", json=big, headers=AUTH)
        assert refused.status_code == 413
        assert "1 MiB" in refused.json()["message"] and "CELLAR_MAX_REQUEST_MB" in refused.json()["message"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: the bytes are counted as they come
            yield b'{"name": "streamed", "padding": "'
            for _ in range(40):
                yield b"y" * 65536
            yield b'"}'

        streamed = client.post("/v1/jobs", content=chunks(), headers={**AUTH, "Content-Type": "application/json"})
        assert streamed.status_code == 413 and "CELLAR_MAX_REQUEST_MB" in streamed.json()["message"]
        # the refused ones left nothing behind, and the server still answers
        names = [job["name"] for job in client.get("/v1/jobs").json()["data"]]
        assert names == ["fits"]


def test_cors_is_closed_unless_origins_are_named(sqlite_url: str) -> None:
    preflight = {"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "POST"}
    with _app(sqlite_url) as client:
        assert "access-control-allow-origin" not in client.options("/v1/jobs", headers=preflight).headers
        assert "access-control-allow-origin" not in client.get("/v1/jobs", headers={"Origin": preflight["Origin"]}).headers
    with _app(sqlite_url, cors_origins=["https://elsewhere.example"]) as client:
        answer = client.options("/v1/jobs", headers=preflight)
        assert answer.headers["access-control-allow-origin"] == "https://elsewhere.example"
        other = client.options("/v1/jobs", headers={**preflight, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
