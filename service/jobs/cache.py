"""Results a trial can take instead of training: an in-job duplicate's, or the cross-job cache's.

A trial whose network computes the same function as a complete trial of its own job (same dedup
hash, among the trials the sampler has seen) is recorded as its duplicate. A trial whose network
was trained before under the same protocol by another job (``strategy.cache``, on by default) is
answered from that training: a cache hit. Simulated results (a tabular executor) neither enter the
cache nor take from it.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from ..store import Trial, TrialState, runs
from .objectives import Objectives
from .spec import JobCreate

__all__ = ["PROTOCOL_VERSION", "cache_key", "reuse_result"]

#: bump when training changes in a way that makes earlier results incomparable
PROTOCOL_VERSION = 1


def cache_key(arch_hash: str, spec: JobCreate, *, samples: int | None, prm: dict[str, Any]) -> str:
    """Equal for trainings that must give the same result: the same concrete network, data,
    split and training hyperparameters, epochs and seed, under the same training code."""
    protocol = {
        "version": PROTOCOL_VERSION,
        "arch": arch_hash,
        "dataset": spec.dataset,
        "samples": samples,
        "split": list(spec.training.split),
        "prm": prm,
        "epochs": spec.budget.epochs,
        "seed": spec.training_seed,
    }
    return hashlib.sha256(json.dumps(protocol, sort_keys=True, default=str).encode()).hexdigest()


def reuse_result(
    session: Session,
    row: Trial,
    *,
    duplicate_of: int | None,
    use_cache: bool,
    objectives: Objectives,
    now: datetime,
) -> None:
    """Complete a new trial's ``row`` at once from an earlier result, if there is one: the in-job
    trial ``duplicate_of``, else (``use_cache``) another job's training with the row's cache key."""
    cached = None
    if duplicate_of is None and use_cache and row.cache_key is not None:
        cached = runs.cached_trial(session, row.cache_key, other_than_job=row.job_id)
    original = session.get(Trial, duplicate_of) if duplicate_of is not None else cached
    if original is None:
        return
    last = original.epoch_rows[-1] if original.epoch_rows else None
    # recomputed, not copied: a cache hit's job may have other objectives than the original's
    values = objectives.values(
        val_metric=original.val_metric,
        val_loss=last.val_loss if last is not None else None,
        params=original.architecture.num_params if original.architecture is not None else None,
        flops=original.architecture.flops if original.architecture is not None else None,
        latency_ms=original.latency_ms,
        train_seconds=original.train_seconds,
        **(original.proxies or {}),
    )
    if values is None:
        return
    row.state = TrialState.COMPLETE
    row.duplicate_of_trial_id = original.trial_id
    row.cache_hit = cached is not None
    row.values = values
    for name in ("val_metric", "test_metric", "loss", "train_seconds", "latency_ms", "split", "worker", "proxies"):
        setattr(row, name, getattr(original, name))
    row.finished_at = now
