"""``service.lemur.data(..., sql=JoinConf(...))`` against LEMUR's own ``data()`` (nn-dataset 2.2.11).

Both sides get the same real records: every configuration of a few models of LEMUR's archive on
cifar-10 and mnist. LEMUR builds its SQLite database from them with its own importer, in its own
virtualenv (``benchmarks/lemur_side.py``, built once under ``.cellar/``; a venv that cannot be
built fails the test), with the model sources of nn-dataset 2.0.5 and its MinHash table filled by
its own functions; Cellar imports the same files and models with ``cellar import-lemur`` into a
real ``cellar serve``. Every query runs on both, through LEMUR's ``ab.nn.api.data`` with LEMUR's
``JoinConf`` and through Cellar's client ``service.lemur.data`` with Cellar's.

LEMUR's pair mode orders rows with SQLite's ``RANDOM()`` and takes the first partner its query
plan meets, so pairs are compared by what is certain: the same rows, the same rows with and
without a partner, every partner valid, its ``_2`` columns its own. Elsewhere ties are LEMUR's
arbitrary order: rows are compared by key columns and values, not by ids among tied rows.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from service import lemur
from service.lemur import JoinConf
from tests.service.lemur.test_importer import ARCHIVE
from tests.service.server import KEY, Server

ROOT = Path(__file__).resolve().parents[3]
#: tests/conftest.py's server for throw-away databases
POSTGRES_ADMIN_URL = os.environ.get("CELLAR_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
#: AlexNet variants (MinHash similarity to each other 0.78-0.94: the medium and low bands), two
#: ShuffleNets (0.96: high), and three unrelated models (below 0.3)
MODELS = (
    "AlexNet-69c52339-4eac-45f1-bbfe-2c51949701f1",
    "AlexNet-a85563c1-dc50-4c59-991a-782253cc37b0",
    "AlexNet-ad69700d-0e12-458f-afad-93f03988a4e7",
    "AlexNet-bb84fa5d-5dd8-4cc0-8a30-5c41958bcd94",
    "AirNext-1c889567-e226-44b8-9ced-2cbb8ad0a561",
    "ShuffleNet-2bb109c0-321d-490b-b70a-eb8053a3514b",
    "ShuffleNet-6326085d-8199-482e-96f4-1fb78dd9e2e9",
    "BagNet-001bf3e2-17c2-4fdf-948e-493677e58a3b",
)
DATASETS = ("cifar-10", "mnist")
_CONFIG = re.compile(r"(?:^|/)stat/(?P<config>[^/]+)/(?P<epoch>\d+)\.json$")
CIFAR = {"task": "img-classification", "dataset": "cifar-10", "metric": "acc"}
#: nn-gpt's prompt pairs (conf/prompt/train/NN_gen.json) and dataset comparisons
IMPROVE = {"num_joint_nns": 2, "same_columns": ["epoch", "metric", "dataset", "task"], "diff_columns": ["nn"],
           "enhance_nn": True}  # fmt: skip
COMPARE = {"num_joint_nns": 2, "same_columns": ["epoch", "metric", "task", "nn"], "diff_columns": ["dataset"],
           "enhance_nn": False}  # fmt: skip
ANCHOR = {"similarity_mode": "anchor_band_db_minhash"}
#: name -> data()'s keyword arguments; ``sql`` holds JoinConf's fields
QUERIES: dict[str, dict[str, Any]] = {
    "all": {},
    "best": {"only_best_accuracy": True},
    "mnist_epoch": {"dataset": "mnist", "epoch": 2},
    "unique": {"task": "img-classification", "unique_nn": True},
    "prefixes": {"task": "img-classification", "nn_prefixes": ["ShuffleNet-", "BagNet-"]},
    "first_rows": {"max_rows": 40},
    "none": {"nn": "no-such-model"},
    "pairs_improve": {"sql": IMPROVE},
    "pairs_compare": {"sql": COMPARE},
    "pairs_best_page": {"only_best_accuracy": True, "max_rows": 60, "sql": IMPROVE},
    "pairs_one": {"dataset": "mnist", "sql": {"num_joint_nns": 1, "same_columns": ["dataset"]}},
    "pairs_none": {"nn": "no-such-model", "sql": IMPROVE},
    "pairs_three": {"dataset": "mnist", "sql": {**IMPROVE, "num_joint_nns": 3}},
    "plain_stats": {"nn": MODELS[1], "include_nn_stats": True},
    "pairs_stats": {"nn": MODELS[1], "include_nn_stats": True, "sql": IMPROVE},
    "top3": {"sql": {"num_joint_nns": 3}},
    "top4_mnist": {"max_rows": 2, "sql": {"num_joint_nns": 4, "task": "img-classification", "dataset": "mnist"}},
    "anchor_medium": {"sql": {"num_joint_nns": 3, **ANCHOR, "similarity_band": "medium"}},
    "anchor_high_cifar": {**CIFAR, "sql": {"num_joint_nns": 2, **CIFAR, **ANCHOR, "similarity_band": "high"}},
    "anchor_high_one": {"sql": {"num_joint_nns": 1, **ANCHOR, "similarity_band": "high"}},
    "anchor_low_fixed": {"sql": {"num_joint_nns": 2, **ANCHOR, "similarity_band": "low", "anchor_nn": MODELS[3]}},
    "anchor_custom": {"dataset": "mnist", "sql": {"num_joint_nns": 2, **ANCHOR, "anchor_nn": MODELS[0],
                                                  "min_arch_jaccard": 0.0, "max_arch_jaccard": 0.5,
                                                  "overfetch_factor": 2}},
}  # fmt: skip
KEYS = ["task", "dataset", "metric", "nn", "epoch"]


def _lemur_side() -> Any:
    spec = importlib.util.spec_from_file_location("lemur_side", ROOT / "benchmarks" / "lemur_side.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(``stat/``, model files, LEMUR's python): the records of MODELS on DATASETS, as LEMUR lays
    them out, and the source of each model from LEMUR's venv."""
    assert ARCHIVE.exists(), f"LEMUR's statistics archive is not at {ARCHIVE}: set CELLAR_LEMUR_ARCHIVE"
    python = _lemur_side().ensure_lemur_venv()  # raises (the test fails) where pip cannot install
    root = tmp_path_factory.mktemp("joinconf")
    stat, models = root / "stat", root / "models"
    with tarfile.open(ARCHIVE) as archive:
        for member in archive:
            found = _CONFIG.search(member.name)
            if found:
                task, dataset, _, nn = found["config"].split("_", 3)
                if task == "img-classification" and dataset in DATASETS and nn in MODELS:
                    target = stat / found["config"] / f"{found['epoch']}.json"
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(archive.extractfile(member).read())  # type: ignore[union-attr]
    assert len(list(stat.iterdir())) == len(MODELS) * len(DATASETS)
    sources = Path(subprocess.run(
        [python, "-c", "import ab.nn.nn, os; print(os.path.dirname(ab.nn.nn.__file__))"],
        check=True, capture_output=True, text=True).stdout.strip())  # fmt: skip
    models.mkdir()
    for nn in MODELS:
        shutil.copy(sources / f"{nn}.py", models / f"{nn}.py")
    return stat, models, Path(python)


