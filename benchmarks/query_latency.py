"""LEMUR-style query latency on the whole LEMUR corpus: Cellar (SQLite, PostgreSQL) against LEMUR's own ``data()``.

Both sides hold the same records, read from the same archive: Cellar imports it with
``service.lemur.importer.import_lemur`` (with the model sources LEMUR's own database carries, from
the LEMUR venv, so that rows of both sides have their ``nn_code``); LEMUR's package
(``nn-dataset``, from the registry, in its own venv) builds its SQLite database from the extracted
``stat/`` folder with its own importer (``benchmarks/lemur_side.py``). Three common queries:

    Q1  data(task='img-classification', dataset='cifar-10', only_best_accuracy=True)   11,846 rows
    Q2  data(nn='AlexNet')                                                             2,226 rows
    Q3  data(max_rows=100)                                                             100 rows

Each is timed ``--repeat`` times (median and min) at these levels:

* LEMUR: ``ab.nn.api.data(...)`` in-process, its ``lru_cache`` cleared before every call (the
  cached time is a footnote); a full pandas DataFrame, ``nn_code`` and ``prm`` included.
* Cellar store: ``service.store.data.data_rows(session, DataQuery(...))`` in-process on a
  fresh read session; every row as a dict with LEMUR's columns. The in-process counterpart of LEMUR.
* Cellar HTTP: ``service.lemur.data(..., url=...)`` against a real ``cellar serve`` (no job
  manager, no Ray): the whole answer as a DataFrame, fetched in pages of 50,000 rows over HTTP/JSON.
  What a LEMUR user who switches the import gets.
* Cellar first page: one ``GET /v1/data`` (at most 50,000 rows), decoded JSON.

Ratios are LEMUR's uncached median over Cellar's median, full answer against full answer (store
and HTTP levels; the first page is shown for information only).

    .venv/bin/python benchmarks/query_latency.py --repeat 3      # first run about 15 minutes on 2 cores
    .venv/bin/python benchmarks/query_latency.py --no-postgres --json
    .venv/bin/python benchmarks/query_latency.py --no-lemur       # Cellar only, no ratios

Everything goes to ``--work`` (default ``.cellar/bench``): the SQLite store, the extracted
archive, LEMUR's database (``lemur-db/db/ab.nn.db``), the server and LEMUR logs, and
``timings.json`` with the import and build times of earlier runs. A second run reuses the stores
and LEMUR's database (a store that already holds the import is not imported again; the import time
shown is then the one recorded by the run that imported it, marked ``*``). ``--reimport``
times the idempotent second import instead; ``--lemur-rebuild`` builds LEMUR's database again.
LEMUR's Q1 takes about two minutes per call, so LEMUR's only_best_accuracy query runs
``--lemur-repeat`` times (default 1), its other queries ``--repeat`` times.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from service.api.data import PAGE_ROWS
from service.lemur import data as cellar_data
from service.lemur.importer import import_lemur
from service.store import Architecture, Store, Trial, TrialEpoch, upgrade
from service.store.data import DataQuery, data_rows

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
LEMUR_SIDE = ROOT / "lemur_side.py"
DEFAULT_ARCHIVE = REPO.parent / "shared" / "data" / "lemur-stat-2025-09.tar.xz"
DEFAULT_WORK = REPO / ".cellar" / "bench"
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/cellar_bench"


@dataclass(frozen=True)
class Query:
    name: str
    #: keyword arguments of LEMUR's ``data()`` (and of ``service.lemur.data``)
    kwargs: dict[str, Any]
    #: LEMUR's row count on the 2025-09 archive
    lemur_rows: int

    def data_query(self) -> DataQuery:
        # DataQuery takes a sequence of values per filter; LEMUR one value
        filters = ("task", "dataset", "metric", "nn", "epoch")
        return DataQuery(**{k: [v] if k in filters else v for k, v in self.kwargs.items()})

    def http_params(self) -> dict[str, Any]:
        params = {k: ("true" if v is True else v) for k, v in self.kwargs.items()}
        params["max_rows"] = min(self.kwargs.get("max_rows") or PAGE_ROWS, PAGE_ROWS)
        return params

    def label(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())


QUERIES = (
    Query("Q1", {"task": "img-classification", "dataset": "cifar-10", "only_best_accuracy": True}, 11_846),
    Query("Q2", {"nn": "AlexNet"}, 2_226),
    Query("Q3", {"max_rows": 100}, 100),
)


# ---- timing -------------------------------------------------------------------------------------
def timed(call: Callable[[], Any], repeat: int, keep: bool = False) -> dict[str, Any]:
    """``call()`` ``repeat`` times, no warm-up; ``rows`` is ``len()`` of its last answer, kept
    as ``answer`` when ``keep``."""
    times, answer = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        answer = call()
        times.append(time.perf_counter() - start)
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "times_s": [round(t, 6) for t in times],
        "rows": len(answer) if answer is not None else None,
        "answer": answer if keep else None,
    }


def _public(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k not in ("answer", "ids")}


# ---- the Cellar side ----------------------------------------------------------------------------
def ensure_postgres_database(url: str) -> None:
    """Create the URL's database when missing, through an AUTOCOMMIT engine on ``postgres``."""
    target = make_url(url)
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            exists = connection.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": target.database})
            if not exists:
                connection.execute(text(f'CREATE DATABASE "{target.database}"'))
    finally:
        admin.dispose()


