"""LEMUR's architecture statistics (its ``nn_stat`` table, ``data(include_nn_stats=True)``,
``nn_stat_data()``), filled from what Cellar knows of each network.

Three sources, by what they need:

- the code alone (``code_stats``): the pattern flags and counts LEMUR derives from the source text
  (``is_resnet_like``, ``code_length``, ``uses_sequential``, ...), by LEMUR's definitions;
- the model the worker built (``workers.nn_stats.measure_model``, stored per network and
  hyperparameter set in ``cellar_nn_stats``): layers, depth, parameters, memory, dropout,
  attention, residual connections;
- the architecture row: parameters and FLOPs (PyTorch's flop counter, forward, one sample; LEMUR
  counts its own way, so FLOPs of the same model differ between the two).

Statistics nobody measured stay ``None`` (LEMUR's statistics archive carries none, so imported
models without a Cellar training have the code-derived ones only). This module imports no torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["NN_STAT_COLUMNS", "STAT_OUTPUT", "code_stats", "nn_stat_record", "output_columns"]

#: ``nn_stat``'s columns in LEMUR's order (``nn_stat_data()`` adds ``id, nn_name, prm_id`` first)
NN_STAT_COLUMNS = (
    "total_layers", "leaf_layers", "max_depth", "total_params", "trainable_params", "frozen_params",
    "flops", "model_size_mb", "buffer_size_mb", "total_memory_mb", "dropout_count", "has_attention",
    "has_residual_connections", "is_resnet_like", "is_vgg_like", "is_inception_like", "is_densenet_like",
    "is_unet_like", "is_transformer_like", "is_mobilenet_like", "is_efficientnet_like", "code_length",
    "num_classes_defined", "num_functions_defined", "uses_sequential", "uses_modulelist", "uses_moduledict",
    "meta", "error",
)  # fmt: skip

#: ``data(include_nn_stats=True)``'s extra columns, in LEMUR's order, and the ``nn_stat`` column each reads
STAT_OUTPUT = {
    "nn_total_params": "total_params",
    "nn_trainable_params": "trainable_params",
    "nn_frozen_params": "frozen_params",
    "nn_total_layers": "total_layers",
    "nn_leaf_layers": "leaf_layers",
    "nn_max_depth": "max_depth",
    "nn_flops": "flops",
    "nn_model_size_mb": "model_size_mb",
    "nn_buffer_size_mb": "buffer_size_mb",
    "nn_total_memory_mb": "total_memory_mb",
    "nn_dropout_count": "dropout_count",
    "nn_has_attention": "has_attention",
    "nn_has_residual": "has_residual_connections",
    "nn_is_resnet_like": "is_resnet_like",
    "nn_is_vgg_like": "is_vgg_like",
    "nn_is_inception_like": "is_inception_like",
    "nn_is_densenet_like": "is_densenet_like",
    "nn_is_unet_like": "is_unet_like",
    "nn_is_transformer_like": "is_transformer_like",
    "nn_is_mobilenet_like": "is_mobilenet_like",
    "nn_is_efficientnet_like": "is_efficientnet_like",
    "nn_code_length": "code_length",
    "nn_num_classes": "num_classes_defined",
    "nn_num_functions": "num_functions_defined",
    "nn_uses_sequential": "uses_sequential",
    "nn_uses_modulelist": "uses_modulelist",
    "nn_uses_moduledict": "uses_moduledict",
    "nn_stats_meta": "meta",
    "nn_stats_error": "error",
}


def output_columns() -> tuple[str, ...]:
    """The ``nn_*`` column names ``data(include_nn_stats=True)`` adds."""
    return tuple(STAT_OUTPUT)


def code_stats(code: str | None) -> dict[str, Any]:
    """The statistics LEMUR reads off the source text, by its definitions (flags as 0/1, as it
    stores them): a name in the lower-cased text marks a family, ``class ``/``def `` count
    definitions, ``nn.Sequential`` and friends mark containers."""
    if code is None:
        return {}
    low = code.lower()
    flags = {
        "is_resnet_like": "residual" in low or "resnet" in low,
        "is_vgg_like": "vgg" in low,
        "is_inception_like": "inception" in low,
        "is_densenet_like": "dense" in low and "concat" in low,
        "is_unet_like": "unet" in low or ("encoder" in low and "decoder" in low),
        "is_transformer_like": "attention" in low or "transformer" in low,
        "is_mobilenet_like": "mobile" in low or "depthwise" in low,
        "is_efficientnet_like": "efficient" in low or "mbconv" in low,
        "uses_sequential": "nn.Sequential" in code,
        "uses_modulelist": "nn.ModuleList" in code,
        "uses_moduledict": "nn.ModuleDict" in code,
    }
    stats: dict[str, Any] = {name: int(value) for name, value in flags.items()}
    stats.update(code_length=len(code), num_classes_defined=code.count("class "), num_functions_defined=code.count("def "))
    return stats


def nn_stat_record(
    code: str | None, measured: dict[str, Any] | None, *, num_params: int | None = None, flops: int | None = None
) -> dict[str, Any] | None:
    """One network's ``nn_stat`` values (every column of ``NN_STAT_COLUMNS``), or ``None`` when
    Cellar knows nothing of it (no code, no measurement)."""
    if code is None and not measured and num_params is None:
        return None
    record: dict[str, Any] = dict.fromkeys(NN_STAT_COLUMNS)
    record.update(total_params=num_params, flops=flops)
    record.update(code_stats(code))
    record.update({k: v for k, v in (measured or {}).items() if k in record and v is not None})
    return record