@pytest.fixture(scope="module")
def lemur_answers(sample: tuple[Path, Path, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """name -> LEMUR's answer: ``rows`` (list of dicts), ``columns``, or ``error``."""
    stat, _, python = sample
    work = tmp_path_factory.mktemp("lemur-db")
    names = list(QUERIES)
    done = subprocess.run(
        [str(python), str(ROOT / "benchmarks" / "lemur_side.py"), "--stat", str(stat), "--db", str(work),
         "--rebuild", "--minhash", "--repeat", "1", "--dump", str(work / "rows.jsonl"),
         "--queries", json.dumps([QUERIES[n] for n in names])],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert out["skipped_json_files"] == 0 and out["minhash_rows"] == len(MODELS), out
    rows: dict[int, list[dict[str, Any]]] = {}
    for line in (work / "rows.jsonl").read_text().splitlines():
        row = json.loads(line)
        rows.setdefault(row.pop("_query"), []).append(row)
    answers = {}
    for i, (name, result) in enumerate(zip(names, out["queries"], strict=True)):
        answers[name] = {**result, "rows": rows.get(i, [])}
    answers["_stat_rows"] = out["stat_rows"]
    return answers


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def server(
    request: pytest.FixtureRequest, sample: tuple[Path, Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A ``cellar serve`` (no job manager) on each backend, with the sample imported by the CLI."""
    stat, models, _ = sample
    workdir = tmp_path_factory.mktemp("cellar")
    database = None
    if request.param == "sqlite":
        url = f"sqlite:///{workdir / 'cellar.db'}"
    else:
        admin = request.getfixturevalue("postgres_admin")
        database = f"cellar_test_{uuid.uuid4().hex[:12]}"
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{database}"'))
        url = make_url(POSTGRES_ADMIN_URL).set(database=database).render_as_string(hide_password=False)
    server = Server(workdir, url, CELLAR_START_MANAGER="false")
    try:
        assert server.cellar("migrate").returncode == 0
        imported = server.cellar("import-lemur", str(stat), "--models", str(models), "--json")
        assert imported.returncode == 0, imported.stderr
        server.start()
        yield server
    finally:
        server.stop()
        if database is not None:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


def cellar(server: Server, name: str) -> pd.DataFrame:
    kwargs = dict(QUERIES[name])
    if "sql" in kwargs:
        kwargs["sql"] = JoinConf(**{k: tuple(v) if isinstance(v, list) else v for k, v in kwargs["sql"].items()})
    if "nn_prefixes" in kwargs:
        kwargs["nn_prefixes"] = tuple(kwargs["nn_prefixes"])
    return lemur.data(**kwargs, url=server.url, api_key=KEY)


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The frame's rows, NaN as None (LEMUR's dump writes null)."""
    return [{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()} for r in frame.to_dict("records")]


def key(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row[k] for k in KEYS)


def assert_lemur_columns_first(frame: pd.DataFrame, theirs: dict[str, Any]) -> None:
    """LEMUR's columns in LEMUR's order, then only Cellar's own (``run_id``, ...; in pair rows the
    partner's ``task_2`` and ``dataset_2``, which nn-gpt's dataset comparison prompts read)."""
    ours = list(frame.columns)
    assert ours[: len(theirs["columns"])] == theirs["columns"], (ours, theirs["columns"])
    extra = [c for c in ours[len(theirs["columns"]) :] if not re.fullmatch(r"(task|dataset)_\d+", c)]
    assert extra == list(lemur.query.CELLAR_COLUMNS), ours


def test_plain_rows_are_lemurs(server: Server, lemur_answers: dict[str, Any]) -> None:
    everything = {r["id"]: r for r in records(cellar(server, "all"))}
    assert len(everything) == lemur_answers["_stat_rows"] == len(lemur_answers["all"]["rows"])
    for name in ("all", "best", "mnist_epoch", "prefixes", "first_rows"):
        theirs, frame = lemur_answers[name], cellar(server, name)
        assert "error" not in theirs, theirs
        assert_lemur_columns_first(frame, theirs)
        ours = records(frame)
        # the same rows (ids are LEMUR's), in LEMUR's order of task, dataset, metric, nn, epoch
        assert [key(r) for r in ours] == [key(r) for r in theirs["rows"]], name
        if name != "first_rows":  # LEMUR's LIMIT cuts among tied rows in whatever order SQLite reads
            assert {r["id"] for r in ours} == {r["id"] for r in theirs["rows"]}, name
        for row in theirs["rows"]:
            mine = everything[row["id"]]
            # metric_id, transform_id: the md5 of the sources Cellar runs (docs/lemur.md), not LEMUR's
            for column in ("accuracy", "duration", "prm_id", "nn_id"):
                assert mine[column] == row[column], (name, column, row["id"])
            assert {k: v for k, v in mine["prm"].items() if k in row["prm"]} == row["prm"], row["id"]
    # unique_nn: one row per model at its best accuracy (LEMUR picks any of a model's tied rows)
    theirs, ours = lemur_answers["unique"]["rows"], records(cellar(server, "unique"))
    assert {(r["nn"], r["accuracy"]) for r in ours} == {(r["nn"], r["accuracy"]) for r in theirs}
    assert sorted(r["nn"] for r in ours) == sorted(MODELS)


def test_empty_answers(server: Server, lemur_answers: dict[str, Any]) -> None:
    """LEMUR's empty answer is a frame without columns; Cellar's has the columns a row would have
    (code written for rows keeps working), and no rows either."""
    for name in ("none", "pairs_none", "anchor_high_cifar"):
        theirs, frame = lemur_answers[name], cellar(server, name)
        assert "error" not in theirs and theirs["rows"] == [] and theirs["columns"] == [], theirs
        assert frame.empty and "nn" in frame.columns, name
    assert list(cellar(server, "none").columns) == list(lemur.query.LEMUR_COLUMNS) + list(lemur.query.CELLAR_COLUMNS)


def check_pairs(rows: list[dict[str, Any]], by_id: dict[str, dict[str, Any]], conf: dict[str, Any]) -> None:
    """Every partner matches the row as ``conf`` asks, and its ``_2`` columns are its own."""
    for row in rows:
        if row["matched_id"] is None:
            assert row["nn_2"] is None and row["accuracy_2"] is None
            continue
        partner = by_id[row["matched_id"]]
        assert all(partner[c] == row[c] for c in conf.get("same_columns", ())), (row, partner)
        assert all(partner[c] != row[c] for c in conf.get("diff_columns", ())), (row, partner)
        if conf.get("enhance_nn"):
            assert partner["accuracy"] > row["accuracy"]
        for column in ("nn", "metric", "prm_id", "accuracy", "duration", "epoch"):
            assert row[f"{column}_2"] == partner[column], column
        if "dataset_2" in row:  # Cellar's
            assert (row["task_2"], row["dataset_2"]) == (partner["task"], partner["dataset"])


def test_pairs_match_lemurs(server: Server, lemur_answers: dict[str, Any]) -> None:
    everything = {r["id"]: r for r in records(cellar(server, "all"))}
    for name in ("pairs_improve", "pairs_compare", "pairs_best_page", "pairs_one"):
        theirs, frame = lemur_answers[name], cellar(server, name)
        assert "error" not in theirs, theirs
        conf = QUERIES[name]["sql"]
        assert_lemur_columns_first(frame, theirs)
        ours = records(frame)
        check_pairs(theirs["rows"], everything, conf)  # what LEMUR does, as read here
        check_pairs(ours, everything, conf)
        for row in ours:
            if row["matched_id"] is not None:
                partner = everything[row["matched_id"]]
                assert row["nn_code_2"] == partner["nn_code"] and row["prm_2"] == partner["prm"]
        if name == "pairs_best_page":  # max_rows of the randomly ordered best rows
            best = {r["id"] for r in lemur_answers["best"]["rows"]}
            assert len(ours) == len(theirs["rows"]) == 60
            assert {r["id"] for r in ours} <= best and {r["id"] for r in theirs["rows"]} <= best
            continue
        assert {r["id"] for r in ours} == {r["id"] for r in theirs["rows"]}, name
        # the same rows find a partner: LEMUR's first match, Cellar's first in the random order
        assert {r["id"] for r in ours if r["matched_id"]} == {r["id"] for r in theirs["rows"] if r["matched_id"]}
        if name == "pairs_one":
            assert all(r["matched_id"] is None for r in ours) and "prm_2" not in frame.columns
        else:
            assert any(r["matched_id"] for r in ours)


def test_beyond_lemur_three_models_a_row_and_statistics(server: Server, lemur_answers: dict[str, Any]) -> None:
    """LEMUR's pair query joins one partner and fails on ``num_joint_nns`` 3 (``KeyError:
    'prm_id_3'``); Cellar joins two distinct ones. With ``include_nn_stats`` the columns are
    LEMUR's (LEMUR's values are null here: it has statistics only from its own ``stat/nn`` files)."""
    assert "KeyError" in lemur_answers["pairs_three"]["error"]
    everything = {r["id"]: r for r in records(cellar(server, "all"))}
    by_key = {(r["prm_id"], r["nn"], r["epoch"], r["accuracy"]): r for r in everything.values()}
    rows = records(cellar(server, "pairs_three"))
    for row in rows:
        third = by_key.get((row["prm_id_3"], row["nn_3"], row["epoch_3"], row["accuracy_3"]))
        for partner in [everything[i] for i in (row["matched_id"],) if i] + ([third] if third else []):
            assert partner["accuracy"] > row["accuracy"] and partner["nn"] != row["nn"]
            assert (partner["dataset"], partner["epoch"]) == (row["dataset"], row["epoch"])
        if row["nn_3"] is not None:
            assert third is not None and row["nn_2"] is not None and row["prm_3"] == third["prm"]
    assert any(r["nn_3"] for r in rows)
    for name in ("plain_stats", "pairs_stats"):
        theirs, frame = lemur_answers[name], cellar(server, name)
        assert "error" not in theirs and len(frame) == len(theirs["rows"]) > 0, theirs
        assert_lemur_columns_first(frame, theirs)
        assert "nn_total_params" in frame.columns


def test_top_n_matches_lemurs(server: Server, lemur_answers: dict[str, Any]) -> None:
    for name, n in (("top3", 3), ("top4_mnist", 4)):
        theirs, frame = lemur_answers[name], cellar(server, name)
        assert "error" not in theirs, theirs
        assert_lemur_columns_first(frame, theirs)
        ours = records(frame)
        # the n best models, each at its best accuracy and earliest epoch at it (ties between models in
        # name order, as LEMUR's rows come); max_rows is not used
        assert len(ours) == len(theirs["rows"]) == n
        assert [(r["nn"], r["accuracy"], r["epoch"]) for r in ours] == [
            (r["nn"], r["accuracy"], r["epoch"]) for r in theirs["rows"]
        ]
        assert set(frame["rn"]) == {1}
    assert set(cellar(server, "top4_mnist")["dataset"]) == {"mnist"}


def test_anchor_bands_match_lemurs(server: Server, lemur_answers: dict[str, Any]) -> None:
    for name in ("anchor_medium", "anchor_high_one", "anchor_low_fixed", "anchor_custom", "anchor_high_cifar"):
        theirs, frame = lemur_answers[name], cellar(server, name)
        assert "error" not in theirs, theirs
        ours = records(frame)
        assert len(ours) == len(theirs["rows"]), (name, ours, theirs["rows"])
        if name == "anchor_high_cifar":  # the anchor found in a lower band has no model in "high"
            assert not ours
            continue
        assert ours, name
        assert_lemur_columns_first(frame, theirs)
        # the same anchor, and the same models in the same order, at the same similarity
        assert [(r["anchor_nn"], r["nn"], r["accuracy"], r["epoch"]) for r in ours] == [
            (r["anchor_nn"], r["nn"], r["accuracy"], r["epoch"]) for r in theirs["rows"]
        ], name
        assert [r["anchor_jaccard"] for r in ours] == pytest.approx([r["anchor_jaccard"] for r in theirs["rows"]])
        meta, their_meta = ours[0]["diversity_meta"]["curriculum_meta"], theirs["rows"][0]["diversity_meta"]
        their_meta = their_meta["curriculum_meta"]
        for field in ("mode", "anchor_nn", "auto_anchor", "band", "min_j", "max_j"):
            assert meta[field] == their_meta[field], (name, field)
        assert ours[0]["arch_summary"] == theirs["rows"][0]["arch_summary"] == {}
        sql = QUERIES[name]["sql"]
        assert len(ours) <= sql["num_joint_nns"] * sql.get("overfetch_factor", 10)
    # the auto anchor of "medium": an AlexNet variant, with its relatives in the band
    assert {r["nn"] for r in records(cellar(server, "anchor_medium"))} <= set(MODELS[:4])
