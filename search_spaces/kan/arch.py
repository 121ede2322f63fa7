"""KAN architectures as data: the string form, parsing, the dedup key, parameter counts.

Pure Python on purpose: the API process validates and deduplicates architectures without torch.

An architecture is a stack of layers, input side first, written as ``|``-separated tokens::

    conv:bspline(g=5,k=3)x8|bspline(g=5,k=3)x16|rbf(g=8)x8|cheb(d=4)

* ``<basis>(<args>)x<width>`` is a hidden dense layer with ``width`` outputs;
* the last token has no width: the output layer, as wide as the task's output;
* ``conv:<basis>(<args>)x<channels>`` is a convolution (``CONV_KERNEL`` x ``CONV_KERNEL``
  kernel, stride ``CONV_STRIDE``, padding ``CONV_PADDING``) with ``channels`` outputs.
  Convolutions come first and need image input; their output is flattened into the dense layers.

Bases and their arguments, in canonical order:

================  ===============================================================
``bspline(g,k)``  ``g + k`` B-splines of order ``k`` on ``g`` grid intervals
``rbf(g)``        ``g`` Gaussian radial basis functions (FastKAN)
``cheb(d)``       Chebyshev polynomials ``T_0 .. T_d`` of ``tanh(x)``
``mix(g,k,d)``    per output node, a learned softmax mixture of the three above
``linear()``      the MLP baseline: an affine map, SiLU after hidden layers
================  ===============================================================

A network is a KAN (no ``linear()`` layer) or an MLP / CNN (only ``linear()`` layers).

The canonical string has no whitespace, short argument names in the order above, basis aliases
resolved (``chebyshev`` is ``cheb``, ``mixture`` is ``mix``) and long argument names
(``grid_size``, ``spline_order``, ``degree``) shortened. An argument that the basis does not use
is dropped, ``rbf(g=8,k=3)`` is ``rbf(g=8)``, just as the search space ignores Optuna
parameters that a basis does not use; an unknown argument is an error.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from ..errors import InvalidArchitectureError

__all__ = [
    "BASES",
    "CONV_KERNEL",
    "CONV_PADDING",
    "CONV_STRIDE",
    "GRID_RANGE",
    "KAN_BASES",
    "Basis",
    "KanArch",
    "Layer",
]

#: every basis with its arguments in canonical order (short names)
BASES: dict[str, tuple[str, ...]] = {
    "bspline": ("g", "k"),
    "rbf": ("g",),
    "cheb": ("d",),
    "mix": ("g", "k", "d"),
    "linear": (),
}
#: the bases that make a network a KAN
KAN_BASES: tuple[str, ...] = ("bspline", "rbf", "cheb", "mix")
#: the layers' constructor argument of each short argument name
ARG_KWARGS: dict[str, str] = {"g": "grid_size", "k": "spline_order", "d": "degree"}
#: inclusive bounds of each argument, whatever a space allows
ARG_BOUNDS: dict[str, tuple[int, int]] = {"g": (2, 1024), "k": (1, 8), "d": (1, 64)}
_BASIS_ALIASES = {"chebyshev": "cheb", "mixture": "mix", "gaussian": "rbf", "mlp": "linear"}
_ARG_ALIASES = {"grid": "g", "grid_size": "g", "order": "k", "spline_order": "k", "degree": "d"}

GRID_RANGE: tuple[float, float] = (-1.0, 1.0)
CONV_KERNEL, CONV_STRIDE, CONV_PADDING = 3, 2, 1
MAX_WIDTH = 4096

_EXAMPLE = "bspline(g=5,k=3)x16|rbf(g=8)x8|cheb(d=4)"
_TOKEN = re.compile(r"^(?P<conv>conv:)?(?P<basis>[a-z_-]+)\((?P<args>[^()]*)\)(?:x(?P<width>\d+))?$")


@dataclass(frozen=True)
class Basis:
    """A basis and its arguments; arguments the basis does not use are ``None``."""

    name: str
    g: int | None = None
    k: int | None = None
    d: int | None = None

    def __post_init__(self) -> None:
        if self.name not in BASES:
            raise InvalidArchitectureError(f"unknown basis {self.name!r}; choose one of: {', '.join(BASES)}")
        for arg in ARG_KWARGS:
            value = getattr(self, arg)
            if arg not in BASES[self.name]:
                if value is not None:
                    raise InvalidArchitectureError(f"{self.name} takes no argument {arg!r}")
                continue
            if value is None:
                raise InvalidArchitectureError(f"{self.name} needs {arg}=<int>, e.g. {self.example()}")
            low, high = ARG_BOUNDS[arg]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise InvalidArchitectureError(
                    f"{self.name}: {arg} ({ARG_KWARGS[arg]}) must be an integer in {low}..{high}, got {value!r}"
                )

    def example(self) -> str:
        return {"bspline": "bspline(g=5,k=3)", "rbf": "rbf(g=8)", "cheb": "cheb(d=4)", "mix": "mix(g=5,k=3,d=4)"}.get(
            self.name, "linear()"
        )

    @classmethod
    def parse(cls, name: str, args: str) -> Basis:
        name = _BASIS_ALIASES.get(name, name)
        if name not in BASES:
            raise InvalidArchitectureError(
                f"unknown basis {name!r}; choose one of: {', '.join(BASES)} (e.g. {_EXAMPLE})"
            )
        values: dict[str, int] = {}
        for item in filter(None, args.split(",")):
            key, sep, value = item.partition("=")
            key = _ARG_ALIASES.get(key, key)
            if not sep or key not in ARG_KWARGS or not re.fullmatch(r"\d+", value):
                raise InvalidArchitectureError(
                    f"argument {item!r} of {name} is not of the form <name>=<int> with a name among "
                    f"g (grid_size), k (spline_order), d (degree)"
                )
            if key in values:
                raise InvalidArchitectureError(f"{name} sets {key} twice")
            values[key] = int(value)
        return cls(name, **{key: value for key, value in values.items() if key in BASES[name]})

    def to_string(self) -> str:
        return f"{self.name}({','.join(f'{arg}={getattr(self, arg)}' for arg in BASES[self.name])})"

    def kwargs(self) -> dict[str, int]:
        """The layer constructor's keyword arguments."""
        return {ARG_KWARGS[arg]: getattr(self, arg) for arg in BASES[self.name]}

    @property
    def num_basis(self) -> int:
        """``K``, the basis functions per edge (0 for ``linear``)."""
        g, k, d = self.g or 0, self.k or 0, self.d or 0
        return {"bspline": g + k, "rbf": g, "cheb": d + 1, "mix": 2 * g + k + d + 1, "linear": 0}[self.name]

    def num_parameters(self, in_features: int, out_features: int) -> int:
        """Parameters of a layer with this basis (see the layers' docstrings)."""
        if self.name == "linear":
            return in_features * out_features + out_features
        mixture = 3 * out_features if self.name == "mix" else 0
        return in_features * out_features * (1 + self.num_basis) + mixture


