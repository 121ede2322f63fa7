"""The ``SearchSpace`` interface every kind of candidate implements."""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, get_origin

from pydantic import BaseModel, ConfigDict, model_validator

from .errors import IncompatibleDatasetError

if TYPE_CHECKING:  # optuna is only needed by callers that sample
    import optuna

    from .datasets import DatasetInfo

__all__ = ["SearchSpace", "SpaceParams", "nn_id"]


def nn_id(nn_code: str) -> str:
    """LEMUR's model identity: md5 of the source with all whitespace removed."""
    return hashlib.md5("".join(nn_code.split()).encode()).hexdigest()  # split(): the whitespace of \s


class SpaceParams(BaseModel):
    """Base of a space's parameter model: frozen, unknown keys are an error, and types are strict
    (``"8"`` is not a width, ``1`` is not ``true``); a JSON array stands for a tuple field."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    @model_validator(mode="before")
    @classmethod
    def _arrays_as_tuples(cls, data: Any) -> Any:
        # strict mode takes only tuples for tuple fields, and JSON has arrays
        if not isinstance(data, Mapping):
            return data
        fields = cls.model_fields
        return {
            key: tuple(value) if isinstance(value, list) and key in fields and get_origin(fields[key].annotation) is tuple
            else value
            for key, value in data.items()
        }


class SearchSpace(ABC):
    """A family of architectures Optuna can sample from and Cellar can train.

    An instance is bound to the space's parameters (e.g. channel width). Everything here is
    torch-free: models are built by the workers from ``nn_code``, the same source that is stored.
    """

    kind: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type[SpaceParams]]
    #: LEMUR task names this space builds models for
    tasks: ClassVar[frozenset[str]]

    def __init__(self, params: Mapping[str, Any] | SpaceParams | None = None, *, task: str | None = None) -> None:
        if isinstance(params, SpaceParams):
            self.params = params
        else:
            self.params = self.Params.model_validate(dict(params or {}))
        #: the task the architectures are for, when known: a space may skip choices it makes moot
        self.task = task

    @classmethod
    def validate_params(cls, params: Mapping[str, Any] | None) -> SpaceParams:
        """Validated parameters; raises pydantic's ``ValidationError`` naming the bad field."""
        return cls.Params.model_validate(dict(params or {}))

    @classmethod
    def schema(cls) -> dict[str, Any]:
        return {
            "kind": cls.kind,
            "description": cls.description,
            "tasks": sorted(cls.tasks),
            "params": cls.Params.model_json_schema(),
        }

    def params_dict(self) -> dict[str, Any]:
        return self.params.model_dump(mode="json")

    def identity_params(self) -> dict[str, Any]:
        """The parameters that shape the network an encoding builds (what identity hashes include);
        a space leaves out those that only restrict what is sampled."""
        return self.params_dict()

    def params_key(self) -> str:
        """A stable string of the parameters, for identity hashes."""
        return json.dumps(self.params_dict(), sort_keys=True, separators=(",", ":"))

    def check_dataset(self, info: DatasetInfo) -> None:
        if info.task not in self.tasks:
            raise IncompatibleDatasetError(
                f"search space {self.kind!r} builds models for {', '.join(sorted(self.tasks))}, "
                f"but dataset {info.name!r} is a {info.task} task"
            )

    @abstractmethod
    def sample(self, trial: optuna.Trial) -> str:
        """Ask ``trial`` for every choice and return the canonical encoding."""

    @abstractmethod
    def canonical(self, encoding: str) -> str:
        """The canonical form of ``encoding``; ``InvalidArchitectureError`` if it is not one."""

    @abstractmethod
    def dedup_key(self, encoding: str) -> str:
        """Equal for encodings that compute the same function (isomorphic architectures)."""

    def representative(self, encoding: str) -> str:
        """The member of ``encoding``'s class of equivalent architectures under which a results table
        of this space holds the class (a benchmark that trained one per class); default itself."""
        return self.canonical(encoding)

    def grid(self) -> dict[str, list[Any]] | None:
        """Every choice ``sample`` makes and its values, when the space is a plain product of
        categorical choices (what a grid search enumerates); None for conditional spaces."""
        return None

    def hyperparameters(self, encoding: str) -> dict[str, Any]:
        """Training hyperparameters the architecture brings (merged into LEMUR's ``prm``)."""
        return {}

    def drawing(self, encoding: str) -> dict[str, Any] | None:
        """What the dashboard draws for ``encoding``, as JSON; None where the space has no picture.

        Two shapes: ``{"kind": "cell", "nodes": N, "edges": [{"from": j, "to": i, "op": ...}]}``,
        a DAG with an op on each edge, and ``{"kind": "stack", "layers": [{"label", "detail",
        "width"}], "notes": [...]}``, layers from input to output (``width`` null for the output
        layer, as wide as the task's output)."""
        return None

    @abstractmethod
    def nn_code(self, encoding: str) -> str:
        """Standalone PyTorch source under LEMUR's contract, ``Net(in_shape, out_shape, prm, device)``."""

    def nn_name(self, encoding: str) -> str:
        """LEMUR-style generated name: ``<kind>-<md5 of the code without whitespace>``."""
        return f"{self.kind}-{nn_id(self.nn_code(encoding))}"

    @abstractmethod
    def decode_params(self, params: Mapping[str, Any]) -> str:
        """The encoding from a sampled Optuna parameter dict (the inverse of ``sample``)."""

    @abstractmethod
    def encode_params(self, encoding: str) -> dict[str, Any]:
        """The Optuna parameters that ``sample`` would have drawn for ``encoding``."""
