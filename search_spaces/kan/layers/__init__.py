"""Cellar's KAN layers (torch). One layer per module; these modules are also model-template
parts, so they import only torch and math and are inlined into generated ``nn_code``.

Names are imported on first access: generating ``nn_code`` locates these modules, which imports
this package, and that must not import torch (the API process never does).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "KAN_LAYERS",
    "BSplineKANLayer",
    "ChebyshevKANLayer",
    "ConvKANLayer",
    "KANLayer",
    "MixtureKANLayer",
    "RBFKANLayer",
    "bspline_basis",
    "chebyshev_basis",
    "gaussian_rbf_basis",
    "kan_layer_resolver",
    "refit_coefficients",
    "regrid_splines",
    "uniform_knots",
]

_WHERE = {
    "KANLayer": "kan_layer",
    "refit_coefficients": "kan_layer",
    "BSplineKANLayer": "bspline_kan",
    "bspline_basis": "bspline_kan",
    "uniform_knots": "bspline_kan",
    "regrid_splines": "bspline_kan",
    "RBFKANLayer": "rbf_kan",
    "gaussian_rbf_basis": "rbf_kan",
    "ChebyshevKANLayer": "chebyshev_kan",
    "chebyshev_basis": "chebyshev_kan",
    "MixtureKANLayer": "mixture_kan",
    "ConvKANLayer": "conv_kan",
    "KAN_LAYERS": "resolver",
    "kan_layer_resolver": "resolver",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)


def __dir__() -> list[str]:
    return sorted(__all__)
