"""``gnn``: GraphNAS / Auto-GNN style search over message-passing networks."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field, field_validator, model_validator

from .._base import SearchSpace, SpaceParams
from .._codegen import assemble
from ..errors import InvalidArchitectureError
from .arch import (
    AGGREGATING_CONVS,
    AGGREGATIONS,
    CONVS,
    MAX_LAYERS,
    READOUTS,
    SKIP_MODES,
    Activation,
    Aggregation,
    ConvName,
    GnnArch,
    Readout,
    SkipMode,
)

if TYPE_CHECKING:
    import optuna

__all__ = ["GnnSearchSpace", "GnnSpaceParams"]

HiddenSize = Annotated[int, Field(ge=1, le=1024)]
Heads = Annotated[int, Field(ge=1, le=16)]
Dropout = Annotated[float, Field(ge=0.0, lt=1.0)]


class GnnSpaceParams(SpaceParams):
    """The choices the space offers. Defaults follow GraphNAS, with CPU-sized widths and heads."""

    min_layers: int = Field(1, ge=1, le=MAX_LAYERS, description="fewest message-passing layers")
    max_layers: int = Field(4, ge=1, le=MAX_LAYERS, description="most message-passing layers")
    convs: tuple[ConvName, ...] = Field(CONVS, min_length=1, description="convolutions, per layer")
    hidden_sizes: tuple[HiddenSize, ...] = Field(
        (8, 16, 32, 64), min_length=1, description="output features per layer (per head for gat)"
    )
    heads: tuple[Heads, ...] = Field((1, 2, 4), min_length=1, description="attention heads of a gat layer")
    aggregations: tuple[Aggregation, ...] = Field(
        AGGREGATIONS, min_length=1, description="neighbourhood aggregation of sage and graphconv layers"
    )
    activations: tuple[Activation, ...] = Field(
        ("relu", "elu", "leaky_relu", "tanh", "sigmoid", "softplus", "relu6", "linear"),
        min_length=1,
        description="activation after each conv",
    )
    dropouts: tuple[Dropout, ...] = Field((0.0, 0.2, 0.5), min_length=1, description="dropout after each layer")
    skip_modes: tuple[SkipMode, ...] = Field(SKIP_MODES, min_length=1, description="none, residual or jk")
    readouts: tuple[Readout, ...] = Field(
        READOUTS,
        min_length=1,
        description="global pooling for graph classification; node classification ignores it, "
        "so give one there to avoid sampling models that differ only in the readout",
    )

    @field_validator(
        "convs", "hidden_sizes", "heads", "aggregations", "activations", "dropouts", "skip_modes", "readouts"
    )
    @classmethod
    def _no_repeats(cls, value: tuple[Any, ...]) -> tuple[Any, ...]:
        if len(set(value)) != len(value):
            raise ValueError(f"choices must not repeat, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _depth_range(self) -> GnnSpaceParams:
        if self.min_layers > self.max_layers:
            raise ValueError(f"min_layers ({self.min_layers}) exceeds max_layers ({self.max_layers})")
        return self


class GnnSearchSpace(SearchSpace):
    """Per layer a conv, hidden size, heads (gat), aggregation (sage, graphconv), activation and
    dropout; then a skip mode and a readout. See ``arch`` for the encoding.

    Optuna parameters: ``layers``; for each layer ``i < layers``: ``layer_{i}_conv``,
    ``layer_{i}_hidden``, ``layer_{i}_heads`` (gat only), ``layer_{i}_aggr`` (sage and graphconv
    only), ``layer_{i}_act``, ``layer_{i}_dropout``; then ``skip`` and ``readout``.
    """

    kind = "gnn"
    description = (
        "GraphNAS / Auto-GNN style message-passing networks: 1-4 layers of GCN, GAT, GraphSAGE, GIN "
        "or GraphConv with per-layer width, heads, aggregation, activation and dropout; skip none, "
        "residual or jumping knowledge; a linear classifier on nodes or on a pooled graph readout"
    )
    Params = GnnSpaceParams
    tasks = frozenset({"node-classification", "graph-classification"})

    params: GnnSpaceParams

    def sample(self, trial: optuna.Trial) -> str:
        p = self.params
        depth = trial.suggest_int("layers", p.min_layers, p.max_layers)
        for i in range(depth):
            conv = trial.suggest_categorical(f"layer_{i}_conv", p.convs)
            trial.suggest_categorical(f"layer_{i}_hidden", p.hidden_sizes)
            if conv == "gat":
                trial.suggest_categorical(f"layer_{i}_heads", p.heads)
            if conv in AGGREGATING_CONVS:
                trial.suggest_categorical(f"layer_{i}_aggr", p.aggregations)
            trial.suggest_categorical(f"layer_{i}_act", p.activations)
            trial.suggest_categorical(f"layer_{i}_dropout", p.dropouts)
        trial.suggest_categorical("skip", p.skip_modes)
        if self._readout_matters:
            trial.suggest_categorical("readout", p.readouts)
        return self.decode_params(trial.params)

    @property
    def _readout_matters(self) -> bool:
        """Node classification never pools: there the readout is not sampled and not compared."""
        return self.task != "node-classification"

    def _moot_readout(self, arch: GnnArch) -> GnnArch:
        return arch if self._readout_matters else GnnArch(arch.layers, arch.skip, self.params.readouts[0])

    def decode_params(self, params: Mapping[str, Any]) -> str:
        if not self._readout_matters:
            params = {**params, "readout": self.params.readouts[0]}
        return self._in_space(GnnArch.from_params(params)).to_string()

    def encode_params(self, encoding: str) -> dict[str, Any]:
        params = self._parse(encoding).to_params()
        if not self._readout_matters:
            params.pop("readout", None)
        return params

    def canonical(self, encoding: str) -> str:
        return self._parse(encoding).to_string()

    def dedup_key(self, encoding: str) -> str:
        return self._moot_readout(self._parse(encoding)).dedup_hash()

    def drawing(self, encoding: str) -> dict[str, Any]:
        arch = self._parse(encoding)
        layers = [
            {"label": layer.conv, "detail": layer.to_string().partition("(")[2].rstrip(")"), "width": layer.width}
            for layer in arch.layers
        ]
        notes = [f"skip={arch.skip}"] + ([f"readout={arch.readout}"] if self._readout_matters else [])
        return {"kind": "stack", "layers": [*layers, {"label": "linear", "detail": "classifier", "width": None}],
                "notes": notes}

    def nn_code(self, encoding: str) -> str:
        arch = self._parse(encoding)
        layers = ",\n".join(
            "    {" + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in layer.spec().items()) + "}"
            for layer in arch.layers
        )
        block = (
            "# cellar: architecture\n"
            f'ARCH = "{arch.to_string()}"\n'
            f"LAYERS = (\n{layers},\n)\n"
            f'SKIP = "{arch.skip}"\n'
            f'READOUT = "{arch.readout}"\n'
        )
        header = f"# GNN {arch.to_string()}\n# generated by Cellar under LEMUR's model contract"
        return assemble("search_spaces.gnn.model", block, header=header)

    # ---- membership --------------------------------------------------------------------------
    def _parse(self, encoding: str) -> GnnArch:
        return self._in_space(GnnArch.from_string(encoding))

    def _in_space(self, arch: GnnArch) -> GnnArch:
        """``arch`` if this space's parameters offer every one of its choices."""
        p = self.params

        def check(where: str, what: str, value: Any, choices: tuple[Any, ...]) -> None:
            if value not in choices:
                offered = ", ".join(str(c) for c in choices)
                raise InvalidArchitectureError(f"{where}{what} {value!r} is not offered by this space ({offered})")

        if not p.min_layers <= len(arch.layers) <= p.max_layers:
            raise InvalidArchitectureError(
                f"{len(arch.layers)} layers is outside this space's {p.min_layers}..{p.max_layers}"
            )
        for i, layer in enumerate(arch.layers):
            where = f"layer {i}: "
            check(where, "conv", layer.conv, p.convs)
            check(where, "hidden size", layer.hidden, p.hidden_sizes)
            if layer.heads is not None:
                check(where, "heads", layer.heads, p.heads)
            if layer.aggr is not None:
                check(where, "aggregation", layer.aggr, p.aggregations)
            check(where, "activation", layer.act, p.activations)
            check(where, "dropout", layer.dropout, p.dropouts)
        check("", "skip mode", arch.skip, p.skip_modes)
        check("", "readout", arch.readout, p.readouts)
        return arch

