"""NAS-Bench-Graph architectures as data: parsing, the benchmark's canonical form and its key.

Pure Python on purpose: the API process validates and deduplicates architectures without torch.

NAS-Bench-Graph's macro space (Qin et al., NeurIPS 2022) is a DAG of four computing nodes after
the input (node 0). Computing node *i* (1..4) applies one operation to one earlier node: its
*link* ``l_i`` in ``0..i-1``; nodes that no other node reads (the leaves) feed the output. So an
architecture is four links and four operations. Its string form::

    gcn@0|gin@0|fc@1|cheb@2

one ``op@link`` per computing node, in order. The benchmark trained one architecture per class of
equivalent ones: 26,206 of the 9 operations' 24 link patterns. ``canonical`` maps any architecture to
its class's member, by the benchmark's own rules (``regularize``, ``move_skip_op`` and
``equalpart_sort`` of its ``architecture.py``, re-implemented here), and ``key`` gives that member's
key in the benchmark's files (its ``hash_arch``). The tests check that the canonical forms of the
whole space are exactly the 26,206 keys the benchmark ships.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass

from ..errors import InvalidArchitectureError

__all__ = ["LINK_PATTERNS", "OPS", "OPS_PROTEINS", "NODES", "BenchArch"]

#: the operations, in the benchmark's order (its keys number them so)
OPS: tuple[str, ...] = ("gat", "gcn", "gin", "cheb", "sage", "arma", "graph", "fc", "skip")
#: the smaller set the benchmark searched on ogbn-proteins, in its order
OPS_PROTEINS: tuple[str, ...] = ("gcn", "sage", "arma", "fc", "skip")
NODES = 4
#: the 9 link patterns up to relabelling the nodes, in the benchmark's order (their key's first digit)
LINK_PATTERNS: tuple[tuple[int, ...], ...] = (
    (0, 0, 0, 0), (0, 0, 0, 1), (0, 0, 1, 1), (0, 0, 1, 2), (0, 0, 1, 3),
    (0, 1, 1, 1), (0, 1, 1, 2), (0, 1, 2, 2), (0, 1, 2, 3),
)  # fmt: skip

#: the other 15 link patterns -> the pattern the benchmark relabels them to, and the order in which the
#: operations follow (new node k takes old node ORDER[k]'s operation); the benchmark's ``regularize``
_RELABEL: dict[tuple[int, ...], tuple[tuple[int, ...], tuple[int, ...]]] = {
    (0, 0, 0, 2): ((0, 0, 0, 1), (1, 0, 2, 3)),
    (0, 0, 0, 3): ((0, 0, 0, 1), (2, 0, 1, 3)),
    (0, 0, 1, 0): ((0, 0, 0, 1), (0, 1, 3, 2)),
    (0, 0, 2, 0): ((0, 0, 0, 1), (1, 0, 3, 2)),
    (0, 0, 2, 1): ((0, 0, 1, 2), (1, 0, 2, 3)),
    (0, 0, 2, 2): ((0, 0, 1, 1), (1, 0, 2, 3)),
    (0, 0, 2, 3): ((0, 0, 1, 3), (1, 0, 2, 3)),
    (0, 1, 0, 0): ((0, 0, 0, 1), (0, 2, 3, 1)),
    (0, 1, 0, 1): ((0, 0, 1, 1), (0, 2, 1, 3)),
    (0, 1, 0, 2): ((0, 0, 1, 3), (0, 2, 1, 3)),
    (0, 1, 0, 3): ((0, 0, 1, 2), (0, 2, 1, 3)),
    (0, 1, 1, 0): ((0, 0, 1, 1), (0, 3, 1, 2)),
    (0, 1, 1, 3): ((0, 1, 1, 2), (0, 2, 1, 3)),
    (0, 1, 2, 0): ((0, 0, 1, 3), (0, 3, 1, 2)),
    (0, 1, 2, 1): ((0, 1, 1, 2), (0, 1, 3, 2)),
}
#: per canonical pattern, the positions whose operations may be swapped freely (sorted by op order)
_SYMMETRIC: dict[tuple[int, ...], tuple[int, ...]] = {
    (0, 0, 0, 0): (0, 1, 2, 3),
    (0, 0, 0, 1): (1, 2),
    (0, 0, 1, 1): (2, 3),
    (0, 1, 1, 1): (1, 2, 3),
    (0, 1, 2, 2): (2, 3),
}


def _move_to_front(k: int, links: list[int], ops: list[str]) -> tuple[list[int], list[str]]:
    """The benchmark's ``move_one``: node k+1 (a skip) becomes the first computing node, reading the
    input; the nodes that read it read its input instead; links are renumbered."""
    new = list(links)
    for i, parent in enumerate(links):
        if parent == k + 1:
            new[i] = new[k]
        elif parent <= k:
            new[i] = parent + 1
    return [0, *new[:k], *new[k + 1 :]], [ops[k], *ops[:k], *ops[k + 1 :]]


def _identity_path(k: int, links: list[int], ops: list[str]) -> bool:
    """Node k+1 computes the input unchanged: every node on its path from the input is a skip."""
    while k > -1:
        if ops[k] != "skip":
            return False
        k = links[k] - 1
    return True


def _move_skips(links: list[int], ops: list[str]) -> tuple[list[int], list[str]]:
    """The benchmark's ``move_skip_op``: skips whose place in the DAG does not matter go first."""
    for i in range(NODES):
        if ops[i] != "skip":
            continue
        has_child = any(parent == i + 1 for parent in links)
        has_sibling = any(j != i and parent == links[i] for j, parent in enumerate(links))
        if has_child or not has_sibling or (_identity_path(i, links, ops) and not has_child):
            links, ops = _move_to_front(i, links, ops)
    if links == [0, 1, 2, 1]:
        links, ops = [0, 1, 1, 2], [ops[0], ops[1], ops[3], ops[2]]
    elif links == [0, 1, 1, 3]:
        links, ops = [0, 1, 1, 2], [ops[0], ops[2], ops[1], ops[3]]
    return links, ops


