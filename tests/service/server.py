"""A real ``cellar serve`` in a child process, for tests that talk HTTP to it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from service.client import CellarClient

KEY = "e2e-test-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``cellar migrate`` then ``cellar serve`` on a free loopback port, with its own local Ray."""

    def __init__(self, workdir: Path, database_url: str, **env: str) -> None:
        self.workdir = workdir
        self.database_url = database_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / f"serve-{self.port}.log"
        self.env = {
            **os.environ,
            "CELLAR_DATABASE_URL": database_url,
            "CELLAR_API_KEY": KEY,
            "CELLAR_RAY_NUM_CPUS": "2",
            "CELLAR_RAY_OBJECT_STORE_MB": "100",
            "CELLAR_POLL_INTERVAL_S": "0.05",
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def cellar(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "service.cli", *args],
            cwd=self.workdir, env=self.env, capture_output=True, text=True, timeout=timeout,
        )

    def start(self, timeout: float = 120) -> Server:
        migrated = self.cellar("migrate")
        assert migrated.returncode == 0, migrated.stderr
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service.cli", "serve", "--port", str(self.port)],
                cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"cellar serve exited:\n{self.log.read_text()}"
            try:
                health = httpx.get(f"{self.url}/healthz", timeout=2).json()
                if health["executor"].get("status") == "ok":
                    return self
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.3)
        raise AssertionError(f"cellar serve did not become healthy:\n{self.log.read_text()}")

    def stop(self, timeout: float = 60) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def client(self, api_key: str | None = KEY) -> CellarClient:
        return CellarClient(self.url, api_key)

    def wait(self, job_id: int, timeout: float = 300) -> dict[str, Any]:
        with self.client() as client:
            return client.wait(job_id, timeout=timeout, interval=0.2)
