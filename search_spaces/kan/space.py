"""``kan``: Kolmogorov-Arnold networks with a basis per layer, and an MLP baseline."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol

from pydantic import Field, ValidationInfo, field_validator

from .._base import SearchSpace, SpaceParams
from .._codegen import assemble
from ..errors import InvalidArchitectureError
from .arch import BASES, CONV_KERNEL, CONV_PADDING, CONV_STRIDE, GRID_RANGE, KAN_BASES, Basis, KanArch, Layer

if TYPE_CHECKING:
    import optuna

__all__ = ["KanSearchSpace", "KanSpaceParams"]

#: the Optuna parameter suffix and the ``KanSpaceParams`` field of each basis argument
_ARG_PARAM = {"g": ("grid", "grid_sizes"), "k": ("order", "spline_orders"), "d": ("degree", "degrees")}
FAMILIES = ("kan", "mlp")


class KanSpaceParams(SpaceParams):
    """What the space samples from. The defaults are small enough to train on a CPU in seconds."""

    max_layers: int = Field(3, ge=1, le=6, description="most dense layers in a network, the output layer included")
    widths: tuple[Annotated[int, Field(ge=1, le=256)], ...] = Field(
        (4, 8, 16), min_length=1, description="widths a hidden dense layer can have"
    )
    bases: tuple[Literal["bspline", "rbf", "cheb", "mix"], ...] = Field(
        KAN_BASES, min_length=1, description="KAN bases a layer can use (mix: per-node mixture of the other three)"
    )
    grid_sizes: tuple[Annotated[int, Field(ge=2, le=64)], ...] = Field(
        (3, 5, 8), min_length=1, description="grid sizes: B-spline intervals, RBF centres"
    )
    spline_orders: tuple[Annotated[int, Field(ge=1, le=5)], ...] = Field(
        (1, 2, 3), min_length=1, description="B-spline orders (3 is cubic)"
    )
    degrees: tuple[Annotated[int, Field(ge=1, le=16)], ...] = Field(
        (2, 3, 4), min_length=1, description="highest Chebyshev degrees"
    )
    include_mlp: bool = Field(
        False, description="also sample the MLP baseline (every layer linear(), SiLU between), for comparison"
    )
    max_conv_layers: int = Field(
        0,
        ge=0,
        le=3,
        description=(
            f"most convolutions ({CONV_KERNEL}x{CONV_KERNEL}, stride {CONV_STRIDE}) before the dense layers; "
            "they need image datasets, so leave 0 for tabular and regression ones"
        ),
    )
    conv_channels: tuple[Annotated[int, Field(ge=1, le=64)], ...] = Field(
        (4, 8), min_length=1, description="output channels a convolution can have"
    )

    @field_validator("widths", "bases", "grid_sizes", "spline_orders", "degrees", "conv_channels")
    @classmethod
    def _each_choice_once(cls, value: tuple[Any, ...], info: ValidationInfo) -> tuple[Any, ...]:
        if len(set(value)) != len(value):
            raise ValueError(f"{info.field_name} lists a choice twice: {list(value)}; list each choice once")
        return value


class _Choose(Protocol):
    def categorical(self, name: str, choices: tuple[Any, ...], field: str) -> Any: ...

    def integer(self, name: str, low: int, high: int, field: str) -> int: ...


class _Ask:
    """Choices drawn from an Optuna trial."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial

    def categorical(self, name: str, choices: tuple[Any, ...], field: str) -> Any:
        return self.trial.suggest_categorical(name, choices)

    def integer(self, name: str, low: int, high: int, field: str) -> int:
        return self.trial.suggest_int(name, low, high)


class _Read:
    """Choices read from a parameter dict, each checked against the space."""

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.params = params

    def _get(self, name: str) -> Any:
        try:
            return self.params[name]
        except KeyError:
            raise InvalidArchitectureError(f"missing parameter {name!r} for a kan architecture") from None

    def categorical(self, name: str, choices: tuple[Any, ...], field: str) -> Any:
        value = self._get(name)
        if value not in choices or isinstance(value, bool) != isinstance(choices[0], bool):
            raise InvalidArchitectureError(f"parameter {name}={value!r} is not one of {field} {list(choices)}")
        return value

    def integer(self, name: str, low: int, high: int, field: str) -> int:
        value = self._get(name)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidArchitectureError(f"parameter {name}={value!r} must be an integer in {low}..{high} ({field})")
        return value


