"""The ``gnn`` space: encodings, Optuna round trips, and the generated PyG networks (real PyG, no mocks)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import warnings
from collections.abc import Iterator

import optuna
import pydantic
import pytest
import torch

from search_spaces import SearchSpace
from search_spaces._registry import LazyRegistry
from search_spaces.errors import InvalidArchitectureError
from search_spaces.gnn import (
    ACTIVATIONS,
    AGGREGATING_CONVS,
    AGGREGATIONS,
    CONVS,
    READOUTS,
    SKIP_MODES,
    GnnArch,
    GnnSearchSpace,
)
from workers.nn_module import load_nn_module
from tests.search_spaces.codecheck import imported_packages

with warnings.catch_warnings():  # PyG's import calls the deprecated torch.jit.script
    warnings.simplefilter("ignore", DeprecationWarning)
    from torch_geometric.data import Batch, Data
    from torch_geometric.datasets import KarateClub

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

FEATURES, CLASSES = 34, 4  # KarateClub: one-hot node ids, 4 communities
GCN = "gcn(h=16,act=relu,drop=0.5)"
END = ";skip=none;readout=mean"
GCN2 = f"{GCN}|{GCN}{END}"
MIXED = (
    "gat(h=8,heads=4,act=elu,drop=0.2)|sage(h=16,aggr=max,act=relu,drop=0.0)|"
    "gin(h=16,act=tanh,drop=0.5)|graphconv(h=8,aggr=add,act=leaky_relu,drop=0.2);skip=jk;readout=max"
)
WIDE = {"activations": list(ACTIVATIONS)}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small models on 2 cores: threads only contend
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def karate() -> Data:
    return KarateClub()[0]


def random_graphs(sizes: tuple[int, ...] = (5, 9, 3, 7), seed: int = 0) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    graphs = []
    for n in sizes:
        edges = torch.randint(0, n, (2, 2 * n), generator=generator)
        x = torch.randn(n, FEATURES, generator=generator)
        graphs.append(Data(x=x, edge_index=torch.cat([edges, edges.flip(0)], dim=1)))  # undirected
    return Batch.from_data_list(graphs)


def build(encoding: str, space: GnnSearchSpace | None = None, seed: int = 0) -> torch.nn.Module:
    space = space or GnnSearchSpace(WIDE)
    module = load_nn_module(space.nn_code(encoding), space.nn_name(encoding))
    torch.manual_seed(seed)
    return module.Net((1, FEATURES), (CLASSES,), {"lr": 0.01}, torch.device("cpu"))


def layer(conv: str, hidden: int = 16, act: str = "relu", drop: float = 0.2) -> str:
    extra = ",heads=2" if conv == "gat" else ",aggr=mean" if conv in AGGREGATING_CONVS else ""
    return f"{conv}(h={hidden}{extra},act={act},drop={drop})"


def parameters(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# ---- encodings and Optuna ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "params",
    [
        {},
        WIDE,
        {"min_layers": 2, "convs": ["gat", "sage"], "hidden_sizes": [4], "readouts": ["add"]},
        {"max_layers": 1, "convs": ["gin"], "skip_modes": ["jk"], "dropouts": [0.1]},
    ],
)
def test_sample_encode_decode_and_canonical_round_trip(params: dict) -> None:
    space = GnnSearchSpace(params)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen_convs, seen_skips, depths = set(), set(), set()
    for _ in range(300):
        trial = study.ask()
        encoding = space.sample(trial)
        assert space.canonical(encoding) == encoding
        assert space.encode_params(encoding) == trial.params
        assert space.decode_params(trial.params) == encoding
        arch = GnnArch.from_string(encoding)
        depth = trial.params["layers"]
        assert len(arch.layers) == depth
        # conditional parameters are asked only where they matter
        for i in range(4):
            per_layer = {key for key in trial.params if key.startswith(f"layer_{i}_")}
            if i >= depth:
                assert not per_layer
                continue
            conv = trial.params[f"layer_{i}_conv"]
            assert (f"layer_{i}_heads" in per_layer) == (conv == "gat")
            assert (f"layer_{i}_aggr" in per_layer) == (conv in AGGREGATING_CONVS)
            seen_convs.add(conv)
        seen_skips.add(arch.skip)
        depths.add(depth)
        study.tell(trial, 0.0)
    assert seen_convs == set(space.params.convs)
    assert seen_skips == set(space.params.skip_modes)
    assert depths == set(range(space.params.min_layers, space.params.max_layers + 1))


def test_canonical_orders_keys_and_drops_parameters_a_conv_does_not_read() -> None:
    space = GnnSearchSpace()
    messy = (
        " gcn( drop=0.50 , act=relu, heads=4, aggr=max, h=16 ) | gat(act=elu,h=8,drop=.2,heads=2,aggr=mean)"
        " ; readout=mean ; skip=residual "
    )
    expected = "gcn(h=16,act=relu,drop=0.5)|gat(h=8,heads=2,act=elu,drop=0.2);skip=residual;readout=mean"
    assert space.canonical(messy) == expected
    assert space.canonical(expected) == expected


@pytest.mark.parametrize(
    ("encoding", "message"),
    [
        ("", "empty GNN architecture; expected e.g."),
        (GCN, "lacks ;skip=... and ;readout=..."),
        (f"{GCN};skip=jk", "lacks ;readout=..."),
        (f"mlp(h=16,act=relu,drop=0.5){END}", "unknown conv 'mlp'; choose one of: gcn, gat, sage, gin, graphconv"),
        (f"gcn h=16{END}", r"is not of the form conv\(key=value,...\)"),
        (f"gcn(h=16,act=relu){END}", r"layer 0: gcn\(...\) lacks drop"),
        (f"{GCN}|gat(h=8,act=elu,drop=0.2){END}", r"layer 1: gat\(...\) lacks heads; e.g. gat\(h=16,heads=4"),
        (f"sage(h=16,act=relu,drop=0.5){END}", "lacks aggr"),
        (f"sage(h=16,aggr=lstm,act=relu,drop=0.5){END}", "unknown aggregation 'lstm'; choose one of: mean, add, max"),
        (f"gcn(h=16,act=swish,drop=0.5){END}", "unknown activation 'swish'; choose one of: relu, elu"),
        (f"gcn(h=0,act=relu,drop=0.5){END}", r"h \(hidden size\) must be a positive integer, got 0"),
        (f"gcn(h=big,act=relu,drop=0.5){END}", "must be a positive integer, got 'big'"),
        (f"gcn(h=16,act=relu,drop=1.0){END}", r"drop must be a probability in \[0, 1\)"),
        (f"gcn(h=16,act=relu,drop=nan){END}", r"drop must be a probability in \[0, 1\)"),
        (f"gcn(h=16,act=relu,drop=0.5,bias=0){END}", "unknown layer key 'bias'; layer keys are: h, heads, aggr, act"),
        (f"gcn(h=16,h=8,act=relu,drop=0.5){END}", "key 'h' given twice"),
        (f"gat(h=16,heads=0,act=relu,drop=0.5){END}", "heads must be a positive integer, got 0"),
        (f"{GCN};skip=dense;readout=mean", "unknown skip mode 'dense'; choose one of: none, residual, jk"),
        (f"{GCN};skip=none;readout=sort", "unknown readout 'sort'; choose one of: mean, add, max"),
        (f"{GCN}{END};pool=max", "is not skip=... or readout=..."),
        (f"{GCN};skip=none{END}", "skip given twice"),
        ("|".join([GCN] * 5) + END, "1..4 layers separated by '|', got 5"),
    ],
)
def test_bad_encodings_are_refused_with_the_valid_choices(encoding: str, message: str) -> None:
    space = GnnSearchSpace(WIDE)
    for method in (space.canonical, space.encode_params, space.dedup_key, space.nn_code):
        with pytest.raises(InvalidArchitectureError, match=message):
            method(encoding)


@pytest.mark.parametrize(
    ("encoding", "message"),
    [
        (MIXED, r"4 layers is outside this space's 1..2"),
        (f"{layer('gat')};skip=none;readout=mean", r"layer 0: conv 'gat' is not offered by this space \(gcn, sage\)"),
        (f"{layer('gcn', hidden=64)};skip=none;readout=mean", r"hidden size 64 is not offered by this space \(8, 16\)"),
        (f"{layer('sage')}|{layer('gcn', act='tanh')}{END}", "layer 1: activation 'tanh' is not offered"),
        (f"{layer('gcn', drop=0.3)};skip=none;readout=mean", r"dropout 0.3 is not offered by this space \(0.0, 0.2\)"),
        (f"{layer('gcn')};skip=jk;readout=mean", r"skip mode 'jk' is not offered by this space \(none, residual\)"),
        (f"{layer('gcn')};skip=none;readout=max", r"readout 'max' is not offered by this space \(mean\)"),
    ],
)
def test_encodings_outside_the_spaces_choices_are_refused(encoding: str, message: str) -> None:
    space = GnnSearchSpace(
        {
            "max_layers": 2,
            "convs": ["gcn", "sage"],
            "hidden_sizes": [8, 16],
            "activations": ["relu"],
            "dropouts": [0.0, 0.2],
            "skip_modes": ["none", "residual"],
            "readouts": ["mean"],
        }
    )
    with pytest.raises(InvalidArchitectureError, match=message):
        space.canonical(encoding)


def test_decode_params_names_what_is_missing_and_ignores_what_is_irrelevant() -> None:
    space = GnnSearchSpace()
    params = space.encode_params(GCN2)
    for key in ("layers", "layer_1_act", "skip"):
        with pytest.raises(InvalidArchitectureError, match=f"missing parameter '{key}'"):
            space.decode_params({k: v for k, v in params.items() if k != key})
    stale = {**params, "layer_0_heads": 8, "layer_1_aggr": "max", "layer_2_conv": "gat", "lr": 0.1}
    assert space.decode_params(stale) == GCN2
    with pytest.raises(InvalidArchitectureError, match="layer 0: unknown conv 'cheb'; choose one of"):
        space.decode_params({**params, "layer_0_conv": "cheb"})
    with pytest.raises(InvalidArchitectureError, match=r"'layers' must be an integer in 1..4, got 7"):
        space.decode_params({**params, "layers": 7})


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"min_layers": 3, "max_layers": 2}, "min_layers \\(3\\) exceeds max_layers \\(2\\)"),
        ({"max_layers": 5}, "max_layers"),
        ({"convs": ["gcn", "cheb"]}, "convs"),
        ({"convs": []}, "convs"),
        ({"hidden_sizes": [16, 16]}, "choices must not repeat"),
        ({"dropouts": [1.0]}, "dropouts"),
        ({"heads": [0]}, "heads"),
        ({"readouts": ["sort"]}, "readouts"),
    ],
)
def test_params_are_validated(params: dict, message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        GnnSearchSpace.validate_params(params)


def test_dedup_ignores_parameters_irrelevant_to_a_choice() -> None:
    space = GnnSearchSpace()
    key = space.dedup_key(GCN2)
    assert space.dedup_key(GCN2.replace("gcn(h=16,", "gcn(heads=4,aggr=max,h=16,")) == key
    stale = {**space.encode_params(GCN2), "layer_0_heads": 2, "layer_2_conv": "gat", "layer_2_hidden": 64}
    assert space.dedup_key(space.decode_params(stale)) == key
    # jumping knowledge over one layer concatenates one output: the same network as no skip
    one = layer("gat", 8)
    assert space.dedup_key(f"{one};skip=jk;readout=add") == space.dedup_key(f"{one};skip=none;readout=add")
    assert space.dedup_key(f"{one};skip=residual;readout=add") != space.dedup_key(f"{one};skip=none;readout=add")
    for other in (
        GCN2.replace("skip=none", "skip=jk"),
        GCN2.replace("readout=mean", "readout=max"),
        GCN2.replace("h=16", "h=32", 1),
        GCN2.replace("drop=0.5", "drop=0.2", 1),
        GCN2.replace("gcn", "gin", 1),
    ):
        assert space.dedup_key(other) != key, other


def test_jk_over_one_layer_builds_the_same_network_as_no_skip(karate: Data) -> None:
    one = layer("sage", 8)
    jk, none = build(f"{one};skip=jk;readout=mean"), build(f"{one};skip=none;readout=mean")
    assert parameters(jk) == parameters(none)
    with torch.no_grad():
        assert torch.equal(jk.eval()(karate), none.eval()(karate))


def test_registry_line_loads_the_space_and_its_schema_is_json() -> None:
    line = {"gnn": "search_spaces.gnn.space:GnnSearchSpace"}  # the entry for search_spaces/__init__.py
    registry: LazyRegistry[type[SearchSpace]] = LazyRegistry("search space", line)
    cls = registry.load("gnn")
    assert cls is GnnSearchSpace and cls.kind == "gnn"
    assert cls.tasks == {"node-classification", "graph-classification"}
    schema = json.loads(json.dumps(cls.schema()))
    assert set(schema["params"]["properties"]) >= {"max_layers", "convs", "hidden_sizes", "heads", "readouts"}
    with pytest.raises(pydantic.ValidationError, match="no_such_parameter"):
        cls.validate_params({"no_such_parameter": 1})


def test_space_module_stays_torch_free() -> None:
    code = "import sys, search_spaces.gnn; assert 'torch' not in sys.modules and 'torch_geometric' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- generated code --------------------------------------------------------------------------
def test_nn_code_is_a_standalone_file_under_lemurs_contract(karate: Data) -> None:
    space = GnnSearchSpace()
    code = space.nn_code(GCN2)
    imported = imported_packages(code)
    assert imported <= {"torch", "torch_geometric", "math"}, imported
    assert "search_spaces" not in code
    namespace: dict[str, object] = {}
    exec(compile(code, "nn_code", "exec"), namespace)  # noqa: S102
    assert {"lr", "momentum", "weight_decay"} <= set(namespace["supported_hyperparameters"]())  # type: ignore[operator]
    torch.manual_seed(0)
    net = namespace["Net"]((1, FEATURES), (CLASSES,), {"lr": 0.01}, torch.device("cpu"))  # type: ignore[operator]
    net.eval()
    with torch.no_grad():
        assert net(karate).shape == (karate.num_nodes, CLASSES)  # node level: no batch
        graphs = random_graphs()
        assert net(graphs).shape == (graphs.num_graphs, CLASSES)  # graph level: pooled


def test_generated_constants_match_the_encoding_and_the_template_is_consistent() -> None:
    template = importlib.import_module("search_spaces.gnn.model")
    arch = GnnArch.from_string(template.ARCH)
    assert template.LAYERS == arch.spec()
    assert (template.SKIP, template.READOUT) == (arch.skip, arch.readout)
    # the template's resolver tables offer exactly the names the encoding accepts
    assert tuple(template.CONVS) == CONVS
    assert tuple(template.ACTIVATIONS) == ACTIVATIONS
    assert tuple(template.READOUTS) == READOUTS
    assert template.SKIP_MODES == SKIP_MODES
    namespace: dict[str, object] = {}
    exec(compile(GnnSearchSpace().nn_code(MIXED), "nn_code", "exec"), namespace)  # noqa: S102
    assert namespace["ARCH"] == MIXED
    assert namespace["LAYERS"] == GnnArch.from_string(MIXED).spec()
    assert (namespace["SKIP"], namespace["READOUT"]) == ("jk", "max")
    with pytest.raises(ValueError, match="unknown conv 'cheb'; choose one of: gcn, gat, sage, gin, graphconv"):
        template.resolve(template.CONVS, "conv", "cheb")


def test_nn_name_is_stable_and_differs_between_architectures() -> None:
    space = GnnSearchSpace()
    assert space.nn_name(GCN2) == space.nn_name(GCN2)
    assert space.nn_name(GCN2).startswith("gnn-")
    assert space.nn_name(GCN2) != space.nn_name(GCN2.replace("readout=mean", "readout=add"))


@pytest.mark.parametrize("skip", SKIP_MODES)
@pytest.mark.parametrize("conv", CONVS)
def test_every_conv_and_skip_mode_builds_and_runs(conv: str, skip: str, karate: Data) -> None:
    # residual: the first layer projects 34 features, the second adds its input unchanged
    encoding = f"{layer(conv, 16)}|{layer(conv, 16, act='elu')};skip={skip};readout=mean"
    net = build(encoding)
    out = net.train()(karate)
    assert out.shape == (karate.num_nodes, CLASSES)
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    graphs = random_graphs()
    with torch.no_grad():
        pooled = net.eval()(graphs)
    assert pooled.shape == (graphs.num_graphs, CLASSES) and torch.isfinite(pooled).all()


@pytest.mark.parametrize("readout", READOUTS)
def test_every_activation_aggregation_and_readout_runs(readout: str, karate: Data) -> None:
    layers = [layer("gcn", 8, act=act) for act in ACTIVATIONS[:4]]
    net = build(f"{'|'.join(layers)};skip=residual;readout={readout}")
    graphs = random_graphs()
    with torch.no_grad():
        assert net.eval()(graphs).shape == (graphs.num_graphs, CLASSES)
    for act in ACTIVATIONS:
        for aggr in AGGREGATIONS:
            encoding = f"graphconv(h=8,aggr={aggr},act={act},drop=0.0);skip=none;readout={readout}"
            with torch.no_grad():
                assert torch.isfinite(build(encoding).eval()(karate)).all()


def test_readout_pools_each_graph_separately() -> None:
    graphs = random_graphs((4, 6))
    net = build(f"{layer('gin', 8, drop=0.0)};skip=none;readout=max").eval()
    with torch.no_grad():
        together = net(graphs)
        apart = torch.cat([net(Batch.from_data_list([g])) for g in graphs.to_data_list()])
    assert torch.allclose(together, apart, atol=1e-6)


def test_parameter_counts_equal_the_hand_computed_ones() -> None:
    def linear(i: int, o: int, bias: bool = True) -> int:
        return i * o + (o if bias else 0)

    gcn = linear(FEATURES, 16) + linear(16, 16)  # GCNConv: weight and bias
    assert parameters(build(GCN2)) == gcn + linear(16, CLASSES) == 900
    # residual: a bias-free projection 34 -> 16 on the first layer, identity on the second
    assert parameters(build(GCN2.replace("skip=none", "skip=residual"))) == 900 + linear(FEATURES, 16, bias=False)
    # jk: the classifier reads both layers side by side
    assert parameters(build(GCN2.replace("skip=none", "skip=jk"))) == gcn + linear(32, CLASSES)
    gat = linear(FEATURES, 32, bias=False) + 3 * 32  # 4 heads of 8, concatenated: lin, att_src, att_dst, bias
    sage = linear(32, 16) + linear(32, 16, bias=False)  # lin_l with bias, lin_r without
    gin = linear(16, 16) + linear(16, 16)  # MLP Linear-ReLU-Linear, eps fixed
    graphconv = linear(16, 8) + linear(16, 8, bias=False)  # lin_rel with bias, lin_root without
    assert parameters(build(MIXED)) == gat + sage + gin + graphconv + linear(32 + 16 + 16 + 8, CLASSES) == 3324


# ---- training under LEMUR's contract ---------------------------------------------------------
@pytest.mark.parametrize("encoding", [GCN2, f"{layer('gat', 8)}|{layer('sage', 16)};skip=jk;readout=mean"])
def test_learn_on_karate_club_with_masked_labels_beats_chance(encoding: str, karate: Data) -> None:
    train = torch.arange(karate.num_nodes) % 2 == 0  # half the nodes; the rest are ignored
    labels = torch.where(train, karate.y, torch.full_like(karate.y, -100))
    data = Data(x=karate.x, edge_index=karate.edge_index)  # what the runner passes: no batch, no labels
    net = build(encoding)
    prm = {"lr": 0.02, "optimizer": "adam", "weight_decay": 5e-4, "epoch": 100}
    net.train_setup(prm)
    first = net.learn([(data, labels)])
    for _ in range(prm["epoch"] - 1):
        last = net.learn([(data, labels)])
    assert last < first
    with torch.no_grad():
        predicted = net.eval()(data).argmax(dim=1)
    accuracy = (predicted[train] == karate.y[train]).float().mean().item()
    assert accuracy >= 0.75, accuracy  # chance is 0.25, the majority class 0.38; seeds 0-9 reach 0.88-1.0


def test_learn_on_graph_batches() -> None:
    # a graph-level rule the add readout can count: is the graph larger than 6 nodes?
    sizes = (3, 4, 5, 8, 9, 10, 4, 11)
    graphs = [random_graphs((n,), seed=i).to_data_list()[0] for i, n in enumerate(sizes)]
    labels = torch.tensor([int(n > 6) for n in sizes])
    batches = [(Batch.from_data_list(graphs[i : i + 4]), labels[i : i + 4]) for i in (0, 4)]
    net = build(f"{layer('gin', 16, drop=0.0)}|{layer('gcn', 16, drop=0.0)};skip=jk;readout=add")
    net.train_setup({"lr": 0.01, "optimizer": "adam", "epoch": 30})
    first = net.learn(batches)
    for _ in range(29):
        last = net.learn(batches)
    assert last < first
