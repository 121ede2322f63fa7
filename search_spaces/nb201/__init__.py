"""NAS-Bench-201 cells: the genotype (pure Python), the search space, the model template (torch)."""

from .genotype import EDGES, NUM_CELLS, OPS, Cell
from .space import CellSearchSpace, CellSpaceParams

__all__ = ["EDGES", "NUM_CELLS", "OPS", "Cell", "CellSearchSpace", "CellSpaceParams"]
