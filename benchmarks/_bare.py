"""The baseline of ``benchmarks/api_speed.py``: a bare FastAPI app with Cellar's read routes.

Each route answers, from memory, the bytes Cellar answered for the same path and query (recorded
by ``api_speed.py`` into the JSON file ``CELLAR_BARE_ANSWERS`` names): the same routing, the same
path parameters, the same response sizes, none of Cellar's work. It is served by uvicorn with its
defaults, as ``cellar serve`` is.

    CELLAR_BARE_ANSWERS=answers.json .venv/bin/python -m uvicorn benchmarks._bare:app --port 8001
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from fastapi import FastAPI, Request, Response

ROUTES = (
    "/healthz",
    "/v1/search-spaces",
    "/v1/strategies",
    "/v1/datasets",
    "/v1/jobs",
    "/v1/jobs/{job_id}",
    "/v1/jobs/{job_id}/trials",
    "/v1/jobs/{job_id}/trials/{number}",
    "/v1/data",
)

#: "path?query" -> (status, body), as Cellar answered it
ANSWERS: dict[str, tuple[int, bytes]] = {
    key: (status, body.encode())
    for key, (status, body) in json.loads(Path(os.environ.get("CELLAR_BARE_ANSWERS", "/dev/null")).read_text() or "{}").items()
}

app = FastAPI(title="bare")


def _route(path: str) -> None:
    # a plain ``def`` with the route's path parameters typed as Cellar's are: FastAPI validates
    # them and runs the handler in its thread pool, as it runs Cellar's
    if "{number}" in path:

        def answer(request: Request, job_id: int, number: int) -> Response:
            return _answer(request)
    elif "{job_id}" in path:

        def answer(request: Request, job_id: int) -> Response:  # type: ignore[misc]
            return _answer(request)
    else:

        def answer(request: Request) -> Response:  # type: ignore[misc]
            return _answer(request)

    app.get(path)(answer)


def _answer(request: Request) -> Response:
    key = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    status, body = ANSWERS.get(key, (404, b'{"detail": "not recorded"}'))
    return Response(content=body, status_code=status, media_type="application/json")


for _path in ROUTES:
    _route(_path)