def _sort_symmetric(links: tuple[int, ...], ops: list[str]) -> list[str]:
    """The benchmark's ``equalpart_sort``: operations on interchangeable nodes in the op order."""
    rank = {name: i for i, name in enumerate(OPS)}
    if links == (0, 0, 1, 2):  # two branches of two: order the branches by their first, then second op
        a, b, c, d = ops
        if rank[a] > rank[b] or (a == b and rank[c] > rank[d]):
            return [b, a, d, c]
        return list(ops)
    positions = _SYMMETRIC.get(links)
    if positions is None:
        return list(ops)
    out = list(ops)
    for position, name in zip(positions, sorted((ops[p] for p in positions), key=rank.__getitem__)):
        out[position] = name
    return out


@dataclass(frozen=True, order=True)
class BenchArch:
    """Four computing nodes: ``ops[i]`` applied to node ``links[i]`` (0 is the input)."""

    links: tuple[int, ...]
    ops: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.links) != NODES or len(self.ops) != NODES:
            raise InvalidArchitectureError(f"an architecture has {NODES} computing nodes, got {len(self.ops)}")
        for i, link in enumerate(self.links):
            if not 0 <= link <= i:
                raise InvalidArchitectureError(
                    f"node {i + 1} reads node {link}; a node reads the input (0) or an earlier node (0..{i})"
                )
        unknown = [op for op in self.ops if op not in OPS]
        if unknown:
            raise InvalidArchitectureError(f"unknown operation(s) {unknown}; choose from: {', '.join(OPS)}")

    @classmethod
    def from_string(cls, text: str) -> BenchArch:
        parts = [p.strip() for p in text.strip().split("|")]
        if len(parts) != NODES or not all("@" in p for p in parts):
            raise InvalidArchitectureError(
                f"not a NAS-Bench-Graph architecture: {text!r}; expected {NODES} 'op@link' joined by '|', "
                "e.g. gcn@0|gin@0|fc@1|cheb@2"
            )
        ops, links = [], []
        for part in parts:
            op, _, link = part.partition("@")
            if not link.strip().isdigit():
                raise InvalidArchitectureError(f"{part!r}: the link after '@' must be a node number")
            ops.append(op.strip())
            links.append(int(link))
        return cls(tuple(links), tuple(ops))

    def to_string(self) -> str:
        return "|".join(f"{op}@{link}" for op, link in zip(self.ops, self.links))

    def canonical(self) -> BenchArch:
        """The member of its class that the benchmark trained."""
        links, ops = list(self.links), list(self.ops)
        relabel = _RELABEL.get(tuple(links))
        if relabel is not None:
            pattern, order = relabel
            links, ops = list(pattern), [ops[k] for k in order]
        links, ops = _move_skips(links, ops)
        return BenchArch(tuple(links), tuple(_sort_symmetric(tuple(links), ops)))

    def key(self, ops: tuple[str, ...] = OPS) -> int:
        """The benchmark's key of this (canonical) architecture: the link pattern's index, then each
        operation's index, as digits in base ``len(ops) + 1``."""
        if self.links not in LINK_PATTERNS:
            raise InvalidArchitectureError(f"{self.to_string()} is not canonical; key its canonical() form")
        base = len(ops) + 1
        value = LINK_PATTERNS.index(self.links)
        for op in self.ops:
            if op not in ops:
                raise InvalidArchitectureError(f"operation {op!r} is not among {', '.join(ops)}")
            value = value * base + ops.index(op)
        return value

    @property
    def leaves(self) -> tuple[int, ...]:
        """The computing nodes (1..4) no other node reads: they feed the output."""
        read = set(self.links)
        return tuple(i for i in range(1, NODES + 1) if i not in read)

    def dedup_hash(self) -> str:
        return hashlib.sha256(self.canonical().to_string().encode()).hexdigest()[:32]

    @classmethod
    def all(cls) -> list[BenchArch]:
        """Every architecture of the macro space (24 link patterns x 9^4 operations)."""
        patterns = itertools.product(*(range(i + 1) for i in range(NODES)))
        return [cls(links, ops) for links in patterns for ops in itertools.product(OPS, repeat=NODES)]
