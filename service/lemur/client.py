"""LEMUR's Python API over a Cellar server, with the signatures of ``ab.nn.api``: ``check_nn()``
here, ``data()``, ``data_withnonnullvalue()``, ``nn_stat_data()`` and ``JoinConf`` from
``service.lemur.query``.

Code written against the LEMUR neural network dataset (``from ab.nn.api import data, check_nn``)
switches to ``from service.lemur import data, check_nn``: the same arguments, read from and
trained on the server at ``CELLAR_URL``.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

from ..client import CellarClient
from .query import JoinConf, data, data_withnonnullvalue, nn_stat_data

__all__ = ["JoinConf", "ModelCheckError", "check_nn", "data", "data_withnonnullvalue", "nn_stat_data"]


class ModelCheckError(RuntimeError):
    """The submitted model failed (LEMUR's ``check_nn`` raises too). ``kind`` is the failed stage:
    ``syntax``, ``contract``, ``shape``, ``nan_loss``, ``oom``, ``timeout``, ``runtime``, ``accuracy`` or
    ``transform`` (a transform file of ``transform_dir``);
    ``result`` the server's whole answer (``failure`` holds line, traceback or shapes)."""

    def __init__(self, result: dict[str, Any]) -> None:
        failure = result.get("failure") or {}
        self.kind: str = failure.get("kind", "runtime")
        self.result = result
        super().__init__(f"{self.kind}: {failure.get('message', 'the model failed')}")


def _write_stat(save_path: str | Path, result: dict[str, Any]) -> None:
    """The result's epochs as LEMUR's ``check_nn`` writes them: ``<save_path>/<epoch>.json``, each a
    list of records (the ``prm`` with ``uid``, ``duration``, ``duration_seconds``, ``accuracy``,
    ``train_stat``, and ``task``, ``dataset``, ``metric``, ``model``), added to what the file holds
    and sorted by accuracy, best first (nn-gpt's evaluator reads ``1.json``)."""
    folder = Path(save_path)
    folder.mkdir(parents=True, exist_ok=True)
    for epoch in result["epochs"]:
        record = {
            **result["prm"],
            "uid": result["prm_id"],
            "duration": epoch["duration"],
            "duration_seconds": round(epoch["duration"] / 1e9, 2),
            "accuracy": epoch["accuracy"],
            # LEMUR's "test" loss is measured on what Cellar calls the validation split
            "train_stat": {
                "train_loss": epoch["loss"], "test_loss": epoch["val_loss"], "epoch_max": len(result["epochs"]),
                **({"train_accuracy": epoch["train_accuracy"]} if epoch.get("train_accuracy") is not None else {}),
            },
            "task": result["task"],
            "dataset": result["dataset"],
            "metric": result["metric"],
            "model": result["name"],
        }
        path = folder / f"{epoch['epoch']}.json"
        records = json.loads(path.read_text()) if path.exists() else []
        if isinstance(records, dict):
            records = [records]
        records = sorted([*records, record], key=lambda r: r["accuracy"] if r.get("accuracy") is not None else -1, reverse=True)
        path.write_text(json.dumps(records, indent=4))


def _transform_file(transform_dir: str | Path, prm: dict[str, Any]) -> str | None:
    """The source of ``<transform_dir>/<prm['transform']>.py`` when LEMUR's ``load_dataset`` would run
    it: the file exists and defines ``transform`` (read from its text here; it is executed only in the
    sandbox). None: LEMUR falls back to its transform of that name, and Cellar to its own. A file that
    does not parse is sent as it is: the sandbox reports it (failure kind ``transform``), as LEMUR raises."""
    name = prm.get("transform")
    if not isinstance(name, str) or not name:
        raise ValueError("transform_dir needs prm['transform']: the name of the file <transform_dir>/<name>.py")
    path = Path(transform_dir) / f"{name}.py"
    if not path.is_file():
        return None
    code = path.read_text(encoding="utf-8")
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code
    defined = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defined.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            defined.update(t.id for t in targets if isinstance(t, ast.Name))
    return code if "transform" in defined else None


def check_nn(
    nn_code: str,
    task: str,
    dataset: str,
    metric: str,
    prm: dict[str, Any],
    save_to_db: bool = True,
    prefix: str | None = None,
    save_path: str | Path | None = None,
    export_onnx: bool = False,
    epoch_limit_minutes: float = 30,
    transform_dir: str | Path | None = None,
    *,
    seed: int = 0,
    accuracy_gate: bool = True,
    url: str | None = None,
    api_key: str | None = None,
) -> tuple[str, float, float, float]:
    """Train ``nn_code`` on the Cellar server and return LEMUR's ``(name, accuracy,
    accuracy_to_time, code_quality)``; a model that fails raises ``ModelCheckError``.

    ``prm`` holds ``batch``, ``epoch`` (epochs), ``transform`` and the model's own values (``lr``,
    ``momentum``, ...). With ``save_to_db``, ``save_path`` also writes the statistics there as
    LEMUR's ``check_nn`` does: ``<save_path>/<epoch>.json``. ``transform_dir``, as LEMUR's: where
    ``<transform_dir>/<prm['transform']>.py`` exists and defines ``transform``, its source is sent and
    runs in the server's sandbox in place of the transform of that name (``transform(norm)`` returning
    the pipeline for one PIL image); otherwise the name is Cellar's. ``export_onnx`` (weights) is a
    LEMUR feature Cellar does not have: passing it is an error.
    """
    if export_onnx:
        raise ValueError("export_onnx is not supported: Cellar keeps no weights (train the code yourself to export it)")
    transform_code = _transform_file(transform_dir, prm) if transform_dir is not None else None
    body = {
        "nn_code": nn_code,
        "task": task,
        "dataset": dataset,
        "metric": metric,
        "prm": dict(prm),
        "save_to_db": save_to_db,
        "prefix": prefix,
        "epoch_limit_minutes": epoch_limit_minutes,
        "accuracy_gate": accuracy_gate,
        "seed": seed,
    }
    if transform_code is not None:
        body["transform_code"] = transform_code
    with CellarClient(url, api_key) as client:
        result = client.submit_model(body)
    if result["status"] != "ok":
        raise ModelCheckError(result)
    if save_path is not None and save_to_db:  # LEMUR writes its files only when it saves
        _write_stat(save_path, result)
    return result["name"], result["accuracy"], result["accuracy_to_time"], result["code_quality"]
