"""``cellar serve`` on a port another process holds: a clear error, before any Ray starts."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from service.store import Store, upgrade


def test_a_busy_port_is_an_error_before_ray_starts(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cellar.db'}"
    store = Store(url)
    upgrade(store)
    store.dispose()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = {**os.environ, "CELLAR_DATABASE_URL": url, "RAY_AUTH_MODE": "disabled", "COLUMNS": "300"}
        env.pop("CELLAR_API_KEY", None)
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "service.cli", "serve", "--port", str(port)],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
        )
    assert result.returncode == 1, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "--port" in result.stderr
    assert "Ray" not in result.stderr, result.stderr  # no local Ray was started for nothing
    assert time.monotonic() - started < 60
    assert not (tmp_path / ".cellar-api-key").exists()  # nor a key written


def test_the_api_key_hint_is_one_command_to_copy_whatever_the_width(tmp_path: Path) -> None:
    from tests.service.server import free_port

    url = f"sqlite:///{tmp_path / 'cellar.db'}"
    store = Store(url)
    upgrade(store)
    store.dispose()
    env = {**os.environ, "CELLAR_DATABASE_URL": url, "CELLAR_START_MANAGER": "false", "COLUMNS": "40"}
    env.pop("CELLAR_API_KEY", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--port", str(free_port())],
        cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stderr is not None
        lines: list[str] = []
        while not lines or not lines[-1].startswith("  export"):
            line = process.stderr.readline()
            assert line, "".join(lines)
            if line.startswith(("API key", "  export")):
                lines.append(line)
    finally:
        process.terminate()
        process.wait(30)
    assert lines[0].startswith("API key: in ") and lines[0].rstrip().endswith(".cellar-api-key; for curl:")
    assert lines[1] == "  export CELLAR_API_KEY=$(cat .cellar-api-key)\n"
    assert (tmp_path / ".cellar-api-key").exists()
