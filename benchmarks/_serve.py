"""A real ``cellar serve`` for the benchmarks: its own store in a folder, local Ray, a known key.

    with serving(Path(tmp), CELLAR_MODEL_WORKERS="2") as url:
        ...
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

KEY = "benchmark-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serving(workdir: Path, *, database_url: str | None = None, **settings: str) -> Iterator[str]:
    """Migrate a store (SQLite in ``workdir`` unless ``database_url``) and serve it on a free port,
    with local Ray on 2 CPUs and ``settings`` as ``CELLAR_*`` variables; yields the server's URL
    once it is healthy and stops it after."""
    env = {
        **os.environ,
        "CELLAR_DATABASE_URL": database_url or f"sqlite:///{workdir / 'cellar.db'}",
        "CELLAR_API_KEY": KEY,
        "CELLAR_RAY_NUM_CPUS": "2",
        "CELLAR_RAY_OBJECT_STORE_MB": "100",
        "CELLAR_ARTIFACTS_DIR": str(workdir / "artifacts"),
        **settings,
    }
    cli = [sys.executable, "-m", "service.cli"]
    subprocess.run([*cli, "migrate"], cwd=workdir, env=env, check=True, capture_output=True)
    port = free_port()
    with open(workdir / "serve.log", "ab") as log:
        process = subprocess.Popen([*cli, "serve", "--port", str(port)], cwd=workdir, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"cellar serve exited; see {workdir / 'serve.log'}")
            try:
                if httpx.get(f"{url}/healthz", timeout=2).json()["executor"].get("status") == "ok":
                    break
            except (httpx.HTTPError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"cellar serve did not become healthy; see {workdir / 'serve.log'}")
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        process.wait(60)
