"""``nbgraph``: NAS-Bench-Graph's space of graph neural networks (Qin et al., NeurIPS 2022)."""

from .arch import LINK_PATTERNS, OPS, OPS_PROTEINS, BenchArch

__all__ = ["LINK_PATTERNS", "OPS", "OPS_PROTEINS", "BenchArch"]
