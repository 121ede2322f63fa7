"""nn-gpt 1.0.6's calls into LEMUR, replayed against Cellar's ``service.lemur``.

nn-gpt (the LLM pipeline of the LEMUR project) imports ``ab.nn.api`` as ``lemur`` and
``JoinConf`` from ``ab.nn.util.db.Query``; code moved to Cellar imports both from
``service.lemur``. Each call below is written out with the argument names nn-gpt passes and the
values its prompt configurations give them, and the answer is used the way nn-gpt uses it:

- ``ab/gpt/util/prompt/NNGenPrompt.py``, ``NNGenPrompt.get_raw_dataset``: ``lemur.data(
  only_best_accuracy=..., task=key_dict.get('task'), nn_prefixes=tuple(...), max_rows=
  n_training_prompts, sql=JoinConf(num_joint_nns=..., same_columns=tuple(key_dict['keep_same']),
  diff_columns=tuple(key_dict['no_repeat']), enhance_nn=key_dict['improve']))``, with the values of
  ``conf/prompt/train/NN_gen.json`` (improve a model: same epoch, metric, dataset and task, another
  ``nn``, a better one) and ``NN_dataset_compare_code_based.json`` (one model on two datasets),
  then every row's ``input_list`` columns formatted into the prompt.
- ``ab/gpt/util/prompt/NNGenPromptCurriculum.py``, ``_build_sql_conf`` and ``get_raw_dataset``:
  ``lemur.data(only_best_accuracy=..., task=cfg['task'], dataset=cfg['dataset'],
  metric=cfg['metric'], nn_prefixes=tuple(...), max_rows=n_training_prompts * k * 10,
  sql=JoinConf(num_joint_nns=k, same_columns=(), diff_columns=(), enhance_nn=None, task=...,
  dataset=..., metric=..., similarity_mode="anchor_band_db_minhash", similarity_band=...,
  anchor_nn=None))`` (``Curriculum_L2_medium_k3_train.json`` and ``..._L1_high_k2_...``), then
  the "tall" packing: rows grouped by ``anchor_nn``, ``k`` at a time, each with ``nn_code``, a
  ``prm`` dict and ``transform_code``.
- ``ab/gpt/util/Eval.py``, ``Eval.evaluate``: ``data.cache_clear()``, ``data()`` and its
  ``nn_id`` column (is the code new?), then ``api.check_nn(code, task, dataset, metric, prm,
  save_to_db, prefix, save_path)`` positionally; ``ab/gpt/NNEval.py`` passes
  ``save_path=str(model_dir_path)`` and ``_validate_full_stat_artifact`` then reads
  ``<model_dir>/1.json``; ``ab/gpt/util/nneval_worker_pool.py``, ``_extract_accuracy``, takes the
  accuracy from the returned tuple; ``ab/gpt/iterative_finetune.py`` reads
  ``data[0]["accuracy"]`` from ``1.json``.

nn-gpt's ``lemur_enrichment.patch_join_nn_query`` replaces LEMUR's pair query (it needs
``dataset_2``); that patch reaches into LEMUR's internals and has nothing to patch here: Cellar's
pair rows carry the partner's ``dataset_2`` (and ``task_2``) themselves.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from service.lemur import JoinConf, check_nn, data
from tests.search_spaces.lemur_models import MLP_CODE
from tests.service.lemur import test_joinconf_compat as compat
from tests.service.server import KEY, Server

MODELS = compat.MODELS
#: the same records as the compatibility test (a module-scoped fixture: extracted once here)
sample = compat.sample
#: ``input_list`` values of nn-gpt's NN_gen.json and NN_dataset_compare_code_based.json
NN_GEN_INPUTS = ("nn_code", "accuracy", "epoch", "dataset", "task", "metric", "metric_code", "transform_code", "prm",
                 "accuracy_2", "epoch_2", "nn_code_2", "transform_code_2", "prm_2")  # fmt: skip
COMPARE_INPUTS = ("nn_code", "epoch", "dataset", "dataset_2")


@pytest.fixture(scope="module")
def server(sample: tuple[Path, Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    stat, models, _ = sample
    workdir = tmp_path_factory.mktemp("nngpt")
    server = Server(
        workdir, f"sqlite:///{workdir / 'cellar.db'}", CELLAR_START_MANAGER="false",
        CELLAR_MODEL_MEMORY_MB="512", CELLAR_MODEL_SETUP_TIMEOUT_S="120",
    )  # fmt: skip
    assert server.cellar("migrate").returncode == 0
    imported = server.cellar("import-lemur", str(stat), "--models", str(models))
    assert imported.returncode == 0, imported.stderr
    server.start()
    yield server
    server.stop()


@pytest.fixture
def lemur_env(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """nn-gpt passes no url: the client reads CELLAR_URL and CELLAR_API_KEY."""
    monkeypatch.setenv("CELLAR_URL", server.url)
    monkeypatch.setenv("CELLAR_API_KEY", KEY)


def prompt_parameters(frame: pd.DataFrame, inputs: tuple[str, ...]) -> list[dict[str, object]]:
    """What NNGenPrompt does with each row: ``row[db_column]`` for each ``input_list`` value."""
    out = []
    for _, row in frame.iterrows():
        missing = [column for column in inputs if column not in row]
        assert not missing, f"nn-gpt would fill these with 'Missing: ...': {missing}"
        out.append({column: row[column] for column in inputs})
    return out


@pytest.mark.usefixtures("lemur_env")
def test_nngen_prompt_pairs_a_model_with_a_better_one() -> None:
    # NN_gen.json: task null, num_joint_nns 2, keep_same [epoch, metric, dataset, task],
    # no_repeat [nn], improve true, nn_prefixes []
    frame = data(
        only_best_accuracy=True,
        task=None,
        nn_prefixes=tuple([]),
        max_rows=200,
        sql=JoinConf(
            num_joint_nns=2,
            same_columns=tuple(["epoch", "metric", "dataset", "task"]),
            diff_columns=tuple(["nn"]),
            enhance_nn=True,
        ),
    )
    assert 0 < len(frame) <= 200
    rows = prompt_parameters(frame, NN_GEN_INPUTS)
    paired = [r for r in rows if isinstance(r["nn_code_2"], str)]
    assert paired, "no row found a better model to learn from"
    for row in paired:
        assert row["accuracy_2"] > row["accuracy"] and row["epoch_2"] == row["epoch"]
        assert "class Net" in row["nn_code"] and "class Net" in row["nn_code_2"]
        assert isinstance(row["prm_2"], dict) and row["prm_2"].get("transform")
        assert isinstance(row["transform_code_2"], str) and row["transform_code_2"]
        # the prompt template is str.format over these parameters
        "{nn_code}\n{accuracy}->{accuracy_2}\n{prm_2}\n{transform_code_2}".format(**row)


@pytest.mark.usefixtures("lemur_env")
def test_dataset_comparison_prompt_pairs_one_model_on_two_datasets() -> None:
    # NN_dataset_compare_code_based.json: task img-classification, num_joint_nns 2,
    # keep_same [epoch, metric, task, nn], no_repeat [dataset], improve false
    frame = data(
        only_best_accuracy=False,
        task="img-classification",
        nn_prefixes=tuple([]),
        max_rows=100,
        sql=JoinConf(
            num_joint_nns=2,
            same_columns=tuple(["epoch", "metric", "task", "nn"]),
            diff_columns=tuple(["dataset"]),
            enhance_nn=False,
        ),
    )
    rows = prompt_parameters(frame, COMPARE_INPUTS)
    paired = frame[frame["matched_id"].notna()]
    assert len(paired) > 0 and len(rows) == 100
    assert (paired["dataset_2"] != paired["dataset"]).all() and (paired["nn_2"] == paired["nn"]).all()
    assert set(paired["dataset"]) | set(paired["dataset_2"]) == {"cifar-10", "mnist"}


@pytest.mark.usefixtures("lemur_env")
@pytest.mark.parametrize(("band", "k"), [("medium", 3), ("high", 2)])
def test_curriculum_prompt_gets_anchor_bands_it_can_pack(band: str, k: int) -> None:
    # Curriculum_L2_medium_k3_train.json / Curriculum_L1_high_k2_train.json: cifar-10, acc,
    # anchor_strategy auto (anchor_nn None), improve absent (None), keep_same/no_repeat absent
    cfg = {"task": "img-classification", "dataset": "cifar-10", "metric": "acc", "num_joint_nns": k,
           "nn_prefixes": [], "similarity_mode": "anchor_band_db_minhash", "similarity_band": band}  # fmt: skip
    n_training_prompts = 5
    sql_conf = JoinConf(
        num_joint_nns=k,
        same_columns=tuple(cfg.get("keep_same") or ()),
        diff_columns=tuple(cfg.get("no_repeat") or ()),
        enhance_nn=cfg.get("improve"),
        task=cfg.get("task"),
        dataset=cfg.get("dataset"),
        metric=cfg.get("metric"),
        similarity_mode=cfg.get("similarity_mode", "none"),
        similarity_band=cfg.get("similarity_band"),
        anchor_nn=None,
    )
    frame = data(
        only_best_accuracy=False,
        task=cfg.get("task"),
        dataset=cfg.get("dataset"),
        metric=cfg.get("metric"),
        nn_prefixes=tuple(cfg.get("nn_prefixes") or ()),
        max_rows=n_training_prompts * k * 10,
        sql=sql_conf,
    )
    assert "anchor_nn" in frame.columns  # the tall mode raises without it
    if band == "high":
        # the only "high" pair here is two ShuffleNets: one neighbour each, fewer than k=2, so the
        # anchor comes from a lower band, and (as in LEMUR) no model of that anchor is in "high"
        assert frame.empty
        return
    assert len(frame) >= k and frame["anchor_nn"].nunique() == 1
    assert set(frame["nn"]) | set(frame["anchor_nn"]) <= set(MODELS[:4])  # AlexNet relatives
    frame = frame.sort_values(["anchor_nn", "accuracy", "anchor_jaccard", "nn"], ascending=[True, False, False, True])
    for _, group in frame.groupby("anchor_nn"):
        ordered = group.sort_values("anchor_jaccard", ascending=False).reset_index(drop=True)
        for start in range(0, len(ordered) // k * k, k):
            for _, row in ordered.iloc[start : start + k].iterrows():
                # _pack_k_models' checks
                assert isinstance(row["nn_code"], str) and row["nn_code"].strip()
                assert isinstance(row["prm"], dict)
                assert isinstance(row["transform_code"], str) and row["transform_code"].strip()
                assert 0.85 <= row["anchor_jaccard"] < 0.95
                json.dumps(row["prm"], sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@pytest.mark.usefixtures("lemur_env")
def test_evaluator_checks_new_code_and_reads_1_json(tmp_path: Path) -> None:
    # Eval.evaluate: is the code's checksum (LEMUR's uuid4: md5 of the text without whitespace)
    # among the known nn_ids?
    new_checksum = hashlib.md5(re.sub(r"\s", "", MLP_CODE).encode()).hexdigest()
    data.cache_clear()
    df = data()
    ids_list = df["nn_id"].unique().tolist() if "nn_id" in df.columns else []
    assert len(ids_list) == len(MODELS) and new_checksum not in ids_list
    # NNEval's request: save_to_db, prefix, save_path=str(model_dir_path); prm without "epoch"
    model_dir_path = tmp_path / "gen_0"
    model_dir_path.mkdir()
    prm = {"lr": 0.05, "batch": 32, "dropout": 0.1, "momentum": 0.9, "transform": "norm"}
    eval_results = check_nn(MLP_CODE, "img-classification", "digits", "acc", prm, True, "gen", str(model_dir_path))
    # nneval_worker_pool._extract_accuracy: a tuple's first two are the checksum (name) and accuracy
    assert isinstance(eval_results, tuple) and len(eval_results) == 4
    name, accuracy = str(eval_results[0]), float(eval_results[1])
    assert name.startswith("gen-") and 0.5 < accuracy <= 1.0
    # NNEval._validate_full_stat_artifact: 1.json is LEMUR's full record, not a summary
    payload = json.loads((model_dir_path / "1.json").read_text(encoding="utf-8"))
    rows = payload if isinstance(payload, list) else [payload]
    assert any(isinstance(row, dict) and {"uid", "transform", "duration", "accuracy"} <= set(row) for row in rows)
    # iterative_finetune's fallback: data[0].get("accuracy", data[0].get("acc"))
    assert rows[0].get("accuracy", rows[0].get("acc")) == accuracy
    # the next Eval.evaluate sees the model: its checksum is now a known nn_id
    data.cache_clear()
    assert new_checksum in data()["nn_id"].unique().tolist()
