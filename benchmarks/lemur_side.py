#!/usr/bin/env python3
"""The LEMUR side of the query latency benchmark: LEMUR's own code on LEMUR's own records.

This file imports nothing from Cellar and, at module level, nothing outside the standard library.
It has two parts:

* ``ensure_lemur_venv(path)`` (stdlib only): a separate virtualenv holding LEMUR's PyPI package
  (``nn-dataset``, project ABrain-One/nn-dataset) without torch, plus the few pure-Python
  packages its database path needs. Returns the venv's python.
* the CLI, run with that python: builds LEMUR's SQLite database from a ``stat/`` folder with
  LEMUR's own importer and times ``ab.nn.api.data()`` on it::

      python benchmarks/lemur_side.py --stat /tmp/lemur/ab/nn/stat --db /tmp/lemur-db \\
          --queries '[{"task":"img-classification","dataset":"cifar-10","only_best_accuracy":true},
                      {"nn":"AlexNet"}, {"max_rows":100}]' --repeat 5

  prints one JSON object on stdout (everything else LEMUR prints goes to stderr). A query's
  ``"sql"`` object holds ``JoinConf``'s fields and becomes LEMUR's own
  ``ab.nn.util.db.Query.JoinConf`` (e.g. ``{"nn": "AlexNet", "sql": {"num_joint_nns": 2,
  "same_columns": ["dataset"], "diff_columns": ["nn"], "enhance_nn": true}}``); ``--minhash`` fills
  LEMUR's ``nn_minhash`` table with LEMUR's own functions (``fill_minhash``), which its
  ``similarity_mode="anchor_band_db_minhash"`` reads; ``--dump`` writes every row. Run with a python
  that lacks LEMUR, the CLI re-executes itself with ``ensure_lemur_venv()``'s python.
  ``python benchmarks/lemur_side.py --ensure-venv [PATH]`` only creates the venv and prints its python.

How LEMUR is run, without torch
-------------------------------
``nn-dataset`` 2.2.11 (the newest release) is installed with ``--no-deps``. Its database code is
torch-free but ``ab/nn/util/Util.py`` does ``import torch`` at module level, and ``ab/nn/api.py``
does ``import ab.nn.util.Train`` (torch, torchvision, ...) for ``check_nn``. Before importing LEMUR
this script therefore puts two empty placeholder modules into ``sys.modules``: ``torch`` and
``ab.nn.util.Train``. No attribute of either is touched on the build or ``data()`` path; every
function that runs is LEMUR's, unmodified, including ``ab.nn.api.data`` and its ``lru_cache``.

LEMUR's importer (``ab.nn.util.db.Write.json_train_to_db``) reads the model and metric source of
every record from ``site-packages/ab/nn/{nn,metric}/<name>.py`` (it stores them as ``nn_code``,
``metric_code``); a file that is missing makes it skip the whole JSON file. Releases since 2.1 no
longer ship those folders (they fetch a prebuilt database from Hugging Face instead), so the venv
gets the ``nn/`` and ``metric/`` sources of ``nn-dataset`` 2.0.5 (2025-09-26, the release nearest
to the stat snapshot of 2025-09-17, which has the source of every model in it), copied into
LEMUR's package folder where absent. Transforms are in 2.2.11 itself.

Where things go: LEMUR derives its database path from the working directory
(``<root>/db/ab.nn.db``) and its stat folder from its package folder. This script sets those
module constants of ``ab.nn.util.Const`` (``db_dir``, ``db_file``, ``stat_dir``,
``stat_train_dir``, ``stat_run_*``, ``stat_nn_dir``) before any other LEMUR module imports them,
so the database is ``<--db>/db/ab.nn.db`` and the records are those of ``--stat``. An existing
database there is reused (``build_s`` is then null); ``--rebuild`` builds it again.

Timing: each query runs ``--repeat`` times with ``ab.nn.api.data.cache_clear()`` before each call
(``median_s``, ``min_s``), then ``--repeat`` times from LEMUR's ``lru_cache`` (``cached_median_s``).
JSON lists in a query become tuples (LEMUR takes several names as a tuple; lru_cache needs them
hashable). A query that LEMUR itself fails on is reported with ``error``. Measured on the full
2025-09 archive (2 cores, SQLite 3.40.1): build about 205 s; ``only_best_accuracy`` over
cifar-10 about 2 minutes per call, because SQLite plans LEMUR's best-accuracy join as a nested
loop over two materialised subqueries (57,623 x 11,842 rows) without an index.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import re
import tempfile
import time
import zipfile
from pathlib import Path

LEMUR_VERSION = "2.2.11"
# nn/ and metric/ source files come from this release (see the module docstring)
LEMUR_CODE_VERSION = "2.0.5"
# the pure-Python packages the database path needs (pandas for the DataFrame, tqdm, psutil and
# zstandard are imported at module level by ab.nn.util.db.Write and its imports); exact pins
LEMUR_DEPS = (
    "pandas==3.1.1",
    "numpy==2.4.6",
    "python-dateutil==4.0.0",
    "tzdata==2026.6",
    "tqdm==4.70.1",
    "psutil==7.2.2",
    "zstandard==0.25.0",
    # LEMUR's MinHash of model code (ab.nn.util.NNAnalysisSimilarity), for --minhash
    "datasketch==2.0.0",
    "scipy==1.17.1",
)
_MARKER = ".cellar-lemur-venv.json"
_REPO = Path(__file__).resolve().parent.parent
# .cellar/ is git-ignored in this repository
DEFAULT_VENV = _REPO / ".cellar" / "lemur-venv"
DEFAULT_QUERIES = [
    {"task": "img-classification", "dataset": "cifar-10", "only_best_accuracy": True},
    {"nn": "AlexNet"},
    {"max_rows": 100},
]
CODE_COLUMNS = ("nn_code", "metric_code", "transform_code")
# a partner's code in LEMUR's pair rows: nn_code_2, metric_code_2, transform_code_2, ...
_PARTNER_CODE = re.compile(r"^(nn|metric|transform)_code_\d+$")


# ----------------------------------------------------------------------------- the venv (stdlib)

def _venv_python(path: Path) -> Path:
    return path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _pins() -> dict:
    return {"nn-dataset": LEMUR_VERSION, "code_from": LEMUR_CODE_VERSION, "deps": list(LEMUR_DEPS)}


def ensure_lemur_venv(path: str | os.PathLike | None = None, *, python: str | None = None,
                      quiet: bool = True) -> str:
    """Create (if missing or stale) the LEMUR virtualenv at ``path`` and return its python.

    Installs ``nn-dataset==LEMUR_VERSION`` with ``--no-deps`` (no torch), ``LEMUR_DEPS``, and the
    ``ab/nn/nn`` and ``ab/nn/metric`` sources of ``nn-dataset==LEMUR_CODE_VERSION``. A marker file
    records the pins; a venv whose marker matches is reused as it is. Uses pip with the registries
    configured on this machine. ``python`` is the interpreter that creates the venv (default: this
    one)."""
    path = Path(path) if path else DEFAULT_VENV
    py = _venv_python(path)
    marker = path / _MARKER
    try:
        if py.exists() and json.loads(marker.read_text()) == _pins():
            return str(py)
    except (OSError, ValueError):
        pass
    out = subprocess.DEVNULL if quiet else None
    if path.exists():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([python or sys.executable, "-m", "venv", str(path)], check=True)
    pip = [str(py), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["install", *LEMUR_DEPS], check=True, stdout=out)
    subprocess.run(pip + ["install", "--no-deps", f"nn-dataset=={LEMUR_VERSION}"], check=True, stdout=out)
    pkg = Path(subprocess.run(
        [str(py), "-c", "import ab.nn.util, pathlib; print(pathlib.Path(ab.nn.util.__file__).parent.parent)"],
        check=True, capture_output=True, text=True).stdout.strip())
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(pip + ["download", "--no-deps", "-d", tmp, f"nn-dataset=={LEMUR_CODE_VERSION}"],
                       check=True, stdout=out)
        wheel = next(Path(tmp).glob("nn_dataset-*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            for name in zf.namelist():
                parts = name.split("/")
                if (len(parts) == 4 and parts[:2] == ["ab", "nn"] and parts[2] in ("nn", "metric")
                        and parts[3].endswith(".py")):
                    dest = pkg / parts[2] / parts[3]
                    if not dest.exists():
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        dest.write_bytes(zf.read(name))
    marker.write_text(json.dumps(_pins()))
    return str(py)


# ----------------------------------------------------------------------------- LEMUR (in its venv)

class _CountingStderr:
    """Passes writes to stderr and counts LEMUR's 'skipping JSON file' warnings."""

    def __init__(self, target):
        self.target, self.skipped = target, []

    def write(self, s):
        if "Warning: skipping JSON file" in s:
            self.skipped.append(s.strip())
        return self.target.write(s)

    def flush(self):
        self.target.flush()

    def __getattr__(self, name):
        return getattr(self.target, name)