@dataclass(frozen=True)
class Layer:
    """One layer: a basis, its width (``None`` for the output layer) and whether it is a convolution."""

    basis: Basis
    width: int | None
    conv: bool = False

    def to_string(self) -> str:
        prefix = "conv:" if self.conv else ""
        suffix = "" if self.width is None else f"x{self.width}"
        return f"{prefix}{self.basis.to_string()}{suffix}"

    def model_spec(self) -> tuple[str, dict[str, int], int | None]:
        """``(basis, constructor kwargs, width)``: the literal the model template reads."""
        return (self.basis.name, self.basis.kwargs(), self.width)


@dataclass(frozen=True)
class KanArch:
    """Convolutional layers (possibly none), then dense layers, the last of which is the output."""

    conv_layers: tuple[Layer, ...]
    dense_layers: tuple[Layer, ...]

    def __post_init__(self) -> None:
        if not self.dense_layers:
            raise InvalidArchitectureError(f"an architecture needs at least the output layer, e.g. {_EXAMPLE}")
        for i, layer in enumerate(self.conv_layers):
            if not layer.conv or layer.width is None:
                raise InvalidArchitectureError(
                    f"convolution {i} needs conv: and a channel count, e.g. conv:cheb(d=3)x8"
                )
        for i, layer in enumerate(self.dense_layers):
            if layer.conv:
                raise InvalidArchitectureError(
                    f"layer {i} is a convolution after a dense layer; convolutions come first"
                )
            last = i == len(self.dense_layers) - 1
            if last and layer.width is not None:
                raise InvalidArchitectureError(
                    f"the last layer {layer.to_string()!r} is the output layer: drop its width "
                    f"x{layer.width} (the task's output size is used)"
                )
            if not last and layer.width is None:
                raise InvalidArchitectureError(
                    f"hidden layer {i} ({layer.basis.to_string()}) needs a width, e.g. {layer.basis.to_string()}x16"
                )
        for layer in self.layers:
            if layer.width is not None and not 1 <= layer.width <= MAX_WIDTH:
                raise InvalidArchitectureError(f"width of {layer.to_string()!r} must be in 1..{MAX_WIDTH}")
        linear = {layer.basis.name == "linear" for layer in self.layers}
        if len(linear) > 1:
            raise InvalidArchitectureError(
                "mixing linear() with KAN layers is not in the space: use linear() for every layer "
                "(the MLP baseline) or for none"
            )

    @property
    def layers(self) -> tuple[Layer, ...]:
        return self.conv_layers + self.dense_layers

    @property
    def family(self) -> str:
        """``"mlp"`` when every layer is ``linear()``, else ``"kan"``."""
        return "mlp" if self.dense_layers[0].basis.name == "linear" else "kan"

    @classmethod
    def from_string(cls, text: str) -> KanArch:
        if not isinstance(text, str) or not text.strip():
            raise InvalidArchitectureError(f"empty KAN architecture; expected e.g. {_EXAMPLE}")
        conv: list[Layer] = []
        dense: list[Layer] = []
        for i, token in enumerate(re.sub(r"\s+", "", text).split("|")):
            match = _TOKEN.match(token.lower())
            if match is None:
                raise InvalidArchitectureError(
                    f"layer {i} {token!r} is not of the form [conv:]<basis>(<args>)[x<width>], "
                    f"e.g. {_EXAMPLE} (bases: {', '.join(BASES)})"
                )
            basis = Basis.parse(match["basis"], match["args"])
            width = int(match["width"]) if match["width"] is not None else None
            if match["conv"]:
                if dense:
                    raise InvalidArchitectureError(
                        f"layer {i} {token!r} is a convolution after a dense layer; convolutions come first"
                    )
                if width is None:
                    raise InvalidArchitectureError(f"convolution {token!r} needs a channel count, e.g. {token}x8")
                conv.append(Layer(basis, width, conv=True))
            else:
                dense.append(Layer(basis, width))
        if not dense:
            raise InvalidArchitectureError(f"{text!r} has no dense output layer, e.g. {_EXAMPLE}")
        return cls(tuple(conv), tuple(dense))

    def to_string(self) -> str:
        return "|".join(layer.to_string() for layer in self.layers)

    def __str__(self) -> str:
        return self.to_string()

    def dedup_key(self) -> str:
        """sha256 of the canonical string.

        The string already drops every argument a basis ignores and resolves every alias. No two
        distinct canonical strings compute the same function family: the string does not order
        hidden units, so it has no permutation duplicates to remove.
        """
        return hashlib.sha256(self.to_string().encode()).hexdigest()

    def num_parameters(self, in_shape: tuple[int, ...], num_outputs: int) -> int:
        """Trainable parameters for one sample of ``in_shape`` (``(F,)`` or ``(C, H, W)``)."""
        if self.conv_layers and len(in_shape) != 3:
            raise InvalidArchitectureError(
                f"convolutions need image input (C, H, W), got sample shape {tuple(in_shape)}"
            )
        total = 0
        if len(in_shape) == 3:
            channels, height, width = in_shape
            for layer in self.conv_layers:
                out_channels = layer.width or 0  # never 0: a convolution always has a width
                total += layer.basis.num_parameters(channels * CONV_KERNEL**2, out_channels)
                height = (height + 2 * CONV_PADDING - CONV_KERNEL) // CONV_STRIDE + 1
                width = (width + 2 * CONV_PADDING - CONV_KERNEL) // CONV_STRIDE + 1
                channels = out_channels
            features = channels * height * width
        else:
            features = 1
            for size in in_shape:
                features *= size
        for layer in self.dense_layers:
            out = num_outputs if layer.width is None else layer.width
            total += layer.basis.num_parameters(features, out)
            features = out
        return total
