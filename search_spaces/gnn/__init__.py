"""GraphNAS / Auto-GNN style GNNs: the architecture (pure Python), the search space, the model template (PyG)."""

from .arch import ACTIVATIONS, AGGREGATING_CONVS, AGGREGATIONS, CONVS, MAX_LAYERS, READOUTS, SKIP_MODES, GnnArch, Layer
from .space import GnnSearchSpace, GnnSpaceParams

__all__ = [
    "ACTIVATIONS",
    "AGGREGATING_CONVS",
    "AGGREGATIONS",
    "CONVS",
    "MAX_LAYERS",
    "READOUTS",
    "SKIP_MODES",
    "GnnArch",
    "GnnSearchSpace",
    "GnnSpaceParams",
    "Layer",
]