class KanSearchSpace(SearchSpace):
    """KANs (and optionally MLPs) of up to ``max_layers`` dense layers, a basis per layer.

    The encoding is ``KanArch``'s string, e.g. ``bspline(g=5,k=3)x16|rbf(g=8)x8|cheb(d=4)``
    (see ``search_spaces.kan.arch``). Optuna parameters, each asked only when it matters:

    * ``family``: ``kan`` or ``mlp``, only when ``include_mlp``;
    * ``conv_layers``: 0..``max_conv_layers``, only when ``max_conv_layers > 0`` and the task
      is not known to be other than ``img-classification``; then per convolution ``j``:
      ``conv{j}_basis``, its arguments, ``conv{j}_channels``;
    * ``layers``: 1..``max_layers`` dense layers; per layer ``i``: ``layer{i}_basis``, its
      arguments, and ``layer{i}_width`` unless it is the output layer.

    A basis's arguments are ``<prefix>_grid`` (bspline, rbf, mix), ``<prefix>_order`` (bspline,
    mix) and ``<prefix>_degree`` (cheb, mix). MLP layers have no basis parameters.
    """

    kind = "kan"
    description = (
        "Kolmogorov-Arnold networks: per layer a B-spline, Gaussian RBF, Chebyshev or mixed basis, "
        "optional convolutional KAN layers for images, and an MLP baseline"
    )
    Params = KanSpaceParams
    tasks = frozenset({"tab-classification", "img-classification", "regression"})

    params: KanSpaceParams

    # ---- Optuna ------------------------------------------------------------------------------
    def sample(self, trial: optuna.Trial) -> str:
        return self._build(_Ask(trial)).to_string()

    def decode_params(self, params: Mapping[str, Any]) -> str:
        """The encoding of ``params``; parameters the architecture does not use are ignored."""
        return self._build(_Read(params)).to_string()

    def encode_params(self, encoding: str) -> dict[str, Any]:
        arch = self._arch(encoding)
        p = self.params
        params: dict[str, Any] = {}
        if p.include_mlp:
            params["family"] = arch.family
        if self._max_conv_layers:
            params["conv_layers"] = len(arch.conv_layers)
        for j, layer in enumerate(arch.conv_layers):
            self._encode_basis(params, f"conv{j}", layer.basis)
            params[f"conv{j}_channels"] = layer.width
        params["layers"] = len(arch.dense_layers)
        for i, layer in enumerate(arch.dense_layers):
            self._encode_basis(params, f"layer{i}", layer.basis)
            if layer.width is not None:
                params[f"layer{i}_width"] = layer.width
        return params

    def _build(self, choose: _Choose) -> KanArch:
        """The one place that knows which choices exist and when: ``sample`` and ``decode_params``."""
        p = self.params
        family = choose.categorical("family", FAMILIES, "families") if p.include_mlp else "kan"
        top = self._max_conv_layers
        n_conv = choose.integer("conv_layers", 0, top, "max_conv_layers") if top else 0
        conv = []
        for j in range(n_conv):
            basis = self._choose_basis(choose, f"conv{j}", family)
            conv.append(Layer(basis, choose.categorical(f"conv{j}_channels", p.conv_channels, "conv_channels"), True))
        n_dense = choose.integer("layers", 1, p.max_layers, "max_layers")
        dense = []
        for i in range(n_dense):
            basis = self._choose_basis(choose, f"layer{i}", family)
            hidden = i < n_dense - 1
            dense.append(Layer(basis, choose.categorical(f"layer{i}_width", p.widths, "widths") if hidden else None))
        return KanArch(tuple(conv), tuple(dense))

    def _choose_basis(self, choose: _Choose, prefix: str, family: str) -> Basis:
        if family == "mlp":
            return Basis("linear")
        name = choose.categorical(f"{prefix}_basis", self.params.bases, "bases")
        args = {}
        for arg in BASES[name]:
            suffix, field = _ARG_PARAM[arg]
            args[arg] = choose.categorical(f"{prefix}_{suffix}", getattr(self.params, field), field)
        return Basis(name, **args)

    @staticmethod
    def _encode_basis(params: dict[str, Any], prefix: str, basis: Basis) -> None:
        if basis.name == "linear":
            return
        params[f"{prefix}_basis"] = basis.name
        for arg in BASES[basis.name]:
            params[f"{prefix}_{_ARG_PARAM[arg][0]}"] = getattr(basis, arg)

    @property
    def _max_conv_layers(self) -> int:
        """Convolutions need images: for a task known to have none they are not sampled at all."""
        if self.task is not None and self.task != "img-classification":
            return 0
        return self.params.max_conv_layers

    # ---- encodings ---------------------------------------------------------------------------
    def _arch(self, encoding: str) -> KanArch:
        """Parse ``encoding`` and check that this space (its parameters) can sample it."""
        arch = KanArch.from_string(encoding)
        p = self.params
        if arch.family == "mlp" and not p.include_mlp:
            raise InvalidArchitectureError(
                f"{arch} is an MLP (linear() layers) but this space samples KANs only; "
                "set include_mlp to true in the space's parameters to search MLPs too"
            )
        if arch.conv_layers and not self._max_conv_layers and p.max_conv_layers:
            raise InvalidArchitectureError(
                f"{arch} starts with convolutions, which need images; this search is for {self.task} data, "
                "so drop the conv: layers"
            )
        if len(arch.conv_layers) > self._max_conv_layers:
            raise InvalidArchitectureError(
                f"{arch} has {len(arch.conv_layers)} convolution(s), this space at most max_conv_layers="
                f"{p.max_conv_layers}"
            )
        if len(arch.dense_layers) > p.max_layers:
            raise InvalidArchitectureError(
                f"{arch} has {len(arch.dense_layers)} dense layers, this space at most max_layers={p.max_layers}"
            )
        for layer in arch.layers:
            where = f"layer {layer.to_string()!r}"
            if layer.width is not None:
                field = "conv_channels" if layer.conv else "widths"
                if layer.width not in getattr(p, field):
                    raise InvalidArchitectureError(
                        f"{where}: width {layer.width} is not one of this space's {field} {list(getattr(p, field))}"
                    )
            name = layer.basis.name
            if name == "linear":
                continue
            if name not in p.bases:
                raise InvalidArchitectureError(
                    f"{where}: basis {name} is not one of this space's bases {list(p.bases)}"
                )
            for arg in BASES[name]:
                field = _ARG_PARAM[arg][1]
                if getattr(layer.basis, arg) not in getattr(p, field):
                    raise InvalidArchitectureError(
                        f"{where}: {arg}={getattr(layer.basis, arg)} is not one of this space's {field} "
                        f"{list(getattr(p, field))}"
                    )
        return arch

    def canonical(self, encoding: str) -> str:
        return self._arch(encoding).to_string()

    def dedup_key(self, encoding: str) -> str:
        return self._arch(encoding).dedup_key()

    def drawing(self, encoding: str) -> dict[str, Any]:
        arch = self._arch(encoding)
        layers = [
            {
                "label": ("conv " if layer.conv else "") + layer.basis.name,
                "detail": layer.basis.to_string(),
                "width": layer.width,
            }
            for layer in arch.layers
        ]
        return {"kind": "stack", "layers": layers, "notes": [f"family={arch.family}"]}

    def nn_code(self, encoding: str) -> str:
        arch = self._arch(encoding)
        block = (
            "# cellar: architecture\n"
            f'ARCH = "{arch.to_string()}"\n'
            f"CONV_LAYERS = {_literal(arch.conv_layers)}\n"
            f"DENSE_LAYERS = {_literal(arch.dense_layers)}\n"
            f"GRID_RANGE = {GRID_RANGE!r}\n"
            f"CONV_KERNEL, CONV_STRIDE, CONV_PADDING = {CONV_KERNEL}, {CONV_STRIDE}, {CONV_PADDING}\n"
        )
        header = f"# KAN {arch.to_string()}\n# generated by Cellar under LEMUR's model contract"
        return assemble("search_spaces.kan.model", block, header=header)


def _literal(layers: tuple[Layer, ...]) -> str:
    """``(basis, kwargs, width)`` per layer, one per line, as the template reads them."""
    if not layers:
        return "()"
    return "(\n" + "".join(f"    {layer.model_spec()!r},\n" for layer in layers) + ")"
