"""GNN architectures as data: the vocabulary, parsing, the canonical string, the dedup key.

Pure Python on purpose: the API process validates and deduplicates architectures without
importing torch or PyG.

An architecture is 1..4 message-passing layers, a skip mode and a graph readout. Its string form::

    gat(h=32,heads=4,act=elu,drop=0.2)|sage(h=16,aggr=max,act=relu,drop=0.5);skip=jk;readout=mean

one ``conv(key=value,...)`` per layer, in order, joined by ``|``; then ``;skip=...;readout=...``.
Layer keys, in canonical order: ``h`` (hidden size; per head for GAT), ``heads`` (GAT only),
``aggr`` (SAGE and GraphConv only), ``act`` (activation), ``drop`` (dropout probability). The
parser accepts any key order, surrounding whitespace and keys a conv does not read (``heads`` or
``aggr`` elsewhere); the canonical string drops those, since they do not change the model.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from ..errors import InvalidArchitectureError

__all__ = [
    "ACTIVATIONS",
    "AGGREGATIONS",
    "AGGREGATING_CONVS",
    "CONVS",
    "MAX_LAYERS",
    "READOUTS",
    "SKIP_MODES",
    "Activation",
    "Aggregation",
    "ConvName",
    "GnnArch",
    "Layer",
    "Readout",
    "SkipMode",
]

ConvName = Literal["gcn", "gat", "sage", "gin", "graphconv"]
#: GraphNAS's activations, plus GELU
Activation = Literal["relu", "elu", "leaky_relu", "tanh", "sigmoid", "softplus", "relu6", "gelu", "linear"]
#: neighbourhood aggregations of SAGEConv and GraphConv (PyG's names)
Aggregation = Literal["mean", "add", "max"]
SkipMode = Literal["none", "residual", "jk"]
#: global pooling of node embeddings into one vector per graph (graph classification only)
Readout = Literal["mean", "add", "max"]

CONVS: tuple[str, ...] = get_args(ConvName)
ACTIVATIONS: tuple[str, ...] = get_args(Activation)
AGGREGATIONS: tuple[str, ...] = get_args(Aggregation)
SKIP_MODES: tuple[str, ...] = get_args(SkipMode)
READOUTS: tuple[str, ...] = get_args(Readout)
#: convs with a choice of neighbourhood aggregation (GIN sums into an MLP, GCN and GAT weight)
AGGREGATING_CONVS: tuple[str, ...] = ("sage", "graphconv")
MAX_LAYERS = 4

_LAYER_KEYS = ("h", "heads", "aggr", "act", "drop")
_EXAMPLE = "gat(h=32,heads=4,act=elu,drop=0.2)|gcn(h=16,act=relu,drop=0.5);skip=jk;readout=mean"


def _choose(what: str, name: object, choices: tuple[str, ...], where: str = "") -> str:
    if name not in choices:
        raise InvalidArchitectureError(f"{where}unknown {what} {name!r}; choose one of: {', '.join(choices)}")
    return str(name)


def _positive_int(text: str, what: str, where: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise InvalidArchitectureError(f"{where}{what} must be a positive integer, got {text!r}") from None
    if value < 1:
        raise InvalidArchitectureError(f"{where}{what} must be a positive integer, got {value}")
    return value


@dataclass(frozen=True)
class Layer:
    """One message-passing layer: conv -> activation (-> + residual) -> dropout.

    ``heads`` is set exactly for ``gat`` and ``aggr`` exactly for the ``AGGREGATING_CONVS``.
    """

    conv: str
    hidden: int
    act: str
    dropout: float
    heads: int | None = None
    aggr: str | None = None

    def __post_init__(self) -> None:
        _choose("conv", self.conv, CONVS)
        _choose("activation", self.act, ACTIVATIONS)
        if isinstance(self.hidden, bool) or not isinstance(self.hidden, int) or self.hidden < 1:
            raise InvalidArchitectureError(f"hidden size must be a positive integer, got {self.hidden!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise InvalidArchitectureError(f"dropout must be a probability in [0, 1), got {self.dropout!r}")
        object.__setattr__(self, "dropout", float(self.dropout))
        if self.conv == "gat":
            if isinstance(self.heads, bool) or not isinstance(self.heads, int) or self.heads < 1:
                raise InvalidArchitectureError(f"gat needs a positive number of heads, got {self.heads!r}")
        elif self.heads is not None:
            raise InvalidArchitectureError(f"{self.conv} has no attention heads (only gat has)")
        if self.conv in AGGREGATING_CONVS:
            _choose("aggregation", self.aggr, AGGREGATIONS, f"{self.conv}: ")
        elif self.aggr is not None:
            raise InvalidArchitectureError(
                f"{self.conv} has no aggregation choice (only {', '.join(AGGREGATING_CONVS)} have)"
            )

    @property
    def width(self) -> int:
        """Output features: GAT concatenates its heads."""
        return self.hidden * (self.heads or 1)

    @classmethod
    def from_string(cls, text: str, where: str = "") -> Layer:
        conv, paren, rest = text.strip().partition("(")
        conv = conv.strip()
        if not paren or not rest.endswith(")"):
            raise InvalidArchitectureError(
                f"{where}{text.strip()!r} is not of the form conv(key=value,...), e.g. gcn(h=16,act=relu,drop=0.5)"
            )
        _choose("conv", conv, CONVS, where)
        values: dict[str, str] = {}
        for entry in rest[:-1].split(","):
            key, eq, value = (part.strip() for part in entry.partition("="))
            if not eq or not key or not value:
                raise InvalidArchitectureError(f"{where}{entry.strip()!r} in {conv}(...) is not key=value")
            if key not in _LAYER_KEYS:
                raise InvalidArchitectureError(
                    f"{where}unknown layer key {key!r}; layer keys are: {', '.join(_LAYER_KEYS)}"
                )
            if key in values:
                raise InvalidArchitectureError(f"{where}key {key!r} given twice in {conv}(...)")
            values[key] = value
        required = ["h", "act", "drop"] + (["heads"] if conv == "gat" else [])
        required += ["aggr"] if conv in AGGREGATING_CONVS else []
        missing = [key for key in _LAYER_KEYS if key in required and key not in values]
        if missing:
            raise InvalidArchitectureError(
                f"{where}{conv}(...) lacks {', '.join(missing)}; e.g. {_layer_example(conv)}"
            )
        # Keys the conv does not read must still be well-formed; then they are dropped.
        heads = _positive_int(values["heads"], "heads", where) if "heads" in values else None
        aggr = _choose("aggregation", values["aggr"], AGGREGATIONS, where) if "aggr" in values else None
        try:
            dropout = float(values["drop"])
        except ValueError:
            raise InvalidArchitectureError(f"{where}drop must be a number in [0, 1), got {values['drop']!r}") from None
        if not math.isfinite(dropout) or not 0 <= dropout < 1:
            raise InvalidArchitectureError(f"{where}drop must be a probability in [0, 1), got {values['drop']!r}")
        return cls(
            conv=conv,
            hidden=_positive_int(values["h"], "h (hidden size)", where),
            act=_choose("activation", values["act"], ACTIVATIONS, where),
            dropout=dropout,
            heads=heads if conv == "gat" else None,
            aggr=aggr if conv in AGGREGATING_CONVS else None,
        )

    def to_string(self) -> str:
        parts = [f"h={self.hidden}"]
        if self.heads is not None:
            parts.append(f"heads={self.heads}")
        if self.aggr is not None:
            parts.append(f"aggr={self.aggr}")
        parts += [f"act={self.act}", f"drop={self.dropout!r}"]
        return f"{self.conv}({','.join(parts)})"

    def spec(self) -> dict[str, Any]:
        """The literal the model template reads: only the keys this conv uses."""
        spec: dict[str, Any] = {"conv": self.conv, "hidden": self.hidden}
        if self.heads is not None:
            spec["heads"] = self.heads
        if self.aggr is not None:
            spec["aggr"] = self.aggr
        spec.update(act=self.act, dropout=self.dropout)
        return spec


def _layer_example(conv: str) -> str:
    extra = ",heads=4" if conv == "gat" else ",aggr=mean" if conv in AGGREGATING_CONVS else ""
    return f"{conv}(h=16{extra},act=relu,drop=0.5)"


@dataclass(frozen=True)
class GnnArch:
    """A whole network: ``layers`` in order, then ``skip`` and (for graph-level tasks) ``readout``.

    skip: ``none``; ``residual`` adds each layer's input (through a bias-free linear projection
    where the widths differ); ``jk`` is jumping knowledge with concatenation: the classifier sees
    every layer's output side by side.
    """

    layers: tuple[Layer, ...]
    skip: str
    readout: str

    def __post_init__(self) -> None:
        if not 1 <= len(self.layers) <= MAX_LAYERS:
            raise InvalidArchitectureError(f"a network has 1..{MAX_LAYERS} layers, got {len(self.layers)}")
        _choose("skip mode", self.skip, SKIP_MODES)
        _choose("readout", self.readout, READOUTS)

    # ---- string form -------------------------------------------------------------------------
    @classmethod
    def from_string(cls, text: str) -> GnnArch:
        if not isinstance(text, str) or not text.strip():
            raise InvalidArchitectureError(f"empty GNN architecture; expected e.g. {_EXAMPLE}")
        head, *tail = text.strip().split(";")
        globals_: dict[str, str] = {}
        for entry in tail:
            key, eq, value = (part.strip() for part in entry.partition("="))
            if not eq or key not in ("skip", "readout"):
                raise InvalidArchitectureError(
                    f"{entry.strip()!r} after the layers is not skip=... or readout=...; e.g. {_EXAMPLE}"
                )
            if key in globals_:
                raise InvalidArchitectureError(f"{key} given twice in {text!r}")
            globals_[key] = value
        missing = [key for key in ("skip", "readout") if key not in globals_]
        if missing:
            raise InvalidArchitectureError(
                f"{text.strip()!r} lacks {' and '.join(f';{key}=...' for key in missing)}; e.g. {_EXAMPLE}"
            )
        segments = head.split("|")
        if not 1 <= len(segments) <= MAX_LAYERS:
            raise InvalidArchitectureError(
                f"a network has 1..{MAX_LAYERS} layers separated by '|', got {len(segments)} in {text.strip()!r}"
            )
        layers = tuple(Layer.from_string(segment, f"layer {i}: ") for i, segment in enumerate(segments))
        return cls(
            layers,
            skip=_choose("skip mode", globals_["skip"], SKIP_MODES),
            readout=_choose("readout", globals_["readout"], READOUTS),
        )

    def to_string(self) -> str:
        layers = "|".join(layer.to_string() for layer in self.layers)
        return f"{layers};skip={self.skip};readout={self.readout}"

    def __str__(self) -> str:
        return self.to_string()

    def spec(self) -> tuple[dict[str, Any], ...]:
        return tuple(layer.spec() for layer in self.layers)

    # ---- Optuna parameters -------------------------------------------------------------------
    def to_params(self) -> dict[str, Any]:
        """The parameters ``GnnSearchSpace.sample`` draws for this architecture (names stable)."""
        params: dict[str, Any] = {"layers": len(self.layers)}
        for i, layer in enumerate(self.layers):
            params[f"layer_{i}_conv"] = layer.conv
            params[f"layer_{i}_hidden"] = layer.hidden
            if layer.heads is not None:
                params[f"layer_{i}_heads"] = layer.heads
            if layer.aggr is not None:
                params[f"layer_{i}_aggr"] = layer.aggr
            params[f"layer_{i}_act"] = layer.act
            params[f"layer_{i}_dropout"] = layer.dropout
        params["skip"] = self.skip
        params["readout"] = self.readout
        return params

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> GnnArch:
        """Inverse of ``to_params``; keys it does not need (other layers, other choices) are ignored."""

        def get(key: str) -> Any:
            try:
                return params[key]
            except KeyError:
                raise InvalidArchitectureError(f"missing parameter {key!r} for a gnn architecture") from None

        depth = get("layers")
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= MAX_LAYERS:
            raise InvalidArchitectureError(f"parameter 'layers' must be an integer in 1..{MAX_LAYERS}, got {depth!r}")
        layers = []
        for i in range(depth):
            conv = _choose("conv", get(f"layer_{i}_conv"), CONVS, f"layer {i}: ")
            try:
                layers.append(
                    Layer(
                        conv=conv,
                        hidden=get(f"layer_{i}_hidden"),
                        act=get(f"layer_{i}_act"),
                        dropout=get(f"layer_{i}_dropout"),
                        heads=get(f"layer_{i}_heads") if conv == "gat" else None,
                        aggr=get(f"layer_{i}_aggr") if conv in AGGREGATING_CONVS else None,
                    )
                )
            except InvalidArchitectureError as error:
                raise InvalidArchitectureError(f"layer {i}: {error}") from None
        return cls(tuple(layers), skip=get("skip"), readout=get("readout"))

    # ---- identity ----------------------------------------------------------------------------
    def isomorphism_key(self) -> str:
        """A string shared by architectures that build the same network.

        The canonical string already leaves out parameters a conv does not read; beyond that,
        jumping knowledge over a single layer concatenates one output, which is ``skip=none``.
        The readout stays in the key: it matters for graph classification, and the key cannot
        know the task (for node classification, give the space a single readout).
        """
        skip = "none" if self.skip == "jk" and len(self.layers) == 1 else self.skip
        return GnnArch(self.layers, skip, self.readout).to_string()

    def dedup_hash(self) -> str:
        """sha256 of the isomorphism key."""
        return hashlib.sha256(self.isomorphism_key().encode()).hexdigest()
