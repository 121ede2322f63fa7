"""NAS-Bench-201 cells as data: the string format, the index and the isomorphism key."""

from __future__ import annotations

import itertools
import re

import pytest

from search_spaces import InvalidArchitectureError
from search_spaces.nb201 import EDGES, NUM_CELLS, OPS, Cell

RESNET = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"


def test_every_cell_round_trips_through_its_string_and_index() -> None:
    cells = list(Cell.all())
    assert len(cells) == NUM_CELLS == 15_625
    assert len({c.to_string() for c in cells}) == NUM_CELLS
    for index, cell in enumerate(cells):
        assert Cell.from_string(cell.to_string()) == cell
        assert cell.index == index
        assert Cell.from_index(index) == cell


def test_string_format_is_nas_bench_201s() -> None:
    cell = Cell(("nor_conv_3x3", "nor_conv_3x3", "avg_pool_3x3", "skip_connect", "nor_conv_3x3", "skip_connect"))
    assert cell.to_string() == "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    assert OPS == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    assert EDGES == ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))


def test_edges_of_a_node_may_come_in_any_order() -> None:
    shuffled = "|nor_conv_3x3~0|+|nor_conv_3x3~1|none~0|+|skip_connect~2|none~1|skip_connect~0|"
    assert Cell.from_string(shuffled).to_string() == RESNET


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty arch string"),
        ("|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|", "2 node segments, expected 3"),
        ("|conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown op 'conv_5x5'"),
        ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "node 1 can only take inputs 0..0"),
        ("|none~0|+|none~0|+|none~0|none~1|none~2|", "node 2 has no edge from input(s) [1]"),
        ("|none~0|+|none~0|none~0|+|none~0|none~1|none~2|", "lists input 0 twice"),
        ("|none0|+|none~0|none~1|+|none~0|none~1|none~2|", "not of the form op~input"),
    ],
)
def test_bad_strings_say_what_is_wrong(text: str, fragment: str) -> None:
    with pytest.raises(InvalidArchitectureError, match=re.escape(fragment)):
        Cell.from_string(text)


def test_isomorphism_classes_match_the_benchmarks_count() -> None:
    # NAS-Bench-201 / NATS-Bench report 6,466 unique architectures among the 15,625 cells
    assert len({cell.isomorphism_key() for cell in Cell.all()}) == 6466


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (RESNET, "#+#+((0)@nor_conv_3x3)@nor_conv_3x3+0"),
        ("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "#+#+#"),
        (
            "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
            "(0)@avg_pool_3x3+(0)@avg_pool_3x3+(0)@nor_conv_1x1+(0)@nor_conv_1x1",
        ),
        ("|none~0|+|nor_conv_3x3~0|none~1|+|none~0|none~1|nor_conv_3x3~2|", "#+#+(#+(0)@nor_conv_3x3)@nor_conv_3x3"),
    ],
)
def test_isomorphism_keys_of_known_cells(text: str, key: str) -> None:
    # keys as NAS-Bench-201's own unique-string computation gives them for these cells
    assert Cell.from_string(text).isomorphism_key() == key


def test_ops_that_cannot_reach_the_output_do_not_change_the_key() -> None:
    checked = 0
    for cell in Cell.all():
        ops = dict(zip(EDGES, cell.ops))
        node1_reaches_output = ops[(3, 1)] != "none" or (ops[(2, 1)] != "none" and ops[(3, 2)] != "none")
        if node1_reaches_output:
            continue
        for op in OPS:
            variant = Cell(tuple(op if edge == (1, 0) else ops[edge] for edge in EDGES))
            assert variant.isomorphism_key() == cell.isomorphism_key()
        checked += 1
    assert checked > 1000


def test_skip_chains_and_edge_order_are_isomorphic() -> None:
    # node 2 = skip(node 1) = skip(skip(x)) is the same as node 2 = skip(x)
    a = Cell.from_string("|skip_connect~0|+|none~0|skip_connect~1|+|none~0|none~1|skip_connect~2|")
    b = Cell.from_string("|skip_connect~0|+|skip_connect~0|none~1|+|none~0|none~1|skip_connect~2|")
    assert a != b
    assert a.dedup_hash() == b.dedup_hash()
    # sums commute: conv3x3(x) + conv1x1(x) either way round
    c = Cell.from_string("|nor_conv_3x3~0|+|none~0|none~1|+|nor_conv_1x1~0|skip_connect~1|none~2|")
    d = Cell.from_string("|nor_conv_1x1~0|+|none~0|none~1|+|nor_conv_3x3~0|skip_connect~1|none~2|")
    assert c != d and c.dedup_hash() == d.dedup_hash()
    # different functions stay apart
    assert Cell.from_string(RESNET).dedup_hash() != c.dedup_hash()


def test_sampled_parameter_names_cover_every_edge() -> None:
    import optuna

    from search_spaces import get_search_space

    space = get_search_space("nb201", {"channels": 4, "cells_per_stage": 1})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    seen = set()
    for _ in range(50):
        trial = study.ask()
        encoding = space.sample(trial)
        assert space.decode_params(trial.params) == encoding == space.canonical(encoding)
        assert space.encode_params(encoding) == trial.params
        assert set(trial.params) == {f"edge_{i}_{j}" for i, j in EDGES}
        seen.add(encoding)
        study.tell(trial, 0.0)
    assert len(seen) == 50


def test_all_products_of_ops_are_valid_cells() -> None:
    for ops in itertools.islice(itertools.product(OPS, repeat=6), 0, None, 997):
        assert Cell(ops).to_string().count("~") == 6


def test_a_subset_of_operations_makes_a_smaller_space() -> None:
    import itertools

    import optuna
    import pytest

    from search_spaces import SearchSpaceError, get_search_space

    space = get_search_space("nb201", {"channels": 4, "ops": ["nor_conv_3x3", "none", "skip_connect", "nor_conv_1x1"]})
    assert space.params.ops == ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3"]  # canonical order
    grid = space.grid()
    assert list(grid) == [f"edge_{i}_{j}" for i, j in EDGES] and all(v == space.params.ops for v in grid.values())
    cells = [Cell(ops) for ops in itertools.product(space.params.ops, repeat=len(EDGES))]
    assert len(cells) == 4096 and len({c.dedup_hash() for c in cells}) == 1236
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    sampled = [space.sample(study.ask()) for _ in range(50)]
    assert not [s for s in sampled if "avg_pool_3x3" in s]
    with pytest.raises(SearchSpaceError, match="uses avg_pool_3x3, which this space's ops"):
        space.canonical("|avg_pool_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    for bad in (["nor_conv_5x5", "none"], ["none"], ["none", "none"]):
        with pytest.raises(Exception, match="ops"):
            get_search_space("nb201", {"ops": bad})
