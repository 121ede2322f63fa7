"""``SearchSpace.drawing``: what the dashboard draws comes from the space's own reading of an
encoding: a cell's six edges with their ops, a GNN's and a KAN's layers with their widths."""

from __future__ import annotations

import pytest

from search_spaces import InvalidArchitectureError, get_search_space
from search_spaces.nb201 import EDGES, Cell


def test_a_cell_is_its_six_edges() -> None:
    arch = "|nor_conv_3x3~0|+|skip_connect~0|avg_pool_3x3~1|+|none~0|nor_conv_1x1~1|skip_connect~2|"
    drawing = get_search_space("nb201", {"channels": 8, "cells_per_stage": 1}).drawing(arch)
    assert drawing["kind"] == "cell" and drawing["nodes"] == 4
    assert [(e["to"], e["from"], e["op"]) for e in drawing["edges"]] == [
        (i, j, op) for (i, j), op in zip(EDGES, Cell.from_string(arch).ops)
    ]
    assert "channels=8" in drawing["notes"]


def test_a_gnn_is_its_layers_then_its_classifier() -> None:
    space = get_search_space("gnn", {}, task="graph-classification")
    drawing = space.drawing("gat(h=32,heads=4,act=elu,drop=0.2)|sage(h=16,aggr=max,act=relu,drop=0.5);skip=jk;readout=mean")
    assert drawing["kind"] == "stack"
    assert [(l["label"], l["width"]) for l in drawing["layers"]] == [("gat", 128), ("sage", 16), ("linear", None)]
    assert drawing["layers"][1]["detail"] == "h=16,aggr=max,act=relu,drop=0.5"
    assert drawing["notes"] == ["skip=jk", "readout=mean"]
    # node classification never pools: no readout to draw
    node = get_search_space("gnn", {}, task="node-classification").drawing("gcn(h=16,act=relu,drop=0.5);skip=none;readout=mean")
    assert node["notes"] == ["skip=none"]


def test_a_kan_is_its_layers_with_their_bases() -> None:
    drawing = get_search_space("kan", {"max_conv_layers": 1}).drawing("conv:cheb(d=3)x8|bspline(g=5,k=3)x16|rbf(g=8)")
    assert [(l["label"], l["detail"], l["width"]) for l in drawing["layers"]] == [
        ("conv cheb", "cheb(d=3)", 8), ("bspline", "bspline(g=5,k=3)", 16), ("rbf", "rbf(g=8)", None)
    ]
    assert drawing["notes"] == ["family=kan"]


def test_an_encoding_the_space_cannot_read_is_refused() -> None:
    with pytest.raises(InvalidArchitectureError):
        get_search_space("nb201", {}).drawing("|nor_conv_3x3~0|")
    assert get_search_space("code", {"nn_code": _MODEL}).drawing('{"lr": 0.1}') is None


_MODEL = """
def supported_hyperparameters():
    return {"lr"}


class Net:
    def __init__(self, in_shape, out_shape, prm, device):
        pass

    def forward(self, x):
        return x

    def train_setup(self, prm):
        pass

    def learn(self, data):
        pass
"""