def _import_lemur(stat: Path, db_root: Path, rebuild: bool) -> dict:
    """Import LEMUR pointed at ``stat`` and ``db_root``; build the database (timed) if needed."""
    import types
    from contextlib import redirect_stdout

    # Placeholders for the training-only imports (see the module docstring).
    sys.modules.setdefault("torch", types.ModuleType("torch"))
    sys.modules.setdefault("ab.nn.util.Train", types.ModuleType("ab.nn.util.Train"))

    info: dict = {}
    with redirect_stdout(sys.stderr):  # LEMUR prints ("LEMUR root ...", progress) on stdout
        import ab.nn.util.Const as C

        C.db_dir = db_root / "db"
        C.db_file = C.db_dir / "ab.nn.db"
        C.stat_dir = stat
        C.stat_train_dir = stat  # 2.2 reads <stat>/train/<config>/; the snapshot is <stat>/<config>/
        C.stat_run_dir = stat / "run"
        C.stat_run_tflite_dir = C.stat_run_dir / "tflite"
        C.stat_run_tflite_fp32_dir = C.stat_run_tflite_dir / "fp32"
        C.stat_run_tflite_int8_dir = C.stat_run_tflite_dir / "int8"
        C.stat_run_pt_dir = C.stat_run_dir / "pt"
        C.stat_nn_dir = stat / "nn"
        if rebuild and C.db_file.exists():
            C.db_file.unlink()
        info["db_file"] = str(C.db_file)
        info["db_reused"] = C.db_file.exists()

        # Everything ab.nn.util.db.Write imports, so that importing it is the build alone.
        import tqdm  # noqa: F401
        import ab.nn.util.Util  # noqa: F401
        import ab.nn.util.db.Init  # noqa: F401
        import ab.nn.util.hf.DB_from_HF  # noqa: F401
        import ab.nn.util.db.build_nn_similarity  # noqa: F401

        counting = _CountingStderr(sys.stderr)
        old_err, sys.stderr = sys.stderr, counting
        try:
            t0 = time.perf_counter()
            import ab.nn.util.db.Write  # noqa: F401  (module level: init_population())
            build_s = time.perf_counter() - t0
        finally:
            sys.stderr = old_err
        info["build_s"] = None if info["db_reused"] else round(build_s, 3)
        info["skipped_json_files"] = len(counting.skipped)
        info["skipped_examples"] = counting.skipped[:3]

        import ab.nn.api  # noqa: F401
    return info


