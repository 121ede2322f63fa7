"""NAS-Bench-201 cells as data: parsing, the canonical string, the benchmark index, the dedup key.

Pure Python on purpose: the API process validates and deduplicates cells without importing torch.

A cell is a DAG on 4 nodes; node ``i`` (1..3) sums one op applied to every earlier node ``j < i``,
so a cell is 6 op choices. Its string form is NAS-Bench-201's::

    |op~0|+|op~0|op~1|+|op~0|op~1|op~2|

one ``+``-separated segment per node, ``op~j`` for the edge from node ``j``.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import InvalidArchitectureError

__all__ = ["EDGES", "NUM_CELLS", "OPS", "Cell"]

#: The 5 ops of NAS-Bench-201, in the benchmark's order.
OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: The 6 edges as (to_node, from_node), node by node, inputs in order: the order of the string.
EDGES: tuple[tuple[int, int], ...] = tuple((i, j) for i in range(1, 4) for j in range(i))
NUM_CELLS = len(OPS) ** len(EDGES)  # 15,625

_ZERO = "#"


@dataclass(frozen=True, order=True)
class Cell:
    """One NAS-Bench-201 cell: ``ops[k]`` is the op on ``EDGES[k]``."""

    ops: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.ops) != len(EDGES):
            raise InvalidArchitectureError(f"a cell has {len(EDGES)} edges, got {len(self.ops)} ops")
        for op in self.ops:
            if op not in OPS:
                raise InvalidArchitectureError(f"unknown op {op!r}; choose one of: {', '.join(OPS)}")

    # ---- string form -------------------------------------------------------------------------
    @classmethod
    def from_string(cls, text: str) -> Cell:
        """Parse ``|op~j|+...``; edges of a node may come in any order, each input exactly once."""
        example = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|none~1|none~2|"
        if not isinstance(text, str) or not text.strip():
            raise InvalidArchitectureError(f"empty arch string; expected e.g. {example}")
        segments = text.strip().split("+")
        if len(segments) != 3:
            raise InvalidArchitectureError(
                f"arch string {text!r} has {len(segments)} node segments, expected 3 "
                f"separated by '+', e.g. {example}"
            )
        chosen: dict[tuple[int, int], str] = {}
        for node, segment in enumerate(segments, start=1):
            entries = [e for e in segment.split("|") if e]
            for entry in entries:
                op, sep, source = entry.partition("~")
                if not sep or not source.isdigit():
                    raise InvalidArchitectureError(
                        f"edge {entry!r} of node {node} is not of the form op~input, e.g. nor_conv_3x3~0"
                    )
                j = int(source)
                if j >= node:
                    raise InvalidArchitectureError(
                        f"edge {entry!r}: node {node} can only take inputs 0..{node - 1}"
                    )
                if (node, j) in chosen:
                    raise InvalidArchitectureError(f"node {node} lists input {j} twice in {text!r}")
                chosen[(node, j)] = op
            missing = [j for j in range(node) if (node, j) not in chosen]
            if missing:
                raise InvalidArchitectureError(
                    f"node {node} has no edge from input(s) {missing} in {text!r}; "
                    f"every node i needs one op per input 0..i-1 (use none for no edge)"
                )
        return cls(tuple(chosen[edge] for edge in EDGES))

    def to_string(self) -> str:
        """The canonical string: nodes in order, each node's edges by input index."""
        parts = []
        for node in range(1, 4):
            edges = "|".join(f"{op}~{j}" for (i, j), op in zip(EDGES, self.ops) if i == node)
            parts.append(f"|{edges}|")
        return "+".join(parts)

    def __str__(self) -> str:
        return self.to_string()

    # ---- other encodings ---------------------------------------------------------------------
    def nodes(self) -> tuple[tuple[tuple[str, int], ...], ...]:
        """Per node 1..3, its ``(op, input)`` pairs: the genotype literal the model code takes."""
        return tuple(
            tuple((op, j) for (i, j), op in zip(EDGES, self.ops) if i == node) for node in range(1, 4)
        )

    @property
    def index(self) -> int:
        """Position in ``Cell.all()`` (node 1's edge varies slowest, ops in ``OPS`` order)."""
        value = 0
        for op in self.ops:
            value = value * len(OPS) + OPS.index(op)
        return value

    @classmethod
    def from_index(cls, index: int) -> Cell:
        if not 0 <= index < NUM_CELLS:
            raise InvalidArchitectureError(f"cell index must be in 0..{NUM_CELLS - 1}, got {index}")
        ops = []
        for _ in EDGES:
            index, digit = divmod(index, len(OPS))
            ops.append(OPS[digit])
        return cls(tuple(reversed(ops)))

    @classmethod
    def all(cls) -> Iterator[Cell]:
        """All 15,625 cells, in index order."""
        for ops in itertools.product(OPS, repeat=len(EDGES)):
            yield cls(ops)

    # ---- identity ----------------------------------------------------------------------------
    def isomorphism_key(self) -> str:
        """A string shared by cells that NAS-Bench-201 counts as the same architecture.

        Each node becomes an expression of the input ``0``: a ``none`` edge, or any op applied to a
        node that is identically zero, contributes the zero term ``#``; ``skip_connect`` passes its
        input's expression through; any other op wraps it as ``(expr)@op``. A node is the sorted
        ``+``-join of its terms (sums commute). The key is node 3's expression, so ops on edges
        that cannot reach the output never appear in it.

        This is the convention of NAS-Bench-201's unique-string computation (``consider_zero``):
        15,625 cells fall into 6,466 classes, the benchmark's published count. Like it, a node is
        zero only when all of its terms are ``#`` and it has one edge (node 1); the conv of a
        zero node is taken as zero although BatchNorm's shift makes it a learned constant.
        """
        exprs = ["0"]
        for node in range(1, 4):
            terms = []
            for (i, j), op in zip(EDGES, self.ops):
                if i != node:
                    continue
                source = exprs[j]
                if op == "none" or source == _ZERO:
                    terms.append(_ZERO)
                elif op == "skip_connect":
                    terms.append(source)
                else:
                    terms.append(f"({source})@{op}")
            exprs.append("+".join(sorted(terms)))
        return exprs[-1]

    def dedup_hash(self) -> str:
        """sha256 of the isomorphism key: equal for cells that compute the same function."""
        return hashlib.sha256(self.isomorphism_key().encode()).hexdigest()