def _imported(store: Store) -> tuple[int, int]:
    """(epoch rows of imported LEMUR runs, LEMUR models without source) in the store."""
    with store.read() as session:
        epochs = session.scalar(
            select(func.count())
            .select_from(TrialEpoch)
            .join(Trial, Trial.trial_id == TrialEpoch.trial_id)
            .where(Trial.import_key.like("lemur:%"))
        )
        codeless = session.scalar(
            select(func.count())
            .select_from(Architecture)
            .where(Architecture.search_space == "lemur", Architecture.nn_code.is_(None))
        )
    return epochs or 0, codeless or 0


def prepare_store(store: Store, archive: Path, models: Path | None, reimport: bool, log: Callable[[str], None]) -> dict:
    """Migrate, then import the archive unless the store already holds it (with the sources)."""
    upgrade(store)
    epochs, codeless = _imported(store)
    if epochs and not reimport and not (models is not None and codeless):
        return {"imported": False, "epochs_in_store": epochs}
    kind = "first import" if not epochs else "re-import"
    log(f"{store.display_url}: {kind} of {archive.name} ...")
    start = time.perf_counter()
    report = import_lemur(store, archive, models=models)
    seconds = time.perf_counter() - start
    log(f"  {seconds:.1f} s: {report.records:,} records, {report.epochs_added:,} epoch rows added, "
        f"{report.models_with_code:,} models with code, {len(report.rejected)} files rejected")
    return {
        "imported": True,
        "kind": kind,
        "seconds": seconds,
        "files": report.files,
        "records": report.records,
        "runs_added": report.runs_added,
        "epochs_added": report.epochs_added,
        "epochs_present": report.epochs_present,
        "models_with_code": report.models_with_code,
        "rejected": len(report.rejected),
        "epochs_in_store": _imported(store)[0],
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def cellar_server(database_url: str, work: Path, name: str):
    """A real ``cellar serve`` on a free loopback port, read-only (no job manager, no Ray)."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "CELLAR_DATABASE_URL": database_url,
        "CELLAR_START_MANAGER": "false",
        "CELLAR_API_KEY": "query-latency-benchmark",
    }
    log_path = work / f"serve-{name}.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--port", str(port), "--log-level", "warning"],
            cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"cellar serve exited with {process.returncode}; see {log_path}")
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"cellar serve did not answer /healthz within 120 s; see {log_path}")
            time.sleep(0.3)
        yield url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def measure_cellar(store: Store, url: str, work: Path, name: str, repeat: int, log: Callable[[str], None]) -> list[dict]:
    results = []
    for query in QUERIES:
        def at_store(query: Query = query) -> list[dict[str, Any]]:
            with store.read() as session:
                return data_rows(session, query.data_query())

        store_level = timed(at_store, repeat, keep=True)
        store_level["ids"] = [(row["id"], _group(row)) for row in store_level.pop("answer")]
        results.append({"query": query.name, "store": store_level})
        log(f"  {name} {query.name} store: {store_level['median_s']:.3f} s, {store_level['rows']:,} rows")
    with cellar_server(store.url.render_as_string(hide_password=False), work, name) as server:
        for query, result in zip(QUERIES, results):
            http = timed(lambda query=query: cellar_data(**query.kwargs, url=server), repeat)

            def first_page(query: Query = query) -> list[dict[str, Any]]:
                answer = httpx.get(f"{server}/v1/data", params=query.http_params(), timeout=600)
                answer.raise_for_status()
                return answer.json()["data"]

            page = timed(first_page, repeat)
            result.update(http=http, first_page=page)
            log(f"  {name} {query.name} HTTP: {http['median_s']:.3f} s ({http['rows']:,} rows), "
                f"first page {page['median_s']:.3f} s ({page['rows']:,} rows)")
    return results


def _group(row: dict[str, Any]) -> tuple:
    """The columns LEMUR orders by: rows with equal ones come in no defined order."""
    return tuple(row[k] for k in ("task", "dataset", "metric", "nn", "epoch"))


# ---- the LEMUR side -----------------------------------------------------------------------------
def _lemur_side_module():
    spec = importlib.util.spec_from_file_location("lemur_side", LEMUR_SIDE)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def ensure_stat(archive: Path, work: Path, log: Callable[[str], None]) -> Path:
    """The archive's ``ab/nn/stat`` folder, extracted under ``work/lemur`` once."""
    target = work / "lemur"
    stat = target / "ab" / "nn" / "stat"
    done = target / ".extracted"
    if done.is_file() and done.read_text() == str(archive.resolve()):
        return stat
    log(f"extracting {archive} to {target} ...")
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    done.write_text(str(archive.resolve()))
    return stat


def models_folder(lemur_python: str) -> Path | None:
    """LEMUR's ``ab/nn/nn`` folder of model sources in its venv (what its database's nn_code holds)."""
    found = subprocess.run(
        [lemur_python, "-c", "import importlib.util as u; print(u.find_spec('ab.nn').submodule_search_locations[0])"],
        capture_output=True, text=True,
    )
    folder = Path(found.stdout.strip()) / "nn" if found.returncode == 0 else None
    return folder if folder is not None and folder.is_dir() else None


def run_lemur(python: str, stat: Path, db: Path, queries: list[Query], repeat: int, rebuild: bool,
              work: Path, log: Callable[[str], None]) -> dict:
    """``benchmarks/lemur_side.py`` in LEMUR's venv on ``queries``; its JSON, rows' ids added."""
    dump = work / f"lemur-rows-{'-'.join(q.name for q in queries)}.jsonl"
    command = [python, str(LEMUR_SIDE), "--stat", str(stat), "--db", str(db), "--repeat", str(repeat),
               "--queries", json.dumps([q.kwargs for q in queries]), "--dump", str(dump)]
    if rebuild:
        command.append("--rebuild")
    log(f"LEMUR: {', '.join(q.name for q in queries)} x{repeat} (log: {work / 'lemur-side.log'}) ...")
    with open(work / "lemur-side.log", "a", encoding="utf-8") as stderr:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=stderr, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"benchmarks/lemur_side.py failed ({done.returncode}); see {work / 'lemur-side.log'}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    ids: dict[int, list[tuple[str, tuple]]] = {}
    with open(dump, encoding="utf-8") as rows:
        for line in rows:
            row = json.loads(line)
            ids.setdefault(row["_query"], []).append((row["id"], _group(row)))
    for index, result in enumerate(out["queries"]):
        result["ids"] = ids.get(index, [])
    return out


# ---- the report ---------------------------------------------------------------------------------
def _s(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds >= 10:
        return f"{seconds:,.1f}"
    if seconds >= 1:
        return f"{seconds:.2f}"
    return f"{seconds:.3f}" if seconds >= 0.01 else f"{seconds:.4f}"


def _ratio(lemur: float | None, cellar: float | None) -> str:
    if lemur is None or not cellar:
        return "–"
    r = lemur / cellar
    return f"{r:,.0f}×" if r >= 100 else f"{r:.1f}×" if r >= 1 else f"{r:.2f}×"


@dataclass
class Report:
    archive: Path
    repeat: int
    lemur_repeat: int
    cellar: dict[str, dict] = field(default_factory=dict)
    lemur: dict[str, Any] | None = None
    lemur_build: dict[str, Any] | None = None
    #: LEMUR's versions and database
    lemur_info: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def lemur_result(self, name: str) -> dict | None:
        return (self.lemur or {}).get(name)

    def _result(self, backend: str, name: str) -> dict:
        return next(r for r in self.cellar[backend]["queries"] if r["query"] == name)

    def check_rows(self) -> None:
        """Every level's row count against LEMUR's (and the archive's known counts); ids too."""
        known = self.archive.name == DEFAULT_ARCHIVE.name
        for query in QUERIES:
            lemur = self.lemur_result(query.name)
            if lemur is not None and "error" not in lemur:
                expected, source = lemur["rows"], "LEMUR's data()"
                if known and expected != query.lemur_rows:
                    self.problems.append(
                        f"{query.name}: LEMUR returned {expected:,} rows, {query.lemur_rows:,} expected on this archive")
            elif known:
                expected, source = query.lemur_rows, "LEMUR's count on this archive"
            else:
                continue
            for backend in self.cellar:
                result = self._result(backend, query.name)
                for level in ("store", "http"):
                    rows = result[level]["rows"]
                    if rows != expected:
                        self.problems.append(
                            f"{query.name} {backend} {level}: {rows:,} rows, {source} has {expected:,}")
                if lemur is not None and lemur.get("ids"):
                    self._compare_ids(query, backend, result, lemur["ids"])

    def _compare_ids(self, query: Query, backend: str, result: dict, lemur_ids: list) -> None:
        """Cellar's row ids against LEMUR's. LEMUR orders by (task, dataset, metric, nn, epoch)
        alone, so with ``max_rows`` the rows that fill the last places of a tied group are
        arbitrary there: such rows may differ, everything before the tied group may not."""
        mine = {i for i, _ in result["store"]["ids"]}
        theirs = {i for i, _ in lemur_ids}
        result["ids_equal_lemur"] = mine == theirs
        if mine == theirs:
            return
        differ = (f"{len(mine & theirs):,} shared, {len(mine - theirs):,} only in Cellar, "
                  f"{len(theirs - mine):,} only in LEMUR")
        last = tuple(result["store"]["ids"][-1][1]) if result["store"]["ids"] else None
        if query.kwargs.get("max_rows") and last == tuple(lemur_ids[-1][1]):
            before = {i for i, g in result["store"]["ids"] if tuple(g) != last}
            lemur_before = {i for i, g in lemur_ids if tuple(g) != last}
            if before == lemur_before:
                self.notes.append(
                    f"{query.name} {backend}: row ids equal LEMUR's except among the rows tied on "
                    f"(task, dataset, metric, nn, epoch) = {last} at the max_rows cut ({differ}); LEMUR "
                    "breaks such ties in no defined order, Cellar by run")
                return
        self.problems.append(f"{query.name} {backend}: row ids differ from LEMUR's ({differ})")

    def table(self) -> str:
        backends = [b for b in ("sqlite", "postgresql") if b in self.cellar]
        names = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
        head = ["query", "rows", "LEMUR s"]
        for b in backends:
            head += [f"{names[b]} store s", f"{names[b]} HTTP s", f"{names[b]} 1st page s"]
        for b in backends:
            head += [f"LEMUR/{names[b]} store", f"LEMUR/{names[b]} HTTP"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for query in QUERIES:
            lemur = self.lemur_result(query.name)
            lemur_s = lemur.get("median_s") if lemur else None
            # the store level's count (check_rows flags any level that differs from LEMUR's)
            if backends:
                shown_rows = self._result(backends[0], query.name)["store"]["rows"]
            else:
                shown_rows = lemur.get("rows") if lemur else None
            cells = [f"{query.name} `{query.label()}`", f"{shown_rows:,}" if shown_rows is not None else "–",
                     f"{_s(lemur_s)}" + (f" ({_s(lemur['min_s'])})" if lemur and "min_s" in lemur else "")]
            for b in backends:
                r = self._result(b, query.name)
                cells += [f"{_s(r[k]['median_s'])} ({_s(r[k]['min_s'])})" for k in ("store", "http", "first_page")]
            for b in backends:
                r = self._result(b, query.name)
                cells += [_ratio(lemur_s, r["store"]["median_s"]), _ratio(lemur_s, r["http"]["median_s"])]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def imports(self) -> str:
        lines = ["| load | seconds | what |", "|---|---|---|"]
        for backend, results in self.cellar.items():
            info = results["import"]
            if info["imported"]:
                lines.append(f"| Cellar {backend} import_lemur ({info['kind']}) | {_s(info['seconds'])} | "
                             f"{info['records']:,} records, {info['epochs_added']:,} epoch rows added, "
                             f"{info['models_with_code']:,} models with code |")
            elif info.get("recorded"):
                rec = info["recorded"]
                lines.append(f"| Cellar {backend} import_lemur (first import) | {_s(rec['seconds'])}* | "
                             f"store reused ({info['epochs_in_store']:,} epoch rows); *recorded {rec['at']} |")
            else:
                lines.append(f"| Cellar {backend} import_lemur | – | store reused ({info['epochs_in_store']:,} "
                             "epoch rows), its import time was not recorded in this work dir |")
        if self.lemur_build is not None:
            build = self.lemur_build
            star = "" if build.get("now") else "*"
            at = "" if build.get("now") else f"; *recorded {build['at']}"
            lines.append(f"| LEMUR database build (its own importer) | {_s(build['build_s'])}{star} | "
                         f"{build.get('stat_rows', 0):,} stat rows, {build.get('skipped_json_files', 0)} "
                         f"JSON files skipped{at} |")
        return "\n".join(lines)

    def footnotes(self) -> list[str]:
        notes = [
            f"Times: median (min) of the timed calls, seconds; Cellar x{self.repeat} each, "
            f"LEMUR Q1 x{self.lemur_repeat}, Q2/Q3 x{self.repeat}; no warm-up call.",
            "LEMUR s: ab.nn.api.data() in-process, lru_cache cleared before each call; a full DataFrame.",
            "store s: data_rows() in-process, all rows as dicts (compare with LEMUR s: both in-process, full answer).",
            "HTTP s: service.lemur.data(url=...) against `cellar serve`, the full DataFrame in pages of "
            "50,000 rows (compare with LEMUR s: what a LEMUR user gets).",
            "1st page s: one GET /v1/data (at most 50,000 rows), JSON decoded; for information, no ratio.",
        ]
        notes += self.notes
        if self.lemur:
            cached = ", ".join(f"{q.name} {self.lemur[q.name]['cached_median_s'] * 1e6:.1f} µs"
                               for q in QUERIES if q.name in self.lemur and "cached_median_s" in self.lemur[q.name])
            notes.append(f"LEMUR's lru_cache hit (same arguments again, not used in the ratios): {cached}.")
        return notes

    def json(self) -> dict[str, Any]:
        return {
            "archive": str(self.archive),
            "repeat": self.repeat,
            "lemur_repeat": self.lemur_repeat,
            "queries": [{"name": q.name, "kwargs": q.kwargs} for q in QUERIES],
            "cellar": {
                backend: {
                    "url": results["url"],
                    "import": results["import"],
                    "queries": [
                        {"query": r["query"], "ids_equal_lemur": r.get("ids_equal_lemur"),
                         **{k: _public(r[k]) for k in ("store", "http", "first_page")}}
                        for r in results["queries"]
                    ],
                }
                for backend, results in self.cellar.items()
            },
            "lemur": None if self.lemur is None else {
                name: {k: v for k, v in r.items() if k not in ("ids", "columns")} for name, r in self.lemur.items()
            },
            "lemur_build": self.lemur_build,
            "problems": self.problems,
            "notes": self.notes,
        }


# ---- main ---------------------------------------------------------------------------------------
def _load_timings(work: Path) -> dict:
    try:
        return json.loads((work / "timings.json").read_text())
    except (OSError, ValueError):
        return {}


def _save_timings(work: Path, timings: dict) -> None:
    (work / "timings.json").write_text(json.dumps(timings, indent=1))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE, help="LEMUR stat archive (tar.xz)")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="folder for stores, LEMUR's database, logs")
    parser.add_argument("--sqlite", type=Path, default=None, help="SQLite store file (default WORK/lemur.db)")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="PostgreSQL store URL (created when missing)")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per query and level")
    parser.add_argument("--reimport", action="store_true", help="import again even when the store holds the archive")
    parser.add_argument("--no-models", action="store_true",
                        help="import statistics only, without LEMUR's model sources (rows then lack nn_code)")
    parser.add_argument("--no-lemur", action="store_true", help="Cellar only: no LEMUR side, no ratios")
    parser.add_argument("--lemur-venv", type=Path, default=None, help="LEMUR's venv (default .cellar/lemur-venv)")
    parser.add_argument("--lemur-db", type=Path, default=None, help="folder of LEMUR's database (default WORK/lemur-db)")
    parser.add_argument("--lemur-repeat", type=int, default=1,
                        help="calls of LEMUR's only_best_accuracy query (about 2 minutes each)")
    parser.add_argument("--skip-lemur-build", action="store_true",
                        help="fail instead of building LEMUR's database when it is missing")
    parser.add_argument("--lemur-rebuild", action="store_true", help="build LEMUR's database again (about 3.5 min)")
    parser.add_argument("--json", action="store_true", help="also print the results as one JSON object")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.lemur_repeat < 1:
        parser.error("--repeat and --lemur-repeat must be at least 1")
    if not args.archive.is_file():
        parser.error(f"{args.archive} does not exist")

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    timings = _load_timings(work)
    report = Report(args.archive, args.repeat, args.lemur_repeat)

    # LEMUR's venv first: its model sources go into Cellar's import
    lemur_python = models = None
    if not args.no_lemur or not args.no_models:
        side = _lemur_side_module()
        log("LEMUR venv ...")
        lemur_python = side.ensure_lemur_venv(args.lemur_venv)
        if not args.no_models:
            models = models_folder(lemur_python)
            if models is None:
                parser.error(f"no ab/nn/nn folder in LEMUR's venv ({lemur_python}); --no-models imports without it")

    backends = [("sqlite", f"sqlite:///{(args.sqlite or work / 'lemur.db').resolve()}")]
    if not args.no_postgres:
        ensure_postgres_database(args.postgres)
        backends.append(("postgresql", args.postgres))
    for backend, url in backends:
        store = Store(url)
        try:
            info = prepare_store(store, args.archive, models, args.reimport, log)
            key = store.display_url
            if info["imported"] and info["kind"] == "first import":
                timings.setdefault("import", {})[key] = {"seconds": info["seconds"], "at": _now()}
                _save_timings(work, timings)
            elif not info["imported"] and key in timings.get("import", {}):
                info["recorded"] = timings["import"][key]
            results = measure_cellar(store, url, work, backend, args.repeat, log)
        finally:
            store.dispose()
        report.cellar[backend] = {"url": store.display_url, "import": info, "queries": results}

    if not args.no_lemur:
        assert lemur_python is not None
        stat = ensure_stat(args.archive, work, log)
        db = (args.lemur_db or work / "lemur-db").resolve()
        db_file = db / "db" / "ab.nn.db"
        if args.skip_lemur_build and not db_file.is_file():
            parser.error(f"--skip-lemur-build: no LEMUR database at {db_file}")
        slow = [q for q in QUERIES if q.kwargs.get("only_best_accuracy")]
        fast = [q for q in QUERIES if not q.kwargs.get("only_best_accuracy")]
        report.lemur = {}
        first = True
        for group, repeat in ((fast, args.repeat), (slow, args.lemur_repeat)):
            out = run_lemur(lemur_python, stat, db, group, repeat, args.lemur_rebuild and first, work, log)
            if first:
                if out.get("build_s") is not None:
                    build = {"build_s": out["build_s"], "at": _now(), "stat_rows": out["stat_rows"],
                             "skipped_json_files": out["skipped_json_files"]}
                    timings["lemur_build"] = {**build, "db_file": str(db_file)}
                    _save_timings(work, timings)
                    report.lemur_build = {**build, "now": True}
                elif timings.get("lemur_build", {}).get("db_file") == str(db_file):
                    report.lemur_build = {**timings["lemur_build"], "now": False}
                report.lemur_info = {k: out[k] for k in ("lemur", "db_file", "stat_rows", "prm_rows", "nn_rows")}
            first = False
            for query, result in zip(group, out["queries"]):
                report.lemur[query.name] = result
                if "error" in result:
                    report.problems.append(f"{query.name}: LEMUR failed: {result['error']}")

    report.check_rows()
    print(f"\nLEMUR-style queries on {args.archive.name} ({os.cpu_count()} CPUs, SQLite {sqlite3.sqlite_version}"
          + (f", LEMUR nn-dataset {report.lemur_info['lemur']['nn-dataset']}" if report.lemur_info else "") + ")\n")
    print(report.table())
    print()
    for note in report.footnotes():
        print(f"- {note}")
    print()
    print(report.imports())
    if report.problems:
        print("\n!!! MISMATCH / PROBLEM !!!")
        for problem in report.problems:
            print(f"!!! {problem}")
    else:
        ids = " and the row ids are LEMUR's" + (" (ties at a max_rows cut aside, see above)" if report.notes else "")
        print("\nrow counts: every level equals LEMUR's" + (ids if report.lemur else ""))
    if args.json:
        print(json.dumps(report.json(), default=str))
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