def _db_counts(db_file: str) -> dict:
    import sqlite3

    con = sqlite3.connect(db_file)
    try:
        q = lambda sql: con.execute(sql).fetchone()[0]  # noqa: E731
        return {"stat_rows": q("SELECT COUNT(*) FROM stat"),
                "prm_rows": q("SELECT COUNT(*) FROM prm"),
                "nn_rows": q("SELECT COUNT(*) FROM nn"),
                "db_bytes": os.path.getsize(db_file)}
    finally:
        con.close()


def _json_records(stat: Path) -> int:
    n = 0
    for conf in os.scandir(stat):
        if conf.is_dir():
            for f in os.scandir(conf.path):
                if f.name.endswith(".json"):
                    with open(f.path, encoding="utf-8", errors="replace") as fh:
                        n += len(json.load(fh))
    return n


def _kwargs(q: dict) -> dict:
    """``data()``'s keyword arguments from a JSON query. Lists become tuples (lru_cache needs
    hashable arguments; LEMUR takes several names as a tuple). ``sql`` (an object of ``JoinConf``'s
    fields) becomes LEMUR's own ``ab.nn.util.db.Query.JoinConf``."""
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in q.items()}
    if isinstance(kw.get("sql"), dict):
        from ab.nn.util.db.Query import JoinConf

        kw["sql"] = JoinConf(**{k: tuple(v) if isinstance(v, list) else v for k, v in kw["sql"].items()})
    return kw


def fill_minhash(db_file: str) -> dict:
    """LEMUR's ``nn_minhash`` table for the models of its ``nn`` table that lack a row.

    LEMUR fills the table from ``stat/nn/<nn>.json`` (``json_nn_to_db``), files its
    ``log_nn_stat`` writes after building each model with torch; the archive has none. This does
    what those two steps do for the signature alone, with LEMUR's functions:
    ``NNAnalysisSimilarity.to_minhash(code, num_perm=128, n=7)`` (as ``code_minhash_signature``)
    and ``build_nn_similarity.upsert_minhash_batch``."""
    import sqlite3

    from ab.nn.util.NNAnalysisSimilarity import to_minhash
    from ab.nn.util.db.build_nn_similarity import upsert_minhash_batch

    con = sqlite3.connect(db_file)
    try:
        todo = con.execute("SELECT name, code FROM nn WHERE name NOT IN (SELECT nn FROM nn_minhash)").fetchall()
        records = [{"nn": name, "hashvalues": to_minhash(code or "", num_perm=128, n=7).hashvalues.tolist(),
                    "num_perm": 128, "shingle_n": 7} for name, code in todo]
        added = upsert_minhash_batch(con, records) if records else 0
        return {"minhash_added": added, "minhash_rows": con.execute("SELECT COUNT(*) FROM nn_minhash").fetchone()[0]}
    finally:
        con.close()


