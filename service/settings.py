"""Settings: one pydantic-settings class read from ``CELLAR_*`` environment variables."""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

__all__ = ["Settings", "get_settings"]


class Settings(BaseSettings):
    """Every knob of a Cellar server. Environment names are ``CELLAR_`` + the field name."""

    model_config = SettingsConfigDict(env_prefix="CELLAR_", extra="ignore")

    database_url: str = Field(
        "sqlite:///cellar.db",
        description="SQLAlchemy URL of the store; default a SQLite file in the working directory",
    )
    ray_address: str | None = Field(
        None, description="address of an existing Ray cluster; unset: start a local Ray"
    )
    api_key: SecretStr | None = Field(
        None, description="key for write endpoints; unset: generated once into api_key_file"
    )
    api_key_file: Path = Field(
        Path(".cellar-api-key"), description="where a generated key is kept when CELLAR_API_KEY is unset"
    )
    reads_require_key: bool = Field(False, description="also require the key on GET endpoints")
    max_request_mb: int = Field(
        64, ge=1, le=4096, description="largest request body the API takes, MiB (a larger one is a 413)"
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description='browser origins allowed to call the API from another site (JSON list, e.g. ["https://x.org"]); '
        "empty: none (CORS closed)",
    )
    key_rate_limit: int = Field(
        600,
        ge=0,
        description="requests one API key may send per key_rate_window_s, counted by each server process "
        "(a token bucket: bursts of up to this many, refilled evenly); more are a 429 with Retry-After; 0: unlimited",
    )
    key_rate_window_s: float = Field(60.0, gt=0, le=86400, description="the window of key_rate_limit, seconds")
    key_max_active_jobs: int = Field(
        10, ge=0, description="queued and running jobs one API key may own at once; another is a 429; 0: unlimited"
    )
    key_max_trials_per_job: int = Field(
        1000,
        ge=0,
        description="largest budget.max_trials a job of an API key may ask for (a larger one is a 422); 0: unlimited",
    )
    key_max_models_per_hour: int = Field(
        2000,
        ge=0,
        description="models one API key may submit per hour (POST /v1/models and /v1/submissions); more are a 429; "
        "0: unlimited",
    )
    limit_bootstrap_key: bool = Field(
        False, description="apply the key_* rate limit and quotas to the bootstrap key (CELLAR_API_KEY) too"
    )
    data_dir: Path | None = Field(None, description="root of datasets that come in files")
    artifacts_dir: Path = Field(
        Path(".cellar/artifacts"),
        description=(
            "where workers write the trained weights a job keeps (job-<id>/trial-<number>.pt); on a Ray "
            "cluster of several machines, a directory every node and the server share"
        ),
    )
    ray_num_cpus: int | None = Field(
        None, ge=1, description="CPUs of the local Ray (default: all of this machine's)"
    )
    ray_num_gpus: int | None = Field(None, ge=0, description="GPUs of the local Ray (default: detected)")
    model_nice: int = Field(
        15,
        ge=0,
        le=19,
        description="the least niceness of a submitted model's sandbox (Ray starts its own workers at 15): the "
        "server, its job manager and its API keep the CPU they need when models train on the server's machine",
    )
    ray_object_store_mb: int = Field(
        256, ge=80, description="object store memory of the local Ray, MiB (Ray's own default is 30% of RAM)"
    )
    poll_interval_s: float = Field(0.2, gt=0, description="how often the job manager checks for work")
    lease_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description=(
            "how long a server's claim on a running job lasts without renewal; a job whose server "
            "died is taken over (by a restarted or another server) once it expired"
        ),
    )
    api_threads: int = Field(
        8,
        ge=1,
        le=1000,
        description=(
            "threads that answer requests (FastAPI's pool for its plain routes); a few per core keep the "
            "answers fast under load, more only help while the store keeps requests waiting"
        ),
    )
    db_pool_size: int = Field(
        12,
        ge=1,
        le=1000,
        description=(
            "connections to the store each server process keeps open (as many again may open under a "
            "burst); at least api_threads plus the job manager's and the submission queue's"
        ),
    )
    read_cache_mb: int = Field(
        64,
        ge=0,
        le=100_000,
        description=(
            "memory for answers of the read routes (jobs, trials, /v1/data), kept until anything in the "
            "store changes; 0 turns the cache off"
        ),
    )
    start_manager: bool = Field(True, description="run the job manager (and Ray) inside the API process")
    max_running_jobs: int = Field(4, ge=1, le=1000, description="jobs one server runs at a time; more wait queued")
    executor_retry_s: float = Field(
        5.0, gt=0, le=3600, description="wait before trying again to reach Ray when it could not be started or joined"
    )
    store_retry_s: float = Field(
        1.0, gt=0, le=3600, description="wait of the job manager after a store outage or a failed round"
    )
    events_poll_s: float = Field(
        0.5, gt=0, le=60, description="how often an event stream (GET /v1/jobs/{id}/events) looks for changes"
    )
    shutdown_timeout_s: float = Field(
        5.0,
        gt=0,
        le=3600,
        description=(
            "on SIGTERM or Ctrl-C, how long requests still running may take before they are cancelled "
            "(event streams end at once); the job manager hands its jobs back meanwhile"
        ),
    )
    model_workers: int = Field(
        1,
        ge=1,
        le=1024,
        description="submitted models one server trains at once, each in its own sandbox (on Ray: tasks in flight, "
        "which the cluster runs as its CPUs and GPUs allow)",
    )
    model_executor: Literal["auto", "ray", "local"] = Field(
        "auto",
        description="where submitted models train: 'ray' on the job manager's Ray cluster (a task per model, "
        "its GPUs by request), 'local' on the server's own threads, 'auto' Ray when the job manager runs on Ray",
    )
    model_memory_mb: int = Field(
        2048, ge=64, description="private memory a submitted model may use on top of the libraries and data, MiB"
    )
    model_setup_timeout_s: float = Field(
        180.0, gt=0, description="seconds a sandbox may take to start, load the data and check the model"
    )
    model_file_mb: int = Field(64, ge=1, description="largest file a submitted model may write in its directory, MiB")

    def resolved_api_key(self) -> str:
        """``CELLAR_API_KEY``, else the key in ``api_key_file``, created with a fresh random key."""
        if self.api_key is not None and self.api_key.get_secret_value():
            return self.api_key.get_secret_value()
        path = self.api_key_file
        if path.exists():
            key = path.read_text().strip()
            if key:
                return key
        key = secrets.token_urlsafe(32)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key + "\n")
        return key


    def private_paths(self) -> tuple[str, ...]:
        """Files and folders of this server that submitted code must not read: the key file, the
        SQLite store (with its journal files) and the artifacts folder, as absolute paths."""
        paths = [self.api_key_file, self.artifacts_dir]
        url = make_url(self.database_url)
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            paths += [Path(url.database + suffix) for suffix in ("", "-wal", "-shm", "-journal")]
        return tuple(os.path.abspath(path) for path in paths)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once; tests build ``Settings(...)`` and pass it explicitly."""
    return Settings()
