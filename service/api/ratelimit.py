"""Per-key rate limits and quotas: a 429 with ``Retry-After``, or a 422 where no wait would help.

- **Requests** (``CELLAR_KEY_RATE_LIMIT`` per ``CELLAR_KEY_RATE_WINDOW_S``): a token bucket per key
  id, in this server process's memory. Each process counts its own: behind a balancer over N
  servers a key may send up to N times the limit.
- **Active jobs** (``CELLAR_KEY_MAX_ACTIVE_JOBS``): the key's queued and running jobs, counted in
  the store at ``POST /v1/jobs`` (and when ``/extend`` queues a job again).
- **Trials per job** (``CELLAR_KEY_MAX_TRIALS_PER_JOB``): a cap on ``budget.max_trials``; above it
  waiting never helps, so it is a 422 on the field.
- **Models per hour** (``CELLAR_KEY_MAX_MODELS_PER_HOUR``): the key's ``cellar_submissions`` rows of
  the last hour, counted in the store at ``POST /v1/models`` and ``POST /v1/submissions``.

A key may carry its own values (``limits``, set at ``POST /v1/keys``): ``rate_limit``,
``max_active_jobs``, ``max_trials_per_job``, ``max_models_per_hour``, each over the setting of the
same name with ``key_`` before it. The bootstrap key (``CELLAR_API_KEY``) is exempt unless
``CELLAR_LIMIT_BOOTSTRAP_KEY`` is set. Requests without a key (open reads) are not limited here.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from ..errors import InvalidRequestError
from ..settings import Settings
from ..store import quotas, utcnow
from .errors import LimitExceededError

if TYPE_CHECKING:
    from .deps import Caller

__all__ = [
    "ACTIVE_JOBS_RETRY_S",
    "RateLimiter",
    "check_active_jobs",
    "check_models_per_hour",
    "check_trials",
    "cap",
    "limited",
]

#: Retry-After of a refused job: a job's end cannot be foreseen; this is a polite polling interval
ACTIVE_JOBS_RETRY_S = 30

_HOUR = timedelta(hours=1)


def limited(key_id: int | None, settings: Settings) -> bool:
    """Whether the limits apply to this key: every issued key; the bootstrap key by setting."""
    return key_id is not None or settings.limit_bootstrap_key


def cap(limits: Mapping[str, int], name: str, settings: Settings) -> int:
    """The key's own value of limit ``name``, else the server's setting (0: unlimited)."""
    value = limits.get(name)
    return int(value) if value is not None else int(getattr(settings, f"key_{name}"))


def _setting(limits: Mapping[str, int], name: str) -> str:
    """Where a limit comes from, for messages."""
    return "the key's own limit" if limits.get(name) is not None else f"CELLAR_KEY_{name.upper()}"


def _key_name(key_id: int | None) -> str:
    return "the bootstrap key" if key_id is None else f"API key {key_id}"


class RateLimiter:
    """Token buckets by key id, thread-safe: each holds up to ``rate`` requests and refills at
    ``rate / window_s`` per second, so a key may burst ``rate`` requests, then send them evenly."""

    def __init__(self, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[int | None, tuple[float, float]] = {}  # key id → (tokens, at)

    def take(self, key_id: int | None, rate: int) -> float:
        """Spend a request of the key's bucket: 0.0 when it may go on, else seconds until it may."""
        if rate <= 0:
            return 0.0
        refill = rate / self.window_s
        with self._lock:
            now = self._clock()
            tokens, at = self._buckets.get(key_id, (float(rate), now))
            tokens = min(float(rate), tokens + (now - at) * refill)
            if tokens >= 1.0:
                self._buckets[key_id] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key_id] = (tokens, now)
            return (1.0 - tokens) / refill

    def check(self, key_id: int | None, rate: int, limits: Mapping[str, int] | None = None) -> None:
        """A 429 once the key is past its ``rate`` requests per window."""
        wait = self.take(key_id, rate)
        if wait > 0:
            seconds = math.ceil(wait)
            source = _setting(limits or {}, "rate_limit")
            raise LimitExceededError(
                f"{_key_name(key_id)} sent more than {rate} requests in {self.window_s:g} s "
                f"({source} per CELLAR_KEY_RATE_WINDOW_S, counted by each server process): retry in {seconds} s",
                seconds,
            )


def check_trials(
    caller: Caller,
    max_trials: int | None,
    settings: Settings,
    field: tuple[str, ...] = ("body", "budget", "max_trials"),
) -> None:
    """A 422 on ``field`` (the job's ``max_trials``) above the key's cap, or absent when there is one."""
    most = cap(caller.limits, "max_trials_per_job", settings)
    if most <= 0 or not limited(caller.key_id, settings):
        return
    if max_trials is None or max_trials > most:
        asked = "no max_trials (unbounded)" if max_trials is None else f"max_trials={max_trials}"
        raise InvalidRequestError(
            f"{asked} is more than {_key_name(caller.key_id)} may ask of a job: at most {most} trials "
            f"({_setting(caller.limits, 'max_trials_per_job')}); give budget.max_trials <= "
            f"{most}, and extend the job later (POST /v1/jobs/{{id}}/extend) within the same cap",
            field=field,
        )


def check_active_jobs(session: Session, caller: Caller, settings: Settings) -> None:
    """A 429 when the key owns ``key_max_active_jobs`` queued or running jobs already."""
    most = cap(caller.limits, "max_active_jobs", settings)
    if most <= 0 or not limited(caller.key_id, settings):
        return
    active = quotas.active_jobs(session, caller.key_id)
    if active >= most:
        raise LimitExceededError(
            f"{_key_name(caller.key_id)} has {active} queued or running jobs, its most at once "
            f"({_setting(caller.limits, 'max_active_jobs')}={most}): retry once one ends "
            "(POST /v1/jobs/{id}/cancel ends one now), "
            f"e.g. in {ACTIVE_JOBS_RETRY_S} s",
            ACTIVE_JOBS_RETRY_S,
        )


def check_models_per_hour(session: Session, caller: Caller, count: int, settings: Settings) -> None:
    """A 429 when ``count`` more models would take the key past its models of the last hour (a 422
    when ``count`` alone is past it: no wait helps)."""
    most, key_id = cap(caller.limits, "max_models_per_hour", settings), caller.key_id
    if most <= 0 or not limited(key_id, settings):
        return
    source = _setting(caller.limits, "max_models_per_hour")
    if count > most:
        raise InvalidRequestError(
            f"{count} models at once are more than {_key_name(key_id)} may submit in an hour "
            f"({most}, {source}): send at most {most} per request",
            field=("body", "models"),
        )
    now = utcnow()
    since = now - _HOUR
    recent = quotas.models_submitted_since(session, key_id, since)
    if recent + count <= most:
        return
    # once the (recent + count - most)-th oldest of the hour ages out, this many fit
    oldest = quotas.nth_model_since(session, key_id, since, recent + count - most - 1)
    seconds = max(1, math.ceil((oldest + _HOUR - now).total_seconds())) if oldest is not None else 1
    raise LimitExceededError(
        f"{_key_name(key_id)} submitted {recent} models in the last hour; {count} more would pass its "
        f"{most} per hour ({source}): retry in {seconds} s",
        seconds,
    )
