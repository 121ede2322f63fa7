"""The NB-201 network built from ``nn_code``: reference parameter counts and LEMUR's contract."""

from __future__ import annotations

import importlib

import pytest
import torch

from search_spaces import get_search_space
from search_spaces.nb201 import Cell
from workers.nn_module import load_nn_module
from tests.search_spaces.codecheck import imported_packages

ALL_3X3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
ARCH_0 = "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"
RESNET = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"

# Parameter counts of NAS-Bench-201's reference TinyNetwork (AutoDL-Projects, xautodl/models/
# cell_infers/tiny_network.py at f46486e2), measured by running it with 3 input channels and 10
# classes. The benchmark's own params for C=16, N=5 (0.559386 MB for the ResNet cell, the range
# 0.073306 .. 1.531546 MB on CIFAR-10) agree.
REFERENCE = {
    (16, 5): {ALL_3X3: 1_531_546, ALL_NONE: 73_306, ARCH_0: 129_306, RESNET: 559_386},
    (8, 1): {ALL_3X3: 91_986, ALL_NONE: 18_738, ARCH_0: 21_650, RESNET: 43_154},
    (4, 1): {ALL_3X3: 23_374, ALL_NONE: 4_894, ARCH_0: 5_678, RESNET: 11_054},
}


def build(arch: str, channels: int, cells: int, in_shape: tuple[int, ...], classes: int) -> torch.nn.Module:
    space = get_search_space("nb201", {"channels": channels, "cells_per_stage": cells})
    module = load_nn_module(space.nn_code(arch), space.nn_name(arch))
    return module.Net(in_shape, (classes,), {"lr": 0.1}, torch.device("cpu"))


@pytest.mark.parametrize(("config", "arch"), [(c, a) for c in REFERENCE for a in REFERENCE[c]])
def test_parameter_count_equals_the_reference(config: tuple[int, int], arch: str) -> None:
    model = build(arch, *config, in_shape=(1, 3, 32, 32), classes=10)
    assert sum(p.numel() for p in model.parameters()) == REFERENCE[config][arch]


def test_one_input_channel_saves_exactly_the_stem_weights() -> None:
    # the reference hard-codes 3 input channels; with 1 the 3x3 stem loses 2 * 9 * C weights
    three = build(RESNET, 16, 5, in_shape=(1, 3, 32, 32), classes=10)
    one = build(RESNET, 16, 5, in_shape=(1, 1, 8, 8), classes=10)
    assert sum(p.numel() for p in three.parameters()) - sum(p.numel() for p in one.parameters()) == 2 * 9 * 16


def test_nn_code_is_a_standalone_file_under_lemurs_contract() -> None:
    space = get_search_space("nb201", {"channels": 4, "cells_per_stage": 1})
    code = space.nn_code(RESNET)
    imported = imported_packages(code)
    assert imported <= {"torch", "math"}, imported
    namespace: dict[str, object] = {}
    exec(compile(code, "nn_code", "exec"), namespace)  # noqa: S102
    assert {"lr", "momentum", "weight_decay"} <= set(namespace["supported_hyperparameters"]())  # type: ignore[operator]
    torch.manual_seed(0)
    net = namespace["Net"]((1, 1, 8, 8), (10,), {"lr": 0.1, "momentum": 0.9}, torch.device("cpu"))  # type: ignore[operator]
    net.train_setup({"lr": 0.1, "momentum": 0.9, "epoch": 2})
    inputs = torch.randn(64, 1, 8, 8)
    labels = (inputs.mean(dim=(1, 2, 3)) > 0).long()  # a learnable rule
    batches = [(inputs[i : i + 16], labels[i : i + 16]) for i in range(0, 64, 16)]
    first = net.learn(batches)
    for _ in range(5):
        last = net.learn(batches)
    assert last < first
    assert net(inputs).shape == (64, 10)


def test_generated_code_matches_the_template_and_the_cell() -> None:
    template = importlib.import_module("search_spaces.nb201.model")
    assert template.GENOTYPE == Cell.from_string(template.ARCH).nodes()
    space = get_search_space("nb201", {"channels": 4, "cells_per_stage": 2})
    namespace: dict[str, object] = {}
    exec(compile(space.nn_code(ARCH_0), "nn_code", "exec"), namespace)  # noqa: S102
    assert namespace["ARCH"] == ARCH_0
    assert namespace["GENOTYPE"] == Cell.from_string(ARCH_0).nodes()
    assert (namespace["CHANNELS"], namespace["CELLS_PER_STAGE"]) == (4, 2)


def test_nn_name_follows_lemurs_md5_of_the_code_without_whitespace() -> None:
    import hashlib
    import re

    space = get_search_space("nb201", {"channels": 4, "cells_per_stage": 1})
    code = space.nn_code(RESNET)
    digest = hashlib.md5(re.sub(r"\s", "", code).encode()).hexdigest()
    assert space.nn_name(RESNET) == f"nb201-{digest}"
    assert space.nn_name(RESNET) != space.nn_name(ALL_3X3)
    wider = get_search_space("nb201", {"channels": 8, "cells_per_stage": 1})
    assert wider.nn_name(RESNET) != space.nn_name(RESNET)


def reference_count(n3: int, n1: int, channels: int, cells: int, classes: int, in_channels: int = 3) -> int:
    """The reference network's parameters in closed form, derived from its modules: a cell's
    parameters are its 3x3 and 1x1 ReLU-conv-BN edges (9c^2 + 2c and c^2 + 2c at width c); none,
    skip and pooling have none. The tests above check it against counts measured with the
    reference code."""
    c = channels
    stem = 9 * in_channels * c + 2 * c
    reductions = sum(9 * ci * co + 2 * co + 9 * co * co + 2 * co + ci * co for ci, co in ((c, 2 * c), (2 * c, 4 * c)))
    cells_total = cells * sum(n3 * (9 * w * w + 2 * w) + n1 * (w * w + 2 * w) for w in (c, 2 * c, 4 * c))
    return stem + reductions + cells_total + 2 * 4 * c + 4 * c * classes + classes


def test_the_closed_form_reproduces_the_measured_reference_counts() -> None:
    counts = {ALL_3X3: (6, 0), ALL_NONE: (0, 0), ARCH_0: (0, 2), RESNET: (2, 0)}
    for (channels, cells), by_arch in REFERENCE.items():
        for arch, expected in by_arch.items():
            assert reference_count(*counts[arch], channels, cells, 10) == expected


def test_every_one_of_the_15625_cells_has_the_references_parameter_count() -> None:
    # A cell's count depends only on how many of its 6 edges are 3x3 and 1x1 convs: the 28 pairs
    # (n3, n1) cover all 15,625 cells. One network per pair is built; two random cells of each
    # pair confirm the count does not depend on where the convs sit.
    import random

    cells_by_pair: dict[tuple[int, int], list[Cell]] = {}
    for cell in Cell.all():
        pair = (cell.ops.count("nor_conv_3x3"), cell.ops.count("nor_conv_1x1"))
        cells_by_pair.setdefault(pair, []).append(cell)
    assert len(cells_by_pair) == 28 and sum(map(len, cells_by_pair.values())) == 15_625
    pick = random.Random(0)
    for (n3, n1), cells in sorted(cells_by_pair.items()):
        for cell in pick.sample(cells, min(2, len(cells))):
            model = build(cell.to_string(), 16, 5, in_shape=(1, 3, 32, 32), classes=10)
            assert sum(p.numel() for p in model.parameters()) == reference_count(n3, n1, 16, 5, 10), cell
