"""Settings come from CELLAR_* variables; a missing API key is generated once and kept private."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from service.settings import Settings


def test_environment_variables_set_the_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELLAR_DATABASE_URL", "postgresql+psycopg://u@h/db")
    monkeypatch.setenv("CELLAR_RAY_ADDRESS", "ray-head:6379")
    monkeypatch.setenv("CELLAR_READS_REQUIRE_KEY", "true")
    settings = Settings()
    assert settings.database_url == "postgresql+psycopg://u@h/db"
    assert settings.ray_address == "ray-head:6379" and settings.reads_require_key


def test_a_missing_key_is_generated_into_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "key"
    first = Settings(api_key=None, api_key_file=path).resolved_api_key()
    assert len(first) >= 32 and path.read_text().strip() == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Settings(api_key=None, api_key_file=path).resolved_api_key() == first
    assert Settings(api_key="given", api_key_file=path).resolved_api_key() == "given"
