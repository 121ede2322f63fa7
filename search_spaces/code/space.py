"""``code``: a job searches the hyperparameters of one model file under LEMUR's contract.

The file is checked without running it (the API process never executes model code): it must
parse, define ``class Net`` with ``train_setup`` and ``learn``, and a ``supported_hyperparameters()``
that returns a literal collection of names. Optuna then samples, as LEMUR's trainer does, each
supported hyperparameter: ``lr`` log-uniform in [1e-5, 1], ``momentum`` in [0, 1], ``dropout`` in
[0, 0.5], any other in [0, 1] (the model maps it to its own range); and ``batch`` as a power of two.
An architecture's encoding is the sampled values as JSON; its ``nn_code`` is the file itself.
"""

from __future__ import annotations

import ast
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from .._base import SearchSpace, SpaceParams, nn_id
from ..datasets import TASKS
from ..errors import InvalidArchitectureError

if TYPE_CHECKING:
    import optuna

__all__ = ["CodeSearchSpace", "CodeSpaceParams", "ModelCode", "inspect_model_code"]

#: LEMUR's ranges; other names are sampled in [0, 1]
_RANGES: dict[str, tuple[float, float, bool]] = {
    "lr": (1e-5, 1.0, True),
    "momentum": (0.0, 1.0, False),
    "dropout": (0.0, 0.5, False),
}
#: names the trainer sets, never sampled as model hyperparameters
_RESERVED = {"batch", "epoch", "transform"}


@dataclass(frozen=True)
class ModelCode:
    """What a static reading of model code found."""

    hyperparameters: tuple[str, ...]
    net_methods: tuple[str, ...]


def inspect_model_code(code: str) -> ModelCode:
    """Check LEMUR's contract without executing ``code``; ``ValueError`` says what is missing."""
    try:
        tree = ast.parse(code)
    except SyntaxError as error:
        raise ValueError(f"the model code does not parse: line {error.lineno}: {error.msg}") from None
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    if "Net" not in classes:
        raise ValueError("the model code defines no class Net(in_shape, out_shape, prm, device) at module level")
    methods = set()
    for cls in classes.values():  # Net may inherit its training methods from a class of the file
        methods |= {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
    missing = [m for m in ("__init__", "train_setup", "learn", "forward") if m not in methods]
    if missing:
        raise ValueError(f"class Net lacks {', '.join(missing)} (LEMUR's contract: __init__, train_setup, learn, forward)")
    init = next((n for n in classes["Net"].body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
    if init is not None and len(init.args.args) != 5:
        names = ", ".join(a.arg for a in init.args.args)
        raise ValueError(f"Net.__init__({names}) must take (self, in_shape, out_shape, prm, device)")
    function = functions.get("supported_hyperparameters")
    if function is None:
        raise ValueError("the model code defines no supported_hyperparameters() at module level")
    returns = [n for n in ast.walk(function) if isinstance(n, ast.Return) and n.value is not None]
    try:
        names = ast.literal_eval(returns[0].value) if len(returns) == 1 else None  # type: ignore[arg-type]
    except ValueError:
        names = None
    if not isinstance(names, (set, list, tuple, frozenset)) or not all(isinstance(n, str) for n in names):
        raise ValueError(
            "supported_hyperparameters() must return a literal collection of names, e.g. return {'lr', 'momentum'}"
        )
    return ModelCode(hyperparameters=tuple(sorted(set(names) - _RESERVED)), net_methods=tuple(sorted(methods)))


class CodeSpaceParams(SpaceParams):
    nn_code: str = Field(min_length=1, max_length=500_000, description="model source under LEMUR's contract")
    prefix: str | None = Field(
        None, max_length=50, pattern=r"^[A-Za-z0-9_.-]+$", description="model name prefix: <prefix>-<md5 of the code>; letters, digits, _ . -"
    )
    min_batch_exponent: int = Field(4, ge=0, le=16, description="smallest batch size, as a power of two")
    max_batch_exponent: int = Field(8, ge=0, le=16, description="largest batch size, as a power of two")

    @field_validator("nn_code")
    @classmethod
    def _contract(cls, code: str) -> str:
        inspect_model_code(code)
        return code

    @field_validator("max_batch_exponent")
    @classmethod
    def _batch_range(cls, high: int, info: Any) -> int:
        low = info.data.get("min_batch_exponent")
        if low is not None and high < low:
            raise ValueError(f"max_batch_exponent {high} is below min_batch_exponent {low}")
        return high


def _format(value: float) -> float:
    """Round-trip-stable float for the canonical JSON."""
    return float(repr(float(value)))


class CodeSearchSpace(SearchSpace):
    kind = "code"
    description = "hyperparameters of model code under LEMUR's contract (Net, supported_hyperparameters, train_setup, learn)"
    Params = CodeSpaceParams
    tasks = frozenset(TASKS)

    params: CodeSpaceParams

    def __init__(self, params: Mapping[str, Any] | SpaceParams | None = None, *, task: str | None = None) -> None:
        super().__init__(params, task=task)
        self.model = inspect_model_code(self.params.nn_code)

    def _batches(self) -> list[int]:
        return [2**k for k in range(self.params.min_batch_exponent, self.params.max_batch_exponent + 1)]

    def sample(self, trial: optuna.Trial) -> str:
        values: dict[str, Any] = {}
        for name in self.model.hyperparameters:
            low, high, log = _RANGES.get(name, (0.0, 1.0, False))
            values[name] = trial.suggest_float(name, low, high, log=log)
        values["batch"] = trial.suggest_categorical("batch", self._batches())
        return self._encode(values)

    def _encode(self, values: Mapping[str, Any]) -> str:
        return json.dumps({k: values[k] for k in sorted(values)}, separators=(",", ":"))

    def decode_params(self, params: Mapping[str, Any]) -> str:
        return self.canonical(self._encode(params))

    def encode_params(self, encoding: str) -> dict[str, Any]:
        return json.loads(self.canonical(encoding))

    def hyperparameters(self, encoding: str) -> dict[str, Any]:
        return self.encode_params(encoding)

    def canonical(self, encoding: str) -> str:
        try:
            values = json.loads(encoding)
        except (TypeError, json.JSONDecodeError):
            raise InvalidArchitectureError(f"a code-space encoding is a JSON object of hyperparameters, got {encoding!r}") from None
        if not isinstance(values, dict):
            raise InvalidArchitectureError(f"a code-space encoding is a JSON object, got {encoding!r}")
        expected = {*self.model.hyperparameters, "batch"}
        if set(values) != expected:
            raise InvalidArchitectureError(
                f"hyperparameters {sorted(values)} do not match the model's {sorted(expected)}"
            )
        clean: dict[str, Any] = {}
        for name in self.model.hyperparameters:
            low, high, _ = _RANGES.get(name, (0.0, 1.0, False))
            value = values[name]
            if not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= high:
                raise InvalidArchitectureError(f"{name} must be a number in [{low}, {high}], got {value!r}")
            clean[name] = _format(value)
        if values["batch"] not in self._batches():
            raise InvalidArchitectureError(f"batch must be one of {self._batches()}, got {values['batch']!r}")
        clean["batch"] = int(values["batch"])
        return self._encode(clean)

    def dedup_key(self, encoding: str) -> str:
        return self.canonical(encoding)

    def nn_code(self, encoding: str) -> str:
        return self.params.nn_code

    def nn_name(self, encoding: str) -> str:
        """LEMUR's names for submitted code: ``<prefix>-<md5>``, or the md5 alone without a prefix."""
        digest = nn_id(self.params.nn_code)
        return f"{self.params.prefix}-{digest}" if self.params.prefix else digest