def _plain(v):
    if isinstance(v, float) and v != v:
        return None
    if hasattr(v, "item") and not isinstance(v, (dict, list, str)):
        v = v.item()
        return None if isinstance(v, float) and v != v else v
    return v


def run_queries(queries: list[dict], repeat: int, dump=None, dump_code: bool = False) -> list[dict]:
    from ab.nn.api import data

    results = []
    for i, q in enumerate(queries):
        kw = _kwargs(q)
        res: dict = {"query": q}
        times = []
        try:
            for _ in range(repeat):
                data.cache_clear()
                t0 = time.perf_counter()
                df = data(**kw)
                times.append(time.perf_counter() - t0)
            cached = []
            for _ in range(repeat):  # the last cold call above filled the cache
                t0 = time.perf_counter()
                data(**kw)
                cached.append(time.perf_counter() - t0)
        except Exception as e:  # LEMUR's own failures are results too
            res["error"] = f"{type(e).__name__}: {e}"
            results.append(res)
            continue
        res.update(median_s=round(statistics.median(times), 6), min_s=round(min(times), 6),
                   times_s=[round(t, 6) for t in times],
                   cached_median_s=round(statistics.median(cached), 9),
                   rows=int(len(df)), columns=[str(c) for c in df.columns])
        if dump is not None:
            cols = [c for c in df.columns
                    if dump_code or (c not in CODE_COLUMNS and not _PARTNER_CODE.match(str(c)))]
            for rec in df[cols].to_dict("records"):
                row = {"_query": i}
                for k, v in rec.items():
                    row[k] = {pk: _plain(pv) for pk, pv in v.items()} if isinstance(v, dict) else _plain(v)
                dump.write(json.dumps(row, default=str) + "\n")
        results.append(res)
    data.cache_clear()
    return results


def _have_lemur() -> bool:
    import importlib.util
    try:
        return importlib.util.find_spec("ab.nn.util.db") is not None
    except ModuleNotFoundError:
        return False


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ensure-venv", nargs="?", const="", metavar="PATH",
                    help=f"create the LEMUR venv (default {DEFAULT_VENV}) and print its python")
    ap.add_argument("--venv", default=None, help="venv to re-execute in when LEMUR is not importable")
    ap.add_argument("--stat", help="LEMUR stat folder: <stat>/<task>_<dataset>_<metric>_<nn>/<epoch>.json")
    ap.add_argument("--db", help="folder for LEMUR's database (<db>/db/ab.nn.db)")
    ap.add_argument("--rebuild", action="store_true", help="delete an existing database and build again")
    ap.add_argument("--queries", default=None, help="JSON list of data() keyword-argument objects")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dump", default=None, help="write the rows of every query to this file as JSON lines")
    ap.add_argument("--dump-code", action="store_true", help="keep nn_code/metric_code/transform_code in --dump")
    ap.add_argument("--minhash", action="store_true",
                    help="fill LEMUR's nn_minhash table from its nn table (anchor_band_db_minhash queries need it)")
    args = ap.parse_args(argv)

    if args.ensure_venv is not None:
        print(ensure_lemur_venv(args.ensure_venv or None, quiet=False))
        return 0
    if not args.stat or not args.db:
        ap.error("--stat and --db are required")
    if not _have_lemur():
        py = ensure_lemur_venv(args.venv)
        return subprocess.run([py, str(Path(__file__).resolve()), *(argv if argv is not None else sys.argv[1:])]).returncode

    stat = Path(args.stat).resolve()
    db_root = Path(args.db).resolve()
    db_root.mkdir(parents=True, exist_ok=True)
    queries = json.loads(args.queries) if args.queries else DEFAULT_QUERIES
    if not isinstance(queries, list) or not all(isinstance(q, dict) for q in queries):
        ap.error("--queries must be a JSON list of objects")

    import importlib.metadata as md

    out: dict = {"lemur": {"nn-dataset": md.version("nn-dataset"), "code_from": LEMUR_CODE_VERSION,
                           "pandas": md.version("pandas"), "python": sys.version.split()[0]},
                 "stat": str(stat)}
    out.update(_import_lemur(stat, db_root, args.rebuild))
    out.update(_db_counts(out["db_file"]))
    if args.minhash:
        out.update(fill_minhash(out["db_file"]))
    if not out["db_reused"]:
        out["json_records"] = _json_records(stat)
    dump = open(args.dump, "w", encoding="utf-8") if args.dump else None
    try:
        out["queries"] = run_queries(queries, args.repeat, dump, args.dump_code)
    finally:
        if dump:
            dump.close()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
