"""Kolmogorov-Arnold network search: architectures as data and the search space (torch-free),
the model template (``model``) and the layers (``layers``, torch)."""

from .arch import BASES, KAN_BASES, Basis, KanArch, Layer
from .space import KanSearchSpace, KanSpaceParams

__all__ = ["BASES", "KAN_BASES", "Basis", "KanArch", "KanSearchSpace", "KanSpaceParams", "Layer"]
