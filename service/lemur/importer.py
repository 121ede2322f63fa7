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

import json
import math
import re
import tarfile
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CellarError
from ..store import Store
from ..store.imports import ImportedRun, LemurWriter, analyze

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


def read_lemur_stat(path: Path, report: ImportReport) -> dict[tuple[str, str, str], dict[str, list[ImportedRun]]]:
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

    groups: dict[tuple[str, str, str], dict[str, list[ImportedRun]]] = defaultdict(dict)
    for config, files in by_config.items():
        parts = _CONFIG.match(config)
        assert parts is not None
        groups[(parts["task"], parts["dataset"], parts["metric"])][parts["nn"]] = _stitch(config, files)
    return groups


def _stitch(config: str, files: dict[int, list[dict[str, Any]]]) -> list[ImportedRun]:
    """The runs of one configuration: its records joined across epoch files by ``uid``.

    LEMUR appends a record per epoch of a training to ``<epoch>.json`` and sorts each file by
    accuracy, so where a ``uid`` appears once per file its records are one run; where the same
    hyperparameters were trained several times, a record continues the run whose cumulative
    duration is the largest below its own (durations only grow within a run). A record that
    continues no run starts one.
    """
    runs: list[ImportedRun] = []
    #: uid -> the runs that reached the previous epoch file
    open_runs: dict[str, list[ImportedRun]] = {}
    counts: dict[str, int] = defaultdict(int)

    def start(uid: str, record: dict[str, Any]) -> ImportedRun:
        prm = {k: v for k, v in record.items() if k not in _RESULT_KEYS}
        run = ImportedRun(config, uid, counts[uid], prm)
        counts[uid] += 1
        runs.append(run)
        return run

    for epoch in sorted(files):
        by_uid: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for record in files[epoch]:
            by_uid[record["uid"]].append(record)
        reached: dict[str, list[ImportedRun]] = {}
        for uid, records in by_uid.items():
            candidates = open_runs.get(uid, [])
            chosen: list[tuple[ImportedRun, dict[str, Any]]] = []
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
        writer = LemurWriter(session, code_by_nn)
        for (task, dataset, metric), by_nn in sorted(groups.items()):
            writer.write(task, dataset, metric, by_nn)
    report.runs_added, report.epochs_added = writer.runs_added, writer.epochs_added
    report.epochs_present = writer.epochs_present
    report.models_with_code = len(writer.with_code)
    if report.runs_added or report.epochs_added:
        analyze(store)
    return report
