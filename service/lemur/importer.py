"""``cellar import-lemur``: load the LEMUR neural network dataset's training statistics.

LEMUR (project nn-dataset) keeps its results as ``stat/<task>_<dataset>_<metric>_<nn>/<epoch>.json``
files, each a JSON list of trial records: the metric's value (``accuracy``), the hyperparameters
(``batch``, ``lr``, ``momentum``, ``transform``, ... and any a model adds), their md5 ``uid``
and the cumulative training ``duration`` in nanoseconds.

How they land in the store:

- one job per (task, dataset, metric), search space ``lemur``, state ``succeeded``;
- one architecture per model name, with the model's source when a folder of LEMUR model files
  (``<nn>.py``) is given, none otherwise;
- one trial per *run*: the records of a configuration with the same ``uid`` are stitched across
  the epoch files, the n-th record with that ``uid`` in every epoch file being the n-th run (LEMUR
  appends one record per epoch of each training); its ``prm`` is the record without ``accuracy``,
  ``duration`` and ``uid``, unknown keys kept; its ``prm_id`` is the record's ``uid``; its seed is
  unknown;
- one epoch row per record.

The whole import is one transaction: it either lands whole or not at all. A malformed file is
rejected whole with its reason and the others go on. Each run carries an ``import_key``
(``lemur:<config>:<uid>:<n>``) and each epoch its number, so a second import of the same
statistics adds nothing and one of a newer snapshot adds only what is new.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tarfile
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session

from search_spaces import nn_id

from .errors import CellarError
from .store import Architecture, Job, JobStatus, Store, Trial, TrialEpoch, TrialState, signed_score, utcnow
from .store.queries import create_job, metric_source_id, transform_source_id

__all__ = ["ImportReport", "LemurImportError", "import_lemur", "read_lemur_stat"]

#: record fields that are results, not hyperparameters
_RESULT_KEYS = ("accuracy", "duration", "uid")
_CONFIG = re.compile(r"^(?P<task>[^_/]+)_(?P<dataset>[^_/]+)_(?P<metric>[^_/]+)_(?P<nn>[^/]+)$")
_STAT_FILE = re.compile(r"(?:^|/)(?P<config>[^/]+)/(?P<epoch>[^/]+)\.json$")
#: the longest model name the store keeps (``cellar_architectures.nn_name``)
_MAX_NN = 200


class LemurImportError(CellarError):
    """The path holds no LEMUR statistics Cellar can read."""


@dataclass
class ImportReport:
    files: int = 0
    records: int = 0
    runs_added: int = 0
    epochs_added: int = 0
    #: records already in the store (a repeated import)
    epochs_present: int = 0
    #: model names given their source from the models folder
    models_with_code: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class _Run:
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


def _check_record(record: Any, index: int) -> str | None:
    """What is wrong with one record, or None."""
    if not isinstance(record, dict):
        return f"record {index} is a {type(record).__name__}, not an object"
    accuracy = record.get("accuracy")
    if isinstance(accuracy, bool) or not isinstance(accuracy, (int, float)) or not math.isfinite(accuracy):
        return f"record {index} has no finite numeric 'accuracy' (got {accuracy!r})"
    uid = record.get("uid")
    if not isinstance(uid, str) or not uid or len(uid) > 64:
        return f"record {index} has no 'uid' of at most 64 characters (LEMUR's md5 of the hyperparameters)"
    duration = record.get("duration")
    if duration is not None and (isinstance(duration, bool) or not isinstance(duration, (int, float)) or duration < 0):
        return f"record {index} has a 'duration' that is not a count of nanoseconds (got {duration!r})"
    return None


def _members(path: Path) -> Iterator[tuple[str, bytes]]:
    """(relative name, bytes) of every ``.json`` file under a folder or in a tar archive."""
    if path.is_dir():
        for file in sorted(path.rglob("*.json")):
            yield file.relative_to(path).as_posix(), file.read_bytes()
        return
    if not tarfile.is_tarfile(path):
        raise LemurImportError(
            f"{path} is neither a folder nor a tar archive; give LEMUR's stat/ folder or an archive of it"
        )
    with tarfile.open(path) as archive:
        for member in archive:
            if member.isfile() and member.name.endswith(".json"):
                handle = archive.extractfile(member)
                if handle is not None:
                    yield member.name, handle.read()


def read_lemur_stat(path: Path, report: ImportReport) -> dict[tuple[str, str, str], dict[str, list[_Run]]]:
    """Parse every statistics file: {(task, dataset, metric): {nn: [runs]}}; rejects go to ``report``."""
    by_config: dict[str, dict[int, list[dict[str, Any]]]] = defaultdict(dict)
    for name, raw in _members(path):
        found = _STAT_FILE.search(name)
        if found is None:
            continue
        report.files += 1
        config, epoch_text = found["config"], found["epoch"]
        parts = _CONFIG.match(config)
        if parts is None:
            report.rejected.append((name, "the folder is not named <task>_<dataset>_<metric>_<nn>"))
            continue
        if len(parts["nn"]) > _MAX_NN:
            report.rejected.append((name, f"the model name is longer than {_MAX_NN} characters"))
            continue
        if not epoch_text.isdigit():
            # LEMUR counts epochs from 1; some of its genetic-search models wrote 0.json .. 4.json
            report.rejected.append((name, "the file is not named <epoch>.json with a whole-number epoch"))
            continue
        try:
            records = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            report.rejected.append((name, f"not valid JSON: {error}"))
            continue
        if not isinstance(records, list):
            report.rejected.append((name, f"the file holds a {type(records).__name__}, not a list of trial records"))
            continue
        problem = next((p for i, r in enumerate(records) if (p := _check_record(r, i)) is not None), None)
        if problem is not None:
            report.rejected.append((name, problem))
            continue
        by_config[config][int(epoch_text)] = records
        report.records += len(records)

    groups: dict[tuple[str, str, str], dict[str, list[_Run]]] = defaultdict(dict)
    for config, files in by_config.items():
        parts = _CONFIG.match(config)
        assert parts is not None
        groups[(parts["task"], parts["dataset"], parts["metric"])][parts["nn"]] = _stitch(config, files)
    return groups


def _stitch(config: str, files: dict[int, list[dict[str, Any]]]) -> list[_Run]:
    """The runs of one configuration: its records joined across epoch files by ``uid``.

    LEMUR appends a record per epoch of a training to ``<epoch>.json`` and sorts each file by
    accuracy, so where a ``uid`` appears once per file its records are one run; where the same
    hyperparameters were trained several times, a record continues the run whose cumulative
    duration is the largest below its own (durations only grow within a run). A record that
    continues no run starts one.
    """
    runs: list[_Run] = []
    #: uid -> the runs that reached the previous epoch file
    open_runs: dict[str, list[_Run]] = {}
    counts: dict[str, int] = defaultdict(int)

    def start(uid: str, record: dict[str, Any]) -> _Run:
        prm = {k: v for k, v in record.items() if k not in _RESULT_KEYS}
        run = _Run(config, uid, counts[uid], prm)
        counts[uid] += 1
        runs.append(run)
        return run

    for epoch in sorted(files):
        by_uid: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for record in files[epoch]:
            by_uid[record["uid"]].append(record)
        reached: dict[str, list[_Run]] = {}
        for uid, records in by_uid.items():
            candidates = open_runs.get(uid, [])
            chosen: list[tuple[_Run, dict[str, Any]]] = []
            if len(records) == 1 and len(candidates) == 1:
                chosen.append((candidates[0], records[0]))
            else:
                free = list(candidates)
                for record in sorted(records, key=lambda r: (r.get("duration") is None, r.get("duration") or 0)):
                    duration = record.get("duration")
                    before = [r for r in free if duration is not None and (r.last_duration or 0) < duration]
                    if before and all(r.last_duration is not None for r in before):
                        run = max(before, key=lambda r: r.last_duration or 0)
                        free.remove(run)
                    else:
                        run = start(uid, record)
                    chosen.append((run, record))
            for run, record in chosen:
                duration = record.get("duration")
                run.epochs[epoch] = (float(record["accuracy"]), int(duration) if duration is not None else None)
                reached.setdefault(uid, []).append(run)
        open_runs = reached
    return runs


def _model_files(models: Path | None) -> dict[str, str]:
    if models is None:
        return {}
    if not models.is_dir():
        raise LemurImportError(f"{models} is not a folder of LEMUR model files (<nn>.py)")
    return {file.stem: file.read_text(encoding="utf-8") for file in sorted(models.glob("*.py"))}


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


def import_lemur(store: Store, path: Path, *, models: Path | None = None) -> ImportReport:
    """Load LEMUR's statistics from ``path`` (its ``stat/`` folder, a folder above it, or a tar
    archive of either) and, from ``models``, the model files; in one transaction."""
    if not path.exists():
        raise LemurImportError(f"{path} does not exist; give LEMUR's stat/ folder or an archive of it")
    report = ImportReport()
    groups = read_lemur_stat(path, report)
    if report.files == 0:
        raise LemurImportError(f"{path} holds no <task>_<dataset>_<metric>_<nn>/<epoch>.json files")
    code_by_nn = _model_files(models)
    with store.write() as session:
        writer = _GroupWriter(session, report, code_by_nn)
        for (task, dataset, metric), by_nn in sorted(groups.items()):
            writer.write(task, dataset, metric, by_nn)
    report.models_with_code = len(writer.with_code)
    if report.runs_added or report.epochs_added:
        _analyze(store)
    return report


class _GroupWriter:
    """Writes the runs of one (task, dataset, metric) at a time into an open transaction."""

    def __init__(self, session: Session, report: ImportReport, code_by_nn: dict[str, str]) -> None:
        self.session = session
        self.report = report
        self.code_by_nn = code_by_nn
        self.sources = _Sources(session)
        self.now = utcnow()
        self.with_code: set[str] = set()

    def write(self, task: str, dataset: str, metric: str, by_nn: dict[str, list[_Run]]) -> None:
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
        new_runs: list[tuple[str, _Run]] = []
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
                        "train_seconds": duration / 1e9 if duration is not None else None,
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
            self.report.runs_added += len(ids)
            for trial_id, (nn, run) in zip(ids, new_runs, strict=True):
                epoch_rows += self._epochs(trial_id, (task, dataset, metric, nn), run, present)
        if epoch_rows:
            session.execute(insert(TrialEpoch), epoch_rows)
            self.report.epochs_added += len(epoch_rows)

    def _epochs(
        self, trial_id: int, config: tuple[str, str, str, str], run: _Run, present: set[tuple[int, int]]
    ) -> list[dict[str, Any]]:
        task, dataset, metric, nn = config
        rows = []
        for epoch, (accuracy, duration) in sorted(run.epochs.items()):
            if (trial_id, epoch) in present:
                self.report.epochs_present += 1
                continue
            rows.append(
                {
                    "trial_id": trial_id,
                    "epoch": epoch,
                    "val_metric": accuracy,
                    "elapsed_seconds": duration / 1e9 if duration is not None else None,
                    "created_at": self.now,
                    "task": task,
                    "dataset": dataset,
                    "metric": metric,
                    "nn": nn,
                    "score": signed_score(metric, accuracy),
                }
            )
        return rows


def _analyze(store: Store) -> None:
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
