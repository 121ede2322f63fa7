"""``cellar import-lemur`` on LEMUR's real statistics, and ``/v1/data`` against LEMUR's semantics.

The sample is real: every configuration of a few models, taken from the LEMUR archive in
``../shared/data`` (the tests skip, saying so, where it is absent). The expected answers are
computed here from the raw JSON files, by LEMUR's rules, and compared with what the server says.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tarfile
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from service.lemur import importer as lemur_import
from service.store import imports as store_imports
from service.api import create_app
from service.cli import app as cli
from service.settings import Settings
from service.store import Job, Store, Trial, TrialEpoch, upgrade

#: LEMUR's archive: CELLAR_LEMUR_ARCHIVE, else ../shared/data beside the repository
ARCHIVE = Path(
    os.environ.get("CELLAR_LEMUR_ARCHIVE")
    or Path(__file__).resolve().parents[4] / "shared" / "data" / "lemur-stat-2025-09.tar.xz"
)
needs_archive = pytest.mark.skipif(
    not ARCHIVE.exists(), reason=f"LEMUR's statistics archive is not at {ARCHIVE}: set CELLAR_LEMUR_ARCHIVE to lemur-stat-2025-09.tar.xz"
)
#: models whose every configuration goes into the sample: one on seven datasets, a genetic-search
#: model with a 0.json, both text models (acc and ppl), segmentation, captioning with repeated uids
SAMPLE_MODELS = ("AlexNet", "ga-311", "LSTM", "RNN", "FCN8s", "C5C-RESNETLSTM-2710f3b99727c92b2c7ead7bfa8efe49")
_CONFIG = re.compile(r"(?:^|/)stat/(?P<config>[^/]+)/(?P<epoch>\d+)\.json$")


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``stat/`` with every configuration of SAMPLE_MODELS, as LEMUR lays it out."""
    if not ARCHIVE.exists():
        pytest.skip(f"LEMUR's statistics archive is not at {ARCHIVE}")
    root = tmp_path_factory.mktemp("lemur") / "stat"
    with tarfile.open(ARCHIVE) as archive:
        for member in archive:
            found = _CONFIG.search(member.name)
            if found and found["config"].split("_", 3)[3] in SAMPLE_MODELS:
                target = root / found["config"] / f"{found['epoch']}.json"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.extractfile(member).read())  # type: ignore[union-attr]
    return root


def lemur_records(stat: Path) -> list[dict[str, Any]]:
    """Every record as a row of LEMUR's ``stat`` table, computed from the files by LEMUR's rules."""
    rows = []
    for file in sorted(stat.glob("*/*.json")):
        task, dataset, metric, nn = file.parent.name.split("_", 3)
        epoch = int(file.stem)
        for record in json.loads(file.read_text()):
            prm = {k: v for k, v in record.items() if k not in ("accuracy", "duration", "uid")}
            values = [prm["transform"], record["uid"], task, dataset, metric, nn, epoch, record.get("duration"), record["accuracy"]]
            rows.append(
                {
                    "id": hashlib.md5(re.sub(r"\s", "", str(values)).encode()).hexdigest(),
                    "task": task,
                    "dataset": dataset,
                    "metric": metric,
                    "nn": nn,
                    "epoch": epoch,
                    "accuracy": record["accuracy"],
                    "duration": record.get("duration"),
                    "prm_id": record["uid"],
                    "prm": prm,
                }
            )
    return rows


def lemur_order(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["task"], row["dataset"], row["metric"], row["nn"], row["epoch"])


