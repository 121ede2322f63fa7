"""A real ``cellar serve`` in a child process, for tests that talk HTTP to it."""

from __future__ import annotations

import os
import signal
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


def terminate(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM ``process`` and wait for it; SIGKILL it if it is still there after ``timeout`` seconds."""
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


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
            "CELLAR_ARTIFACTS_DIR": str(workdir / "artifacts"),
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
            # its own session: ``kill`` can then take the server down with the Ray it started
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service.cli", "serve", "--port", str(self.port)],
                cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"cellar serve exited:\n{self.log.read_text()}"
            try:
                health = httpx.get(f"{self.url}/healthz", timeout=2).json()
                # "disabled": a server without the job manager (CELLAR_START_MANAGER=false)
                if health["executor"].get("status") in ("ok", "disabled"):
                    return self
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.3)
        raise AssertionError(f"cellar serve did not become healthy:\n{self.log.read_text()}")

    def stop(self, timeout: float = 60) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        terminate(self.process, timeout)

    def kill(self) -> None:
        """SIGKILL the server and every process of its session (the local Ray it started): a crash
        with no chance to clean up."""
        assert self.process is not None
        session = self.process.pid
        os.killpg(session, signal.SIGKILL)
        self.process.wait()
        deadline = time.monotonic() + 30
        while (left := _session_members(session)) and time.monotonic() < deadline:
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)
        assert not _session_members(session), f"processes of the killed server survive: {left}"

    def client(self, api_key: str | None = KEY) -> CellarClient:
        return CellarClient(self.url, api_key)

    def wait(self, job_id: int, timeout: float = 300) -> dict[str, Any]:
        with self.client() as client:
            return client.wait(job_id, timeout=timeout, interval=0.2)


def _session_members(session: int) -> list[int]:
    """Live processes of a session (Linux ``/proc``); zombies count as gone."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[3]) == session:
            members.append(int(entry.name))
    return members
