"""``nbgraph``: NAS-Bench-Graph's macro space, trained for real with PyTorch Geometric layers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from .._base import SearchSpace, SpaceParams
from .._codegen import assemble
from ..errors import InvalidArchitectureError
from .arch import NODES, OPS, BenchArch

if TYPE_CHECKING:
    import optuna

__all__ = ["NbGraphSearchSpace", "NbGraphSpaceParams"]

OpName = Literal["gat", "gcn", "gin", "cheb", "sage", "arma", "graph", "fc", "skip"]


class NbGraphSpaceParams(SpaceParams):
    """The network around the searched DAG; NAS-Bench-Graph fixes these per dataset (its Cora
    network: 256 wide, no pre-processing layer, one post-processing layer)."""

    dim: int = Field(256, ge=4, le=4096, description="hidden width of every operation (GAT: 4 heads of dim/4)")
    pre_layers: int = Field(0, ge=0, le=3, description="linear layers before the DAG")
    post_layers: int = Field(1, ge=0, le=3, description="linear layers after the leaves' concatenation")
    dropout: float = Field(0.5, ge=0.0, lt=1.0, description="dropout on the input and before every operation")
    ops: tuple[OpName, ...] = Field(OPS, min_length=1, description="the operations a node may take")

    @field_validator("ops")
    @classmethod
    def _in_order(cls, ops: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(ops)) != len(ops):
            raise ValueError(f"each operation may appear once, got {list(ops)}")
        return tuple(op for op in OPS if op in ops)  # the benchmark's order: one canonical form

    @field_validator("dim")
    @classmethod
    def _heads_divide(cls, dim: int) -> int:
        if dim % 4:
            raise ValueError(f"dim must be a multiple of 4 (GAT splits it over 4 heads), got {dim}")
        return dim


def _link_param(node: int) -> str:
    return f"node_{node}_input"


def _op_param(node: int) -> str:
    return f"node_{node}_op"


class NbGraphSearchSpace(SearchSpace):
    """Four computing nodes, each one operation on one earlier node; the leaves feed the output.

    Optuna parameters: ``node_{i}_input`` (0..i-1) for nodes 2..4 and ``node_{i}_op`` for nodes
    1..4. Equivalent architectures share a dedup key (the benchmark's equivalence); ``representative``
    is the member NAS-Bench-Graph trained, under which a results table holds the class."""

    kind = "nbgraph"
    description = (
        "NAS-Bench-Graph's space: a DAG of 4 nodes, each GAT, GCN, GIN, ChebNet, GraphSAGE, ARMA, "
        "k-GNN, a linear layer or a skip on one earlier node, leaves concatenated (26,206 architectures "
        "up to the benchmark's equivalence)"
    )
    Params = NbGraphSpaceParams
    tasks = frozenset({"node-classification"})

    params: NbGraphSpaceParams

    def sample(self, trial: optuna.Trial) -> str:
        params: dict[str, Any] = {}
        for node in range(1, NODES + 1):
            if node > 1:
                params[_link_param(node)] = trial.suggest_categorical(_link_param(node), tuple(range(node)))
            params[_op_param(node)] = trial.suggest_categorical(_op_param(node), self.params.ops)
        return self.decode_params(params)

    def grid(self) -> dict[str, list[Any]]:
        grid: dict[str, list[Any]] = {}
        for node in range(1, NODES + 1):
            if node > 1:
                grid[_link_param(node)] = list(range(node))
            grid[_op_param(node)] = list(self.params.ops)
        return grid

    def decode_params(self, params: Mapping[str, Any]) -> str:
        try:
            links = tuple(0 if node == 1 else int(params[_link_param(node)]) for node in range(1, NODES + 1))
            ops = tuple(str(params[_op_param(node)]) for node in range(1, NODES + 1))
        except KeyError as missing:
            raise InvalidArchitectureError(f"missing parameter {missing} for an nbgraph architecture") from None
        return self._checked(BenchArch(links, ops)).to_string()

    def encode_params(self, encoding: str) -> dict[str, Any]:
        arch = self._parse(encoding)
        params: dict[str, Any] = {}
        for node, (link, op) in enumerate(zip(arch.links, arch.ops), start=1):
            if node > 1:
                params[_link_param(node)] = link
            params[_op_param(node)] = op
        return params

    def canonical(self, encoding: str) -> str:
        return self._parse(encoding).to_string()

    def representative(self, encoding: str) -> str:
        return self._parse(encoding).canonical().to_string()

    def dedup_key(self, encoding: str) -> str:
        return self._parse(encoding).dedup_hash()

    def drawing(self, encoding: str) -> dict[str, Any]:
        arch = self._parse(encoding)
        edges = [{"from": link, "to": node, "op": op} for node, (link, op) in enumerate(zip(arch.links, arch.ops), 1)]
        edges += [{"from": leaf, "to": NODES + 1, "op": "concat"} for leaf in arch.leaves]
        notes = [f"dim={self.params.dim}", f"pre_layers={self.params.pre_layers}", f"post_layers={self.params.post_layers}"]
        return {"kind": "cell", "nodes": NODES + 2, "edges": edges, "notes": notes}

    def nn_code(self, encoding: str) -> str:
        arch = self._parse(encoding)
        p = self.params
        block = (
            "# cellar: architecture\n"
            f'ARCH = "{arch.to_string()}"\n'
            f"LINKS = {arch.links!r}\n"
            f"OPS = {arch.ops!r}\n"
            f"DIM = {p.dim}\n"
            f"PRE_LAYERS = {p.pre_layers}\n"
            f"POST_LAYERS = {p.post_layers}\n"
            f"DROPOUT = {p.dropout!r}\n"
        )
        header = f"# NAS-Bench-Graph architecture {arch.to_string()}\n# generated by Cellar under LEMUR's model contract"
        return assemble("search_spaces.nbgraph.model", block, header=header)

    # ---- membership --------------------------------------------------------------------------
    def _checked(self, arch: BenchArch) -> BenchArch:
        outside = sorted({op for op in arch.ops if op not in self.params.ops})
        if outside:
            raise InvalidArchitectureError(
                f"{arch.to_string()} uses {', '.join(outside)}, which this space's ops ({', '.join(self.params.ops)}) leave out"
            )
        return arch

    def _parse(self, encoding: str) -> BenchArch:
        return self._checked(BenchArch.from_string(encoding))
