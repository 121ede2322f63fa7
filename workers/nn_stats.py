"""LEMUR's architecture statistics of a built model (torch): what ``nn_stat`` holds beyond the
source text, measured where the model exists, on the worker.

Definitions follow LEMUR's (``ab.nn.util.NNAnalysis``): every module counts as a layer, leaves are
modules without children, depth is the longest chain of children, sizes are bytes of parameters
and buffers in MiB, dropout counts ``Dropout``/``Dropout2d``/``Dropout3d``, attention is a
``MultiheadAttention``, a residual connection a module whose class name says residual, resnet,
skip or shortcut, or an ``Identity``. Flags are 0/1 as LEMUR stores them.
"""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["measure_model"]

_RESIDUAL_NAMES = ("residual", "resnet", "skip", "shortcut")


def _depth(module: nn.Module) -> int:
    children = list(module.children())
    return 1 + max(_depth(child) for child in children) if children else 0


def measure_model(model: nn.Module) -> dict[str, Any]:
    """The model's ``nn_stat`` values that need the model itself, with ``meta`` (leaf layer types)."""
    modules = list(model.modules())
    leaves = [m for m in modules if not any(True for _ in m.children())]
    params = list(model.parameters())
    param_mb = sum(p.numel() * p.element_size() for p in params) / 2**20
    buffer_mb = sum(b.numel() * b.element_size() for b in model.buffers()) / 2**20
    trainable = sum(p.numel() for p in params if p.requires_grad)
    total = sum(p.numel() for p in params)
    layer_types: dict[str, int] = {}
    for leaf in leaves:
        layer_types[type(leaf).__name__] = layer_types.get(type(leaf).__name__, 0) + 1
    residual = any(
        isinstance(m, nn.Identity) or any(word in type(m).__name__.lower() for word in _RESIDUAL_NAMES)
        for m in modules
    )
    return {
        "total_layers": len(modules),
        "leaf_layers": len(leaves),
        "max_depth": _depth(model),
        "total_params": total,
        "trainable_params": trainable,
        "frozen_params": total - trainable,
        "model_size_mb": param_mb,
        "buffer_size_mb": buffer_mb,
        "total_memory_mb": param_mb + buffer_mb,
        "dropout_count": sum(isinstance(m, nn.Dropout | nn.Dropout2d | nn.Dropout3d) for m in modules),
        "has_attention": int(any(isinstance(m, nn.MultiheadAttention) for m in modules)),
        "has_residual_connections": int(residual),
        "meta": {"layer_types": layer_types},
    }
