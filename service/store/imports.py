"""Bulk writes of imported results: LEMUR's statistics (``cellar import-lemur``).

The importer (``service.lemur.importer``) parses LEMUR's files into ``ImportedRun``s; this module
writes them into an open transaction, one (task, dataset, metric) group at a time, with bulk
inserts, skipping what an earlier import of the same statistics stored.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session

from search_spaces import nn_id

from ..lemur.contract import ns_to_seconds
from ._store import Store
from .models import Architecture, Job, JobStatus, Trial, TrialEpoch, TrialState, signed_score, utcnow
from .queries import create_job, metric_source_id, transform_source_id

__all__ = ["ImportedRun", "LemurWriter", "analyze"]


@dataclass
class ImportedRun:
    """One training of a LEMUR configuration: its records stitched across the epoch files."""

    config: str
    uid: str
    occurrence: int
    prm: dict[str, Any]
    #: epoch -> (accuracy, duration in ns or None)
    epochs: dict[int, tuple[float, int | None]] = field(default_factory=dict)

    @property
    def last_duration(self) -> int | None:
        return self.epochs[max(self.epochs)][1] if self.epochs else None

    @property
    def key(self) -> str:
        return f"lemur:{self.config}:{self.uid}:{self.occurrence}"


def _job(session: Session, task: str, dataset: str, metric: str) -> Job:
    name = f"lemur {task} {dataset} {metric}"
    job = session.scalars(select(Job).where(Job.name == name, Job.search_space == "lemur")).first()
    if job is None:
        spec = {"kind": "lemur-import", "task": task, "dataset": dataset, "metric": metric}
        job = create_job(session, name=name, search_space="lemur", dataset=dataset, task=task, metric=metric, spec=spec)
        job.status = JobStatus.SUCCEEDED
        job.started_at = job.finished_at = utcnow()
    return job


def _architecture(session: Session, nn: str, code: str | None) -> Architecture:
    arch_hash = hashlib.sha256(f"lemur-nn:{nn}".encode()).hexdigest()
    arch = session.scalars(select(Architecture).where(Architecture.arch_hash == arch_hash)).first()
    if arch is None:
        arch = Architecture(
            search_space="lemur",
            space_params={},
            encoding=nn,
            arch_hash=arch_hash,
            dedup_hash=hashlib.sha256(f"lemur-code:{nn_id(code)}".encode()).hexdigest() if code else arch_hash,
            in_shape=[],
            out_shape=[],
            nn_name=nn,
            nn_code=code,
        )
        session.add(arch)
        session.flush()
    elif code is not None and arch.nn_code is None:
        arch.nn_code = code
    return arch


class _Sources:
    """Source rows of metrics and transforms by name, looked up once per import (not per run)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.metrics: dict[str, int | None] = {}
        self.transforms: dict[str, int | None] = {}

    def metric(self, name: str) -> int | None:
        if name not in self.metrics:
            self.metrics[name] = metric_source_id(self.session, name)
        return self.metrics[name]

    def transform(self, name: Any) -> int | None:
        if not isinstance(name, str):
            return None
        if name not in self.transforms:
            self.transforms[name] = transform_source_id(self.session, name)  # None: Cellar lacks it
        return self.transforms[name]


