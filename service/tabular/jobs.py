"""A job body that names a results table (``"executor": {"table": NAME}``), checked against it.

At submission, not trial by trial: a job whose search space, dataset or training protocol is not
the table's would fail every trial (one lookup at a time, thousands of failed trials), so it is
refused with one 422 that names every difference and the value to set. What the body leaves out
takes the table's value: the search space's parameters, the training fields, ``budget.epochs``, and
for a table Cellar trained, the training seed and split. Torch-free: the API process runs it.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from search_spaces import SearchSpaceError, get_search_space

from ..errors import InvalidRequestError
from ..jobs.spec import JobCreate
from ..store import TabularTable

__all__ = ["fit_to_table"]

#: LEMUR's ``prm`` names of a table's protocol -> the job body's ``training`` fields
_PRM_FIELDS = {
    "lr": "lr",
    "momentum": "momentum",
    "weight_decay": "weight_decay",
    "batch": "batch_size",
    "optimizer": "optimizer",
    "nesterov": "nesterov",
    "scheduler": "scheduler",
    "transform": "transform",
}


def _space_problems(spec: JobCreate, table: TabularTable, params: dict[str, Any]) -> list[str]:
    if spec.search_space.kind != table.search_space:
        return [f"search_space.kind is {spec.search_space.kind!r}, the table holds {table.search_space!r}"]
    try:
        theirs = get_search_space(table.search_space, table.space_params).params_dict()
        ours = get_search_space(spec.search_space.kind, params).params_dict()
    except (SearchSpaceError, ValidationError) as error:
        return [f"search_space.params: {error}"]
    problems = []
    for key, value in theirs.items():
        mine = ours.get(key)
        if key == "ops" and isinstance(value, list) and isinstance(mine, list):
            extra = [op for op in mine if op not in value]
            if extra:  # a subset of the table's ops only narrows what is sampled
                problems.append(f"search_space.params.ops has {extra}, which the table lacks (it holds {value})")
        elif mine != value:
            problems.append(f"search_space.params.{key} is {mine!r}, the table's is {value!r}")
    return problems


def fit_to_table(spec: JobCreate, table: TabularTable) -> JobCreate:
    """``spec`` with what it leaves out taken from ``table``; an ``InvalidRequestError`` (422) that
    names every difference when the job asks for something the table does not hold."""
    body = spec.model_dump(mode="json")
    # space parameters the body leaves out are the table's (a subset of its ops stays the job's)
    given = {k: v for k, v in spec.search_space.params.items() if k in spec.search_space._given}
    params = body["search_space"]["params"] = {**table.space_params, **given}
    problems = _space_problems(spec, table, params)
    if spec.dataset != table.dataset:
        problems.append(f"dataset is {spec.dataset!r}, the table was trained on {table.dataset!r}")
    given_training = spec.training._given
    training, budget = body["training"], body["budget"]
    if "epochs" in spec.budget.model_fields_set and spec.budget.epochs != table.epochs:
        problems.append(f"budget.epochs is {spec.budget.epochs}, the table recorded {table.epochs}")
    budget["epochs"] = table.epochs
    prm: dict[str, Any] = dict((table.training or {}).get("prm") or {})
    for key, name in _PRM_FIELDS.items():
        if key not in prm:
            continue
        if name in given_training and training[name] != prm[key]:
            problems.append(f"training.{name} is {training[name]!r}, the table's is {prm[key]!r}")
        training[name] = prm[key]
    if not (table.source or {}).get("package"):  # a table Cellar trained: one seed, one split
        if "seed" in given_training and training["seed"] != table.seed:
            problems.append(f"training.seed is {training['seed']}, the table's cells were trained with seed {table.seed}")
        training["seed"] = table.seed
        fractions = ((table.training or {}).get("split") or {}).get("fractions")
        if fractions is not None:
            if "split" in given_training and list(training["split"]) != list(fractions):
                problems.append(f"training.split is {list(training['split'])}, the table's is {list(fractions)}")
            training["split"] = list(fractions)
    if table.final_only and spec.strategy.pruner != "none":
        problems.append(
            f"strategy.pruner is {spec.strategy.pruner!r}, but the table records only epoch {table.epochs} "
            "(no curve to prune on); use \"none\""
        )
    held = set(((table.source or {}).get("proxies")) or [])
    screen = [spec.strategy.screen.proxy] if spec.strategy.screen is not None else []
    missing = [name for name in dict.fromkeys([*spec.proxies, *screen]) if name not in held]
    if missing:
        problems.append(
            f"the job asks for zero-cost proxies {missing} (objectives, constraints.min_proxies, proxies or "
            f"strategy.screen), "
            f"which the table does not hold" + (f" (it holds {sorted(held)})" if held else "")
            + f"; score them with `cellar table score {table.name} --proxies {','.join(missing)}`"
        )
    if problems:
        raise InvalidRequestError(
            f"the job does not fit results table {table.name!r}: " + "; ".join(problems)
            + ". Leave a field out to take the table's value"
        )
    return JobCreate.model_validate(body)