def import_cli(path: Path, url: str, *extra: str) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["import-lemur", str(path), "--database", url, "--json", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def imported(sample: Path, store_url: str) -> Iterator[tuple[TestClient, list[dict[str, Any]]]]:
    store = Store(store_url)
    upgrade(store)
    store.dispose()
    report = import_cli(sample, store_url)
    expected = lemur_records(sample)
    assert report["records"] == len(expected) and report["epochs_added"] == len(expected)
    assert report["rejected"] == [] and report["files"] == len(list(sample.glob("*/*.json")))
    with TestClient(create_app(Settings(database_url=store_url, start_manager=False))) as client:
        yield client, expected


def all_rows(client: TestClient, **params: Any) -> list[dict[str, Any]]:
    """Every page of ``/v1/data``."""
    rows: list[dict[str, Any]] = []
    offset: int | None = 0
    while offset is not None:
        page = client.get("/v1/data", params={**params, "offset": offset})
        assert page.status_code == 200, page.text
        rows += page.json()["data"]
        offset = page.json()["next_offset"]
    return rows


@needs_archive
def test_imported_rows_are_lemurs_rows(imported: tuple[TestClient, list[dict[str, Any]]]) -> None:
    client, expected = imported
    got = all_rows(client)
    assert len(got) == len(expected)
    # LEMUR's ids, prm_ids, values and hyperparameters (unknown keys kept), in LEMUR's order
    assert sorted(r["id"] for r in got) == sorted(r["id"] for r in expected)
    by_id = {r["id"]: r for r in expected}
    for row in got:
        want = by_id[row["id"]]
        for key in ("task", "dataset", "metric", "nn", "epoch", "accuracy", "duration", "prm_id", "prm"):
            assert row[key] == want[key], (key, row, want)
        assert row["nn_code"] is None and row["seed"] is None and row["search_space"] == "lemur"
    assert [lemur_order(r) for r in got] == sorted(lemur_order(r) for r in expected)
    # transform_code is the source of Cellar's implementation of the named transform
    norm = next(r for r in got if r["prm"]["transform"] == "norm_64")
    assert "def transform(norm)" in norm["transform_code"] and norm["transform_id"]
    assert next(r for r in got if r["metric"] == "acc")["metric_code"]
    # codes=separate: the same rows, each text once in `codes`
    inline = client.get("/v1/data", params={"nn": "AlexNet"}).json()["data"]
    separate = client.get("/v1/data", params={"nn": "AlexNet", "codes": "separate"}).json()
    assert all(r["transform_code"] is None and r["metric_code"] is None for r in separate["data"])
    for plain, bare in zip(inline, separate["data"], strict=True):
        assert separate["codes"][bare["transform_id"]] == plain["transform_code"]
        assert separate["codes"][bare["metric_id"]] == plain["metric_code"]
        assert {**bare, "transform_code": None, "metric_code": None} == {**plain, "transform_code": None, "metric_code": None}


@needs_archive
def test_runs_are_stitched_across_epoch_files(imported: tuple[TestClient, list[dict[str, Any]]]) -> None:
    client, expected = imported
    got = all_rows(client, nn="AlexNet", dataset="cifar-10")
    runs: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in got:
        runs[row["run_id"]].append(row)
    for rows in runs.values():
        assert len({r["prm_id"] for r in rows}) == 1  # one hyperparameter set per run
        epochs = sorted(r["epoch"] for r in rows)
        assert epochs == list(range(epochs[0], epochs[0] + len(epochs)))  # each epoch once
        durations = [r["duration"] for r in sorted(rows, key=lambda r: r["epoch"]) if r["duration"] is not None]
        assert durations == sorted(durations)  # LEMUR's duration is cumulative within a run
    assert max(len(rows) for rows in runs.values()) > 1


@needs_archive
def test_filters_and_best_follow_lemur_with_the_metric_direction(
    imported: tuple[TestClient, list[dict[str, Any]]],
) -> None:
    client, expected = imported

    def best(rows: list[dict[str, Any]]) -> set[str]:
        groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            groups[lemur_order(row)].append(row)
        keep = set()
        for group in groups.values():
            # LEMUR keeps the maximum; Cellar the minimum where lower is better (ppl)
            pick = min if group[0]["metric"] == "ppl" else max
            top = pick(r["accuracy"] for r in group)
            keep |= {r["id"] for r in group if r["accuracy"] == top}
        return keep

    cifar = [r for r in expected if r["task"] == "img-classification" and r["dataset"] == "cifar-10"]
    got = all_rows(client, task="img-classification", dataset="cifar-10", only_best_accuracy=True)
    assert {r["id"] for r in got} == best(cifar) and len(got) == len(best(cifar))
    text = [r for r in expected if r["dataset"] == "wikitext"]
    got = all_rows(client, dataset="wikitext", only_best_accuracy=True)
    assert {r["metric"] for r in got} == {"acc", "ppl"}
    assert {r["id"] for r in got} == best(text)
    # lists of values, epochs and prefixes
    got = all_rows(client, nn=["LSTM", "RNN"], epoch=[1, 2])
    assert {r["id"] for r in got} == {r["id"] for r in expected if r["nn"] in ("LSTM", "RNN") and r["epoch"] in (1, 2)}
    got = all_rows(client, nn_prefixes=["ga-", "FCN"])
    assert {r["id"] for r in got} == {r["id"] for r in expected if r["nn"].startswith(("ga-", "FCN"))}
    assert all_rows(client, nn_prefixes=["ga_"]) == []  # "_" is a character, not LIKE's wildcard
    # one row per model: its best
    got = all_rows(client, unique_nn=True, dataset="cifar-10")
    assert sorted(r["nn"] for r in got) == sorted({r["nn"] for r in cifar})
    for row in got:
        assert row["accuracy"] == max(r["accuracy"] for r in cifar if r["nn"] == row["nn"])
    # max_rows cuts LEMUR's order
    got = client.get("/v1/data", params={"max_rows": 25}).json()
    assert got["count"] == 25 and got["next_offset"] is None
    assert [lemur_order(r) for r in got["data"]] == sorted(lemur_order(r) for r in expected)[:25]


@needs_archive
def test_a_second_import_adds_nothing_and_models_get_their_code(sample: Path, store: Store, tmp_path: Path) -> None:
    url = store.url.render_as_string(hide_password=False)
    first = import_cli(sample, url)
    models = tmp_path / "nn"
    models.mkdir()
    (models / "AlexNet.py").write_text("import torch\n\nclass Net(torch.nn.Module):\n    pass\n")
    second = import_cli(sample, url, "--models", str(models))
    assert first["runs_added"] > 0 and second["runs_added"] == 0 and second["epochs_added"] == 0
    assert second["epochs_present"] == first["epochs_added"] and second["models_with_code"] == 1
    with store.read() as session:
        assert session.scalar(select(func.count()).select_from(TrialEpoch)) == first["epochs_added"]
        assert session.scalar(select(func.count()).select_from(Trial)) == first["runs_added"]
    with TestClient(create_app(Settings(database_url=url, start_manager=False))) as client:
        row = client.get("/v1/data", params={"nn": "AlexNet", "max_rows": 1}).json()["data"][0]
    assert row["nn_code"].startswith("import torch") and row["nn_id"] == hashlib.md5(
        re.sub(r"\s", "", row["nn_code"]).encode()
    ).hexdigest()


def write_stat(root: Path, files: dict[str, Any]) -> Path:
    for name, content in files.items():
        path = root / "stat" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    return root / "stat"


GOOD = {"accuracy": 0.5, "batch": 16, "lr": 0.01, "transform": "norm_32", "uid": "u1", "duration": 10**9, "my_knob": [1, 2]}


def test_malformed_files_are_rejected_with_reasons_and_the_rest_imported(store: Store, tmp_path: Path) -> None:
    stat = write_stat(
        tmp_path,
        {
            "img-classification_cifar-10_acc_Good/1.json": [GOOD],
            "img-classification_cifar-10_acc_Good/2.json": [{**GOOD, "accuracy": 0.6, "duration": 2 * 10**9}],
            "img-classification_cifar-10_acc_Broken/1.json": "[{not json",
            "img-classification_cifar-10_acc_Dict/1.json": {"accuracy": 0.1},
            "img-classification_cifar-10_acc_NoAcc/1.json": [GOOD, {**GOOD, "accuracy": "high"}],
            "img-classification_cifar-10_acc_NoUid/1.json": [{"accuracy": 0.1}],
            "img-classification_cifar-10_acc_Good/last.json": [GOOD],
            "badname/1.json": [GOOD],
        },
    )
    report = import_cli(stat, store.url.render_as_string(hide_password=False))
    reasons = dict(report["rejected"])
    assert report["files"] == 8 and len(reasons) == 6
    assert "not valid JSON" in reasons["img-classification_cifar-10_acc_Broken/1.json"]
    assert "not a list" in reasons["img-classification_cifar-10_acc_Dict/1.json"]
    assert "record 1" in reasons["img-classification_cifar-10_acc_NoAcc/1.json"]
    assert "'uid'" in reasons["img-classification_cifar-10_acc_NoUid/1.json"]
    assert "<epoch>.json" in reasons["img-classification_cifar-10_acc_Good/last.json"]
    assert "<task>_<dataset>_<metric>_<nn>" in reasons["badname/1.json"]
    assert report["runs_added"] == 1 and report["epochs_added"] == 2
    with store.read() as session:
        trial = session.scalars(select(Trial)).one()
        assert trial.prm == {"batch": 16, "lr": 0.01, "transform": "norm_32", "my_knob": [1, 2]}
        assert trial.prm_id == "u1" and trial.epochs == 2 and trial.val_metric == 0.6
        assert session.scalars(select(Job)).one().search_space == "lemur"


def test_an_import_that_fails_half_way_writes_nothing(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stat = write_stat(
        tmp_path,
        {f"img-classification_{ds}_acc_Net{i}/1.json": [{**GOOD, "uid": f"u{i}"}] for i in range(3) for ds in ("a", "b")},
    )
    calls = {"n": 0}
    real = store_imports.signed_score

    def failing(metric: str, value: float | None) -> float | None:
        calls["n"] += 1
        if calls["n"] == 4:  # the first dataset's rows are written by now, in the same transaction
            raise ConnectionError("the database went away")
        return real(metric, value)

    monkeypatch.setattr(store_imports, "signed_score", failing)
    with pytest.raises(ConnectionError):
        lemur_import.import_lemur(store, stat)
    with store.read() as session:
        assert session.scalar(select(func.count()).select_from(Trial)) == 0
        assert session.scalar(select(func.count()).select_from(Job)) == 0
    monkeypatch.setattr(store_imports, "signed_score", real)
    assert lemur_import.import_lemur(store, stat).epochs_added == 6


def test_the_cli_names_what_is_wrong_with_the_path(store: Store, tmp_path: Path) -> None:
    url = store.url.render_as_string(hide_password=False)
    (tmp_path / "notes.txt").write_text("hello")
    result = CliRunner().invoke(cli, ["import-lemur", str(tmp_path / "notes.txt"), "--database", url])
    assert result.exit_code == 1 and "neither a folder nor a tar archive" in result.output
    result = CliRunner().invoke(cli, ["import-lemur", str(tmp_path), "--database", url])
    assert result.exit_code == 1 and "no <task>_<dataset>_<metric>_<nn>/<epoch>.json files" in result.output