class LemurWriter:
    """Writes the runs of one (task, dataset, metric) at a time into an open transaction."""

    def __init__(self, session: Session, code_by_nn: dict[str, str]) -> None:
        self.session = session
        self.runs_added = 0
        self.epochs_added = 0
        #: records already in the store (a repeated import)
        self.epochs_present = 0
        self.code_by_nn = code_by_nn
        self.sources = _Sources(session)
        self.now = utcnow()
        self.with_code: set[str] = set()

    def write(self, task: str, dataset: str, metric: str, by_nn: dict[str, list[ImportedRun]]) -> None:
        session = self.session
        job = _job(session, task, dataset, metric)
        metric_source_id = self.sources.metric(metric)
        known = dict(
            session.execute(
                select(Trial.import_key, Trial.trial_id).where(Trial.job_id == job.job_id, Trial.import_key.is_not(None))
            ).all()
        )
        present: set[tuple[int, int]] = set()
        if known:
            present = {
                (trial_id, epoch)
                for trial_id, epoch in session.execute(
                    select(TrialEpoch.trial_id, TrialEpoch.epoch)
                    .join(Trial, Trial.trial_id == TrialEpoch.trial_id)
                    .where(Trial.job_id == job.job_id)
                )
            }
        number = session.scalar(select(func.count()).select_from(Trial).where(Trial.job_id == job.job_id)) or 0
        new_trials: list[dict[str, Any]] = []
        new_runs: list[tuple[str, ImportedRun]] = []
        epoch_rows: list[dict[str, Any]] = []
        for nn, runs in sorted(by_nn.items()):
            code = self.code_by_nn.get(nn)
            arch = _architecture(session, nn, code)
            if code is not None:
                self.with_code.add(nn)
            for run in runs:
                if run.key in known:
                    epoch_rows += self._epochs(known[run.key], (task, dataset, metric, nn), run, present)
                    continue
                last = max(run.epochs)
                accuracy, duration = run.epochs[last]
                new_trials.append(
                    {
                        "job_id": job.job_id,
                        "number": number,
                        "architecture_id": arch.architecture_id,
                        "state": TrialState.COMPLETE,
                        "params": {},
                        "distributions": {},
                        "prm": run.prm,
                        "prm_id": run.uid,
                        "seed": None,
                        "epochs": last,
                        "val_metric": accuracy,
                        "train_seconds": ns_to_seconds(duration),
                        "origin": "import",
                        "cache_hit": False,
                        "requeued": False,
                        "import_key": run.key,
                        "metric_source_id": metric_source_id,
                        "transform_source_id": self.sources.transform(run.prm.get("transform")),
                        "created_at": self.now,
                        "finished_at": self.now,
                    }
                )
                new_runs.append((nn, run))
                number += 1
        if new_trials:
            ids = session.scalars(insert(Trial).returning(Trial.trial_id, sort_by_parameter_order=True), new_trials).all()
            self.runs_added += len(ids)
            for trial_id, (nn, run) in zip(ids, new_runs, strict=True):
                epoch_rows += self._epochs(trial_id, (task, dataset, metric, nn), run, present)
        if epoch_rows:
            session.execute(insert(TrialEpoch), epoch_rows)
            self.epochs_added += len(epoch_rows)

    def _epochs(
        self, trial_id: int, config: tuple[str, str, str, str], run: ImportedRun, present: set[tuple[int, int]]
    ) -> list[dict[str, Any]]:
        task, dataset, metric, nn = config
        rows = []
        for epoch, (accuracy, duration) in sorted(run.epochs.items()):
            if (trial_id, epoch) in present:
                self.epochs_present += 1
                continue
            rows.append(
                {
                    "trial_id": trial_id,
                    "epoch": epoch,
                    "val_metric": accuracy,
                    "elapsed_seconds": ns_to_seconds(duration),
                    "created_at": self.now,
                    "task": task,
                    "dataset": dataset,
                    "metric": metric,
                    "nn": nn,
                    "score": signed_score(metric, accuracy),
                }
            )
        return rows


def analyze(store: Store) -> None:
    """Refresh the planner's statistics after a bulk load: PostgreSQL's autovacuum gets to it
    later, and until then it may plan LEMUR-style queries over the new rows as nested loops
    (minutes instead of a fraction of a second)."""
    tables = ("cellar_trial_epochs", "cellar_trials", "cellar_architectures", "cellar_jobs")
    with store.write() as session:
        if session.bind.dialect.name == "postgresql":  # type: ignore[union-attr]
            session.execute(text(f"ANALYZE {', '.join(tables)}"))
        else:
            for table in tables:
                session.execute(text(f"ANALYZE {table}"))
