"""The KAN search space: layers against loop references, grid extension, encodings, generated code."""

from __future__ import annotations

import importlib
import math
import subprocess
import sys

import optuna
import pydantic
import pytest
import torch

from search_spaces import InvalidArchitectureError, SearchSpace
from search_spaces.kan import KanArch, KanSearchSpace
from search_spaces.kan.layers import (
    BSplineKANLayer,
    ChebyshevKANLayer,
    ConvKANLayer,
    KANLayer,
    MixtureKANLayer,
    RBFKANLayer,
    bspline_basis,
    uniform_knots,
)
from workers.nn_module import load_nn_module
from tests.search_spaces.codecheck import imported_packages

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(autouse=True, scope="module")
def one_thread():  # noqa: ANN201
    """These tensors are tiny: a second intra-op thread only adds synchronisation (10x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---- references: one edge, one point, plain Python -------------------------------------------
def knots(grid_size: int, order: int, low: float = -1.0, high: float = 1.0) -> list[float]:
    h = (high - low) / grid_size
    return [low + (j - order) * h for j in range(grid_size + 2 * order + 1)]


def cox_de_boor(x: float, t: list[float], j: int, p: int) -> float:
    """B_{j,p}(x) by the textbook recursion."""
    if p == 0:
        return 1.0 if t[j] <= x < t[j + 1] else 0.0
    left = (x - t[j]) / (t[j + p] - t[j]) * cox_de_boor(x, t, j, p - 1)
    right = (t[j + p + 1] - x) / (t[j + p + 1] - t[j + 1]) * cox_de_boor(x, t, j + 1, p - 1)
    return left + right


def silu(x: float) -> float:
    return x / (1.0 + math.exp(-x))


def spline_terms(x: float, grid_size: int, order: int) -> list[float]:
    t = knots(grid_size, order)
    return [cox_de_boor(x, t, j, order) for j in range(grid_size + order)]


def rbf_terms(x: float, grid_size: int) -> list[float]:
    h = 2.0 / (grid_size - 1)
    return [math.exp(-(((x - (-1.0 + m * h)) / h) ** 2)) for m in range(grid_size)]


def cheb_terms(x: float, degree: int) -> list[float]:
    # the closed form, not the recurrence the layer uses
    return [math.cos(n * math.acos(math.tanh(x))) for n in range(degree + 1)]


def reference_output(layer: KANLayer, x: torch.Tensor) -> torch.Tensor:
    """y[b, j] = sum_i phi_ji(x[b, i]), phi = w_b * silu + sum_k c_k B_k, with explicit loops."""
    w = layer.weight.detach().tolist()
    if isinstance(layer, MixtureKANLayer):
        logits = layer.mixture_logits.detach().tolist()
        mix = [[math.exp(v) / sum(math.exp(u) for u in row) for v in row] for row in logits]
    out = torch.zeros(x.shape[0], layer.out_features, dtype=torch.float64)
    for b in range(x.shape[0]):
        for j in range(layer.out_features):
            total = 0.0
            for i in range(layer.in_features):
                xi = float(x[b, i])
                coefs = w[j][i][1:]
                if isinstance(layer, BSplineKANLayer):
                    terms = spline_terms(xi, layer.grid_size, layer.spline_order)
                elif isinstance(layer, RBFKANLayer):
                    terms = rbf_terms(xi, layer.grid_size)
                elif isinstance(layer, ChebyshevKANLayer):
                    terms = cheb_terms(xi, layer.degree)
                else:
                    groups = [
                        spline_terms(xi, layer.grid_size, layer.spline_order),
                        rbf_terms(xi, layer.grid_size),
                        cheb_terms(xi, layer.degree),
                    ]
                    terms = [mix[j][g] * v for g, group in enumerate(groups) for v in group]
                assert len(terms) == len(coefs)
                total += w[j][i][0] * silu(xi) + sum(c * v for c, v in zip(coefs, terms))
            out[b, j] = total
    return out


def randomized(layer: KANLayer) -> KANLayer:
    """In float64, with weights (and mixture logits) far from their initial values."""
    layer = layer.double()
    with torch.no_grad():
        layer.weight.normal_()
        if isinstance(layer, MixtureKANLayer):
            layer.mixture_logits.normal_()
    return layer


# ---- the B-spline basis ----------------------------------------------------------------------
@pytest.mark.parametrize("grid_size", [1, 2, 5, 11])
@pytest.mark.parametrize("order", [1, 2, 3, 4])
@pytest.mark.parametrize("grid_range", [(-1.0, 1.0), (0.0, 3.0)])
def test_bspline_basis_is_a_partition_of_unity_on_the_grid(
    grid_size: int, order: int, grid_range: tuple[float, float]
) -> None:
    low, high = grid_range
    x = torch.cat([torch.linspace(low, high, 201, dtype=torch.float64), low + (high - low) * torch.rand(300)])
    knots_ = uniform_knots(torch.tensor([low]).double(), torch.tensor([high]).double(), grid_size, order)
    bases = bspline_basis(x.unsqueeze(-1), knots_, order)  # (n, 1, G + k)
    assert bases.shape == (len(x), 1, grid_size + order)
    assert torch.allclose(bases.sum(-1), torch.ones(len(x), 1, dtype=torch.float64), atol=1e-12)
    assert (bases >= 0).all()
    assert ((bases > 0).sum(-1) <= order + 1).all()  # local support


def test_bspline_basis_matches_cox_de_boor_and_vanishes_beyond_the_extended_grid() -> None:
    x = torch.tensor([-3.0, -1.5, -1.0, -0.37, 0.0, 0.5, 0.99, 1.0, 1.3, 4.0], dtype=torch.float64)
    for grid_size, order in [(3, 1), (5, 3), (4, 2)]:
        layer = BSplineKANLayer(1, 1, grid_size, order).double()
        got = layer.basis(x.unsqueeze(-1))[:, 0]
        want = torch.tensor([spline_terms(float(v), grid_size, order) for v in x], dtype=torch.float64)
        assert torch.allclose(got, want, atol=1e-12)
    assert got[0].abs().sum() == 0 and got[-1].abs().sum() == 0


# ---- layers against the loop reference -------------------------------------------------------
LAYERS = [
    pytest.param(lambda: BSplineKANLayer(3, 2, grid_size=5, spline_order=3), id="bspline-5-3"),
    pytest.param(lambda: BSplineKANLayer(3, 2, grid_size=3, spline_order=1), id="bspline-3-1"),
    pytest.param(lambda: RBFKANLayer(3, 2, grid_size=6), id="rbf-6"),
    pytest.param(lambda: ChebyshevKANLayer(3, 2, degree=4), id="cheb-4"),
    pytest.param(lambda: MixtureKANLayer(3, 2, grid_size=4, spline_order=2, degree=3), id="mix-4-2-3"),
]


@pytest.mark.parametrize("make", LAYERS)
def test_layer_equals_the_per_edge_loop_reference(make) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    layer = randomized(make())
    x = torch.rand(7, 3, dtype=torch.float64) * 3.0 - 1.5  # partly beyond the grid range
    assert torch.allclose(layer(x), reference_output(layer, x), atol=1e-10)
    # leading dimensions are kept
    assert layer(x.reshape(7, 1, 3)).shape == (7, 1, 2)


@pytest.mark.parametrize(
    ("make", "per_edge"),
    [
        (lambda: BSplineKANLayer(4, 3, grid_size=5, spline_order=3), 1 + 5 + 3),
        (lambda: RBFKANLayer(4, 3, grid_size=8), 1 + 8),
        (lambda: ChebyshevKANLayer(4, 3, degree=4), 1 + 4 + 1),
    ],
)
def test_parameter_count_is_out_times_in_times_one_plus_k(make, per_edge: int) -> None:  # noqa: ANN001
    assert sum(p.numel() for p in make().parameters()) == 4 * 3 * per_edge


def test_mixture_weights_are_a_softmax_per_output_node() -> None:
    layer = MixtureKANLayer(3, 4, grid_size=5, spline_order=3, degree=3)
    assert torch.allclose(layer.mixture_weights(), torch.full((4, 3), 1 / 3))  # an even start
    with torch.no_grad():
        layer.mixture_logits.copy_(torch.randn(4, 3) * 3)
    weights = layer.mixture_weights()
    assert torch.allclose(weights, torch.softmax(layer.mixture_logits, dim=-1))
    assert (weights > 0).all() and torch.allclose(weights.sum(-1), torch.ones(4))
    # the logits are learned: the output depends on them
    layer(torch.rand(5, 3)).sum().backward()
    assert layer.mixture_logits.grad is not None and layer.mixture_logits.grad.abs().sum() > 0
    expected = 4 * 3 * (1 + (5 + 3) + 5 + (3 + 1)) + 4 * 3
    assert sum(p.numel() for p in layer.parameters()) == expected


def test_conv_layer_equals_a_loop_over_patches() -> None:
    torch.manual_seed(1)
    conv = ConvKANLayer(2, 3, "cheb", kernel_size=3, stride=2, padding=1, degree=2)
    conv.kan = randomized(conv.kan)
    x = torch.randn(2, 2, 5, 4, dtype=torch.float64)
    out = conv(x)
    assert out.shape == (2, 3, 3, 2)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    for r in range(3):
        for c in range(2):
            patch = padded[:, :, 2 * r : 2 * r + 3, 2 * c : 2 * c + 3].reshape(2, -1)  # (channel, row, col)
            assert torch.allclose(out[:, :, r, c], reference_output(conv.kan, patch), atol=1e-10)


# ---- grid extension --------------------------------------------------------------------------
@pytest.mark.parametrize(("coarse", "fine"), [(5, 10), (3, 9), (5, 20)])
def test_grid_extension_to_a_refined_grid_keeps_the_layer(coarse: int, fine: int) -> None:
    torch.manual_seed(0)
    layer = BSplineKANLayer(3, 4, grid_size=coarse, spline_order=3)
    with torch.no_grad():
        layer.weight.normal_()
    x = torch.rand(400, 3) * 2 - 1
    before, count = layer(x), sum(p.numel() for p in layer.parameters())
    layer.extend_grid(fine)
    assert layer.grid_size == fine and layer.grid.shape == (3, fine + 2 * 3 + 1)
    assert (layer(x) - before).abs().max() < 1e-5
    assert sum(p.numel() for p in layer.parameters()) == count + 3 * 4 * (fine - coarse)


def test_grid_extension_to_an_unrelated_grid_is_a_close_fit() -> None:
    torch.manual_seed(0)
    layer = BSplineKANLayer(3, 4, grid_size=5, spline_order=3)
    with torch.no_grad():
        layer.weight.normal_()
    x = torch.rand(400, 3) * 2 - 1
    before = layer(x)
    layer.extend_grid(8)  # 5 intervals do not nest in 8: least squares, not exact
    assert (layer(x) - before).abs().max() < 0.05 * before.abs().max()


def test_mixture_and_network_grid_extension_keep_the_output() -> None:
    torch.manual_seed(0)
    mixture = MixtureKANLayer(3, 4, grid_size=5, spline_order=2, degree=3)
    with torch.no_grad():
        mixture.weight.normal_()
        mixture.mixture_logits.normal_()
    x = torch.rand(300, 3) * 2 - 1
    before = mixture(x)
    mixture.extend_grid(10)
    assert (mixture(x) - before).abs().max() < 1e-5
    assert mixture.group_sizes() == (12, 5, 4)

    net = build(KanSearchSpace(), "bspline(g=5,k=3)", (1, 3), 2)
    before, count = net(x), sum(p.numel() for p in net.parameters())
    net.extend_grid(10)
    assert (net(x) - before).abs().max() < 1e-5
    assert sum(p.numel() for p in net.parameters()) == count + 3 * 2 * 5
    # the new weights are ordinary leaves: training goes on after a fresh train_setup
    net.train_setup({"lr": 0.01, "optimizer": "adam", "epoch": 1})
    net.learn([(x, torch.zeros(300, 2))])
    assert all(p.is_leaf and p.grad is not None for p in net.parameters())


# ---- the search space ------------------------------------------------------------------------
# parameters, and how many distinct architectures 300 random trials should at least find
SPACES = {
    "default": ({}, 150),
    "everything": ({"include_mlp": True, "max_conv_layers": 2, "max_layers": 4, "widths": [2, 4, 8, 16, 32]}, 200),
    "one-basis": ({"bases": ["bspline"], "grid_sizes": [5], "spline_orders": [3], "max_layers": 2}, 4),  # all 4
}


@pytest.mark.parametrize(("params", "distinct"), SPACES.values(), ids=SPACES.keys())
def test_sample_encode_decode_and_canonical_round_trip(params: dict, distinct: int) -> None:
    space = KanSearchSpace(params)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(300):
        trial = study.ask()
        encoding = space.sample(trial)
        assert space.canonical(encoding) == encoding
        assert space.encode_params(encoding) == trial.params
        assert space.decode_params(trial.params) == encoding
        assert space.dedup_key(encoding) == KanArch.from_string(encoding).dedup_key()
        seen.add(encoding)
        study.tell(trial, 0.0)
    assert len(seen) >= distinct  # the sampler explores


def test_parameters_are_only_asked_when_relevant() -> None:
    space = KanSearchSpace({"include_mlp": True})
    assert space.encode_params("linear()x8|linear()") == {"family": "mlp", "layers": 2, "layer0_width": 8}
    assert space.encode_params("rbf(g=5)x4|cheb(d=2)") == {
        "family": "kan",
        "layers": 2,
        "layer0_basis": "rbf",
        "layer0_grid": 5,
        "layer0_width": 4,
        "layer1_basis": "cheb",
        "layer1_degree": 2,
    }
    conv = KanSearchSpace({"max_conv_layers": 1})
    assert conv.encode_params("mix(g=3,k=1,d=2)") == {
        "conv_layers": 0,
        "layers": 1,
        "layer0_basis": "mix",
        "layer0_grid": 3,
        "layer0_order": 1,
        "layer0_degree": 2,
    }


def test_a_task_without_images_makes_convolutions_moot() -> None:
    params = {"max_conv_layers": 2}
    for task in ("regression", "tab-classification"):
        space = KanSearchSpace(params, task=task)
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
        for _ in range(30):
            trial = study.ask()
            encoding = space.sample(trial)
            assert "conv" not in encoding and "conv_layers" not in trial.params
            assert space.encode_params(encoding) == trial.params
            study.tell(trial, 0.0)
        with pytest.raises(InvalidArchitectureError, match=f"this search is for {task} data"):
            space.canonical("conv:cheb(d=3)x4|cheb(d=3)")
    images = KanSearchSpace(params, task="img-classification")
    assert images.encode_params("conv:cheb(d=3)x4|cheb(d=3)")["conv_layers"] == 1


def test_canonical_normalises_spelling() -> None:
    space = KanSearchSpace({"max_conv_layers": 1})
    assert (
        space.canonical(" conv:Chebyshev(degree=3) x 8 | bspline(k=3, grid_size=5)x16 | mixture(d=2,order=1,grid=3) ")
        == "conv:cheb(d=3)x8|bspline(g=5,k=3)x16|mix(g=3,k=1,d=2)"
    )


@pytest.mark.parametrize(
    ("encoding", "message"),
    [
        ("", "empty KAN architecture"),
        ("bspline(g=5,k=3)x8|", "is not of the form"),
        ("bspline(g=5,k=3)x8", "drop its width x8"),
        ("bspline(g=5,k=3)|cheb(d=3)", "hidden layer 0 .* needs a width"),
        ("spline(g=5)", "unknown basis 'spline'; choose one of: bspline, rbf, cheb, mix, linear"),
        ("bspline(g=5)", "bspline needs k=<int>"),
        ("bspline(g=5,k=3,z=1)", "argument 'z=1' of bspline"),
        ("rbf(g=5,g=8)", "sets g twice"),
        ("cheb(d=0)", "d \\(degree\\) must be an integer in 1..64"),
        ("cheb(d=3)x4|conv:cheb(d=3)x4|cheb(d=3)", "convolution after a dense layer"),
        ("conv:cheb(d=3)|cheb(d=3)", "needs a channel count"),
        ("conv:cheb(d=3)x4", "no dense output layer"),
        ("cheb(d=3)x4|linear()", "mixing linear\\(\\) with KAN layers"),
        # well formed, but not in this space
        ("cheb(d=3)x7|cheb(d=3)", "width 7 is not one of this space's widths \\[4, 8, 16\\]"),
        ("bspline(g=4,k=3)", "g=4 is not one of this space's grid_sizes"),
        ("linear()", "set include_mlp to true"),
        ("conv:cheb(d=3)x4|cheb(d=3)", "at most max_conv_layers=0"),
        ("cheb(d=2)x4|cheb(d=2)x4|cheb(d=2)x4|cheb(d=2)", "at most max_layers=3"),
    ],
)
def test_bad_encodings_are_refused_with_a_reason(encoding: str, message: str) -> None:
    space = KanSearchSpace()
    for method in (space.canonical, space.dedup_key, space.nn_code, space.encode_params):
        with pytest.raises(InvalidArchitectureError, match=message):
            method(encoding)


def test_decode_names_the_missing_or_wrong_parameter() -> None:
    space = KanSearchSpace()
    with pytest.raises(InvalidArchitectureError, match="missing parameter 'layer0_degree'"):
        space.decode_params({"layers": 1, "layer0_basis": "cheb"})
    with pytest.raises(InvalidArchitectureError, match=r"layer0_basis='fourier' is not one of bases"):
        space.decode_params({"layers": 1, "layer0_basis": "fourier"})
    with pytest.raises(InvalidArchitectureError, match=r"layers=9 must be an integer in 1..3"):
        space.decode_params({"layers": 9})


def test_dedup_ignores_what_a_basis_does_not_use() -> None:
    space = KanSearchSpace({"include_mlp": True})
    key = space.dedup_key("rbf(g=8)x8|cheb(d=3)")
    assert space.dedup_key("rbf(g=8,k=3,d=2)x8|cheb(d=3,g=5)") == key
    assert space.dedup_key("RBF(grid_size=8) x8 | chebyshev(degree=3)") == key
    params = space.encode_params("rbf(g=8)x8|cheb(d=3)")
    # Optuna parameters left over from other branches (a previous basis, the MLP family) are ignored
    noisy = dict(params, layer0_order=2, layer0_degree=4, layer1_grid=3, layer2_basis="mix", layer5_width=4)
    assert space.dedup_key(space.decode_params(noisy)) == key
    others = ("rbf(g=5)x8|cheb(d=3)", "rbf(g=8)x4|cheb(d=3)", "bspline(g=8,k=1)x8|cheb(d=3)", "rbf(g=8)x8|cheb(d=4)")
    for other in others:
        assert space.dedup_key(other) != key
    assert space.dedup_key("linear()x8|linear()") != space.dedup_key("linear()x16|linear()")


def test_params_are_validated() -> None:
    KanSearchSpace.validate_params({"widths": [8, 32], "bases": ["cheb"], "include_mlp": True})
    for bad, field in [
        ({"widths": [8, 8]}, "lists a choice twice"),
        ({"bases": ["fourier"]}, "bases"),
        ({"grid_sizes": [1]}, "grid_sizes"),
        ({"widths": []}, "widths"),
        ({"max_conv_layers": 9}, "max_conv_layers"),
        ({"no_such_parameter": 1}, "no_such_parameter"),
    ]:
        with pytest.raises(pydantic.ValidationError, match=field):
            KanSearchSpace.validate_params(bad)
    assert KanSearchSpace.schema()["tasks"] == ["img-classification", "regression", "tab-classification"]
    assert issubclass(KanSearchSpace, SearchSpace) and KanSearchSpace.kind == "kan"


# ---- generated code --------------------------------------------------------------------------
def build(space: KanSearchSpace, encoding: str, in_shape: tuple[int, ...], outputs: int) -> torch.nn.Module:
    module = load_nn_module(space.nn_code(encoding), space.nn_name(encoding))
    return module.Net(in_shape, (outputs,), {"lr": 0.01}, torch.device("cpu"))


BUILDS = [
    ("bspline(g=5,k=3)x8|cheb(d=3)", (1, 4), 3, 4 * 8 * 9 + 8 * 3 * 5),
    ("mix(g=3,k=1,d=2)x4|rbf(g=5)", (1, 4), 3, 4 * 4 * (1 + 4 + 3 + 3) + 4 * 3 + 4 * 3 * 6),
    ("rbf(g=8)x16|bspline(g=3,k=2)", (1, 1, 8, 8), 10, 64 * 16 * 9 + 16 * 10 * 6),
    # 8x8 -> 4x4 (4 channels) -> 2x2 (8 channels) -> 32 features
    ("conv:cheb(d=2)x4|conv:bspline(g=3,k=1)x8|rbf(g=3)", (1, 1, 8, 8), 10, 9 * 4 * 4 + 36 * 8 * 5 + 32 * 10 * 4),
    ("mix(g=5,k=3,d=4)x16|cheb(d=4)", (1, 2), 1, 2 * 16 * (1 + 8 + 5 + 5) + 16 * 3 + 16 * 1 * 6),
    ("linear()x16|linear()x8|linear()", (1, 2), 1, (2 * 16 + 16) + (16 * 8 + 8) + (8 + 1)),
    ("conv:linear()x4|linear()", (1, 1, 8, 8), 10, (9 * 4 + 4) + (64 * 10 + 10)),
]


@pytest.mark.parametrize(("encoding", "in_shape", "outputs", "parameters"), BUILDS)
def test_nn_code_is_standalone_and_builds_with_the_documented_parameter_count(
    encoding: str, in_shape: tuple[int, ...], outputs: int, parameters: int
) -> None:
    space = KanSearchSpace({"include_mlp": True, "max_conv_layers": 2})
    code = space.nn_code(encoding)
    assert imported_packages(code) <= {"torch", "math"}
    namespace: dict[str, object] = {}
    exec(compile(code, "nn_code", "exec"), namespace)  # noqa: S102
    assert namespace["ARCH"] == encoding
    assert {"lr", "momentum", "weight_decay"} <= set(namespace["supported_hyperparameters"]())  # type: ignore[operator]
    torch.manual_seed(0)
    net = namespace["Net"](in_shape, (outputs,), {"lr": 0.01}, torch.device("cpu"))  # type: ignore[operator]
    assert net(torch.rand(5, *in_shape[1:])).shape == (5, outputs)
    assert sum(p.numel() for p in net.parameters()) == parameters
    assert KanArch.from_string(encoding).num_parameters(in_shape[1:], outputs) == parameters


def test_convolutions_refuse_tabular_input() -> None:
    space = KanSearchSpace({"max_conv_layers": 1})
    with pytest.raises(ValueError, match="need image input"):
        build(space, "conv:cheb(d=3)x4|cheb(d=3)", (1, 4), 3)


def test_template_constants_agree_with_its_arch_string() -> None:
    template = importlib.import_module("search_spaces.kan.model")
    arch = KanArch.from_string(template.ARCH)
    assert template.DENSE_LAYERS == tuple(layer.model_spec() for layer in arch.dense_layers)
    assert template.CONV_LAYERS == tuple(layer.model_spec() for layer in arch.conv_layers)


def test_generating_code_does_not_import_torch() -> None:
    script = (
        "import sys; from search_spaces.kan import KanSearchSpace; "
        "KanSearchSpace({'max_conv_layers': 1}).nn_code('conv:mix(g=3,k=1,d=2)x4|bspline(g=5,k=3)'); "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", script], check=True)


@pytest.mark.parametrize(
    "encoding", ["bspline(g=5,k=3)x8|rbf(g=5)", "mix(g=3,k=2,d=3)x8|cheb(d=3)", "linear()x16|linear()"]
)
def test_training_on_a_regression_task_reduces_the_loss(encoding: str) -> None:
    torch.manual_seed(0)
    net = build(KanSearchSpace({"include_mlp": True}), encoding, (1, 2), 1)
    prm = {"lr": 0.01, "optimizer": "adam", "epoch": 20}
    net.train_setup(prm)
    x = torch.rand(256, 2) * 2 - 1
    y = (torch.sin(math.pi * x[:, :1]) + x[:, 1:] ** 2).float()  # float targets (N, 1): mean squared error
    batches = [(x[i : i + 64], y[i : i + 64]) for i in range(0, 256, 64)]
    first = net.learn(batches)
    for _ in range(19):
        last = net.learn(batches)
    assert last < 0.5 * first
    assert net(x).shape == (256, 1)
