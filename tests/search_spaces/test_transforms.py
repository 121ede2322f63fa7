"""Transforms by LEMUR name: the grammar, the generated source, and what each family does to batches."""

from __future__ import annotations

import ast
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from search_spaces.datasets import get_dataset, seeded_split
from search_spaces.errors import IncompatibleDatasetError
from search_spaces.transforms import (
    TRANSFORMS,
    UnknownTransformError,
    check_transform,
    load_transform,
    parse_transform,
    transform_source,
)
from workers.tasks import prepare

#: every transform name in LEMUR's statistics (lemur-stat-2025-09, ``"transform"`` of every run)
LEMUR_NAMES = [
    f"{family}{size}{flip}"
    for family in ("norm", "echo", "complex")
    for size in ("", "_32", "_64", "_128", "_256", "_299", "_512")
    for flip in ("", "_flip")
    if (family, size, flip) != ("complex", "", "_flip")  # the one combination LEMUR never ran
] + ["soft_pad"]


def _images(n: int = 8, channels: int = 3, height: int = 32, width: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).random((n, channels, height, width), dtype=np.float32))


# ---- names ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", LEMUR_NAMES)
def test_every_lemur_name_parses_and_binds_its_own_source(name: str) -> None:
    spec = parse_transform(name)
    parts = name.split("_")
    assert spec.name == name and name.startswith(spec.family)
    assert spec.flip == name.endswith("_flip")
    if spec.family == "soft_pad":
        assert spec.size == 800 and not spec.flip
    else:
        assert spec.size == (int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None)
    module = load_transform(name)
    assert (module.NAME, module.FAMILY, module.SIZE, module.FLIP) == (name, spec.family, spec.size, spec.flip)
    for shape in [(3, 32, 32), (1, 8, 8), (1, 28, 28), (3, 24, 40)]:
        assert module.out_shape(shape) == spec.out_shape(shape)


@pytest.mark.parametrize(
    ("name", "family", "size", "flip"),
    [
        ("norm", "norm", None, False),
        ("norm_flip", "norm", None, True),
        ("norm_299", "norm", 299, False),
        ("norm_160_flip", "norm", 160, True),
        ("echo_64", "echo", 64, False),
        ("echo_224_flip", "echo", 224, True),
        ("complex", "complex", None, False),
        ("complex_32_flip", "complex", 32, True),
        ("soft_pad", "soft_pad", 800, False),
    ],
)
def test_a_name_is_family_size_and_flip(name: str, family: str, size: int | None, flip: bool) -> None:
    spec = parse_transform(name)
    assert (spec.family, spec.size, spec.flip) == (family, size, flip)


@pytest.mark.parametrize(
    "name", ["", "blur", "norm_", "norm_0", "norm_064", "norm_flip_64", "norm-64", "Norm_64", "norm_64x",
             "soft_pad_64", "soft_pad_flip", "center_crop_64", "norm_2048", "echo_64_flip_flip", "norm_cc",
             "norm_cc_256_flip", "norm_256_0", "norm_256_2048", "echo_256_224", "center_crop_flip",
             "random_horizontal_flip_64", "random_flip", "five_crop", "denoise", "bf-v1-Pad_38"],
)
def test_unknown_names_are_a_value_error_that_lists_the_patterns(name: str) -> None:
    with pytest.raises(UnknownTransformError) as caught:
        parse_transform(name)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, KeyError)
    message = str(caught.value)
    assert f"unknown transform {name!r}" in message
    assert all(pattern in message for pattern in TRANSFORMS) and "1 to 1024" in message
    one_off = name.startswith("bf-v1-") or name in ("five_crop", "denoise")
    assert ("LEMUR's one-off torchvision pipelines, not implemented" in message) == one_off


#: the families beyond norm/echo/complex[_<size>][_flip] and soft_pad:
#: (name, family, size, resize, crop, flip, vflip, flip_p, out_shape of a 3x24x40 image)
NEW_FAMILIES = [
    ("center_crop", "center_crop", 64, None, 48, False, False, 0.5, (3, 64, 64)),
    ("norm_256_224", "norm", 224, 256, None, False, False, 0.5, (3, 224, 224)),
    ("norm_256_224_flip", "norm", 224, 256, None, True, False, 0.5, (3, 224, 224)),
    ("norm_32_48", "norm", 48, 32, None, False, False, 0.5, (3, 48, 48)),
    ("norm_cc_256", "norm", 256, None, None, False, False, 0.5, (3, 256, 256)),
    ("norm_cc_7", "norm", 7, None, None, False, False, 0.5, (3, 7, 7)),
    ("random_horizontal_flip", "random_horizontal_flip", 64, None, None, True, False, 0.24, (3, 64, 64)),
    ("random_vertical_flip", "random_vertical_flip", 64, None, None, False, True, 0.22, (3, 64, 64)),
]


@pytest.mark.parametrize(("name", "family", "size", "resize", "crop", "flip", "vflip", "flip_p", "shape"), NEW_FAMILIES)
def test_the_new_families_parse_and_give_their_shapes(
    name: str, family: str, size: int, resize: int | None, crop: int | None, flip: bool, vflip: bool, flip_p: float,
    shape: tuple[int, ...],
) -> None:
    spec = parse_transform(name)
    assert (spec.family, spec.size, spec.resize, spec.crop, spec.flip, spec.vflip, spec.flip_p) == (
        family, size, resize, crop, flip, vflip, flip_p)
    assert spec.images_only and check_transform(name, get_dataset("digits32").info) == name
    assert spec.out_shape((3, 24, 40)) == shape and spec.out_shape((1, 8, 8)) == (1, size, size)
    with pytest.raises(ValueError, match="works on images"):
        spec.out_shape((4,))
    module = load_transform(name)
    assert (module.NAME, module.FAMILY, module.SIZE, module.FLIP, module.RESIZE, module.CROP, module.VFLIP,
            module.FLIP_P) == (name, family, size, flip, resize, crop, vflip, flip_p)
    assert module.out_shape((3, 24, 40)) == shape
    assert module.transform(((0.0,) * 3, (1.0,) * 3))(_images(2, 3, 24, 40)).shape == (2, *shape)


def test_image_transforms_are_refused_on_datasets_without_images() -> None:
    iris, karate, digits = (get_dataset(n).info for n in ("iris", "karate", "digits"))
    assert check_transform("norm", iris) == "norm" and check_transform("echo", karate) == "echo"
    assert check_transform("norm_64_flip", digits) == "norm_64_flip"
    for name in ("norm_64", "norm_flip", "echo_32", "complex", "soft_pad", "center_crop", "norm_256_224_flip",
                 "norm_cc_256", "random_horizontal_flip", "random_vertical_flip"):
        with pytest.raises(IncompatibleDatasetError, match=rf"transform '{name}' works on images .* use 'norm'"):
            check_transform(name, iris)


# ---- the generated source ------------------------------------------------------------------------
def test_the_source_is_standalone_torch_and_names_its_steps() -> None:
    source = transform_source("norm_64_flip")
    assert source.startswith("# LEMUR transform norm_64_flip, generated by Cellar")
    assert "resize the shorter side to 64 (bilinear) and centre-crop 64x64" in source
    tree = ast.parse(source)
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in node.names} | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"torch", "torch.nn.functional", "functional"}
    assert 'NAME = "norm_64_flip"\nFAMILY = "norm"\nSIZE = 64\nFLIP = True\n' in source
    namespace: dict[str, object] = {}
    exec(compile(source, "<test>", "exec"), namespace)  # runs alone, outside Cellar
    assert namespace["out_shape"]((3, 32, 32)) == (3, 64, 64)
    assert "\ndef transform(norm):\n" in source  # LEMUR's entry point
    assert transform_source("norm") != transform_source("norm_flip")  # one text, one transform_id


def test_the_source_of_each_new_family_runs_alone_with_torch_only(tmp_path) -> None:  # type: ignore[no-untyped-def]
    names = [row[0] for row in NEW_FAMILIES]
    for name in names:
        source = transform_source(name)
        tree = ast.parse(source)
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                    for alias in node.names}
        assert imported <= {"torch", "torch.nn.functional", "functional"}, name
        (tmp_path / f"{name}.py").write_text(source)
    # a fresh interpreter, outside the repository: each file alone, with torch, on a batch of images
    code = (
        "import sys, torch\n"
        f"names = {names!r}\n"
        "for name in names:\n"
        "    ns = {}\n"
        "    exec(compile(open(name + '.py').read(), name, 'exec'), ns)\n"
        "    x = torch.rand(4, 3, 24, 40)\n"
        "    norm = ((0.5,) * 3, (0.25,) * 3)\n"
        "    a = ns['transform'](norm)(x)\n"
        "    b = ns['train_transform'](norm, torch.Generator().manual_seed(0))(x)\n"
        "    assert tuple(a.shape) == tuple(b.shape) == (4, *ns['out_shape']((3, 24, 40))), name\n"
        "    print(name, tuple(a.shape))\n"
        "assert not any(m == 'search_spaces' or m.startswith(('search_spaces.', 'workers', 'service')) for m in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path, check=True, capture_output=True, text=True)
    assert done.stdout.splitlines() == [f"{row[0]} {(4, *row[8])}" for row in NEW_FAMILIES]
    for name in names:  # and it is what the worker runs
        x = _images(4, 3, 24, 40)
        ns: dict[str, object] = {}
        exec(compile((tmp_path / f"{name}.py").read_text(), name, "exec"), ns)
        norm = ((0.5,) * 3, (0.25,) * 3)
        assert torch.equal(ns["transform"](norm)(x), load_transform(name).transform(norm)(x))  # type: ignore[operator]


def test_naming_and_writing_transforms_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from search_spaces.transforms import check_transform, transform_source\n"
        "check_transform('norm_299'); transform_source('complex_64_flip')\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- what each family does -----------------------------------------------------------------------
def test_norm_resizes_the_shorter_side_then_crops_the_centre() -> None:
    x = _images(4, 3, 24, 40)
    out = load_transform("norm_24").transform(((0.0,) * 3, (1.0,) * 3))(x)
    assert out.shape == (4, 3, 24, 24)
    assert torch.equal(out, x[..., 8:32])  # no resize needed: the crop is the middle 24 columns
    out = load_transform("norm_48").transform(((0.0,) * 3, (1.0,) * 3))(x)
    resized = F.interpolate(x, size=(48, 80), mode="bilinear", align_corners=False)
    assert out.shape == (4, 3, 48, 48) and torch.allclose(out, resized[..., 16:64])


def test_echo_and_complex_squash_to_the_size_and_keep_values() -> None:
    x = _images(4, 3, 24, 40)
    echo = load_transform("echo_64").transform(None)(x)
    assert echo.shape == (4, 3, 64, 64) and echo.dtype == torch.float32
    assert torch.allclose(echo, F.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False))
    shrunk = load_transform("echo_16").transform(None)(x)  # shrinking antialiases, as PIL does
    assert torch.allclose(shrunk, F.interpolate(x, size=(16, 16), mode="bilinear", antialias=True, align_corners=False))
    assert torch.equal(load_transform("echo").transform(None)(x), x)
    complex_ = load_transform("complex_64").transform(None)(x)
    assert complex_.dtype == torch.complex64 and torch.equal(complex_.real, echo) and not complex_.imag.any()


def test_soft_pad_puts_zeros_below_and_right_of_the_image() -> None:
    x = _images(2, 3, 32, 28)
    module = load_transform("soft_pad")
    out = module.transform(None)(x)
    assert out.shape == (2, 3, 800, 800) == (2, *module.out_shape((3, 32, 28)))
    assert torch.equal(out[..., :32, :28], x) and not out[..., 32:, :].any() and not out[..., 28:].any()
    assert module.transform(None)(_images(1, 1, 900, 10)).shape == (1, 1, 900, 800)


def test_norm_standardises_each_channel_with_the_dataset_constants() -> None:
    dataset = get_dataset("digits32")
    x = torch.from_numpy(dataset.load(None).x)
    for name in ("norm", "norm_64"):
        out = load_transform(name).transform(dataset.info.norm)(x[:600])
        assert out.mean(dim=(0, 2, 3)).abs().max() < 0.05
        assert (out.std(dim=(0, 2, 3)) - 1).abs().max() < 0.05
    rows = torch.tensor([[1.0, 10.0], [3.0, 30.0]])
    assert torch.equal(load_transform("norm").transform(((2.0, 20.0), (1.0, 10.0)))(rows), torch.tensor([[-1.0, -1.0], [1.0, 1.0]]))
    with pytest.raises(ValueError, match="works on images"):
        load_transform("norm_flip").transform(((2.0, 20.0), (1.0, 10.0)))(rows)


def test_flip_happens_in_training_only_and_follows_the_seed() -> None:
    x = _images(64)
    module = load_transform("echo_flip")
    assert torch.equal(module.transform(None)(x), x)  # evaluation: deterministic, never flipped
    a = module.train_transform(None, torch.Generator().manual_seed(3))(x)
    b = module.train_transform(None, torch.Generator().manual_seed(3))(x)
    c = module.train_transform(None, torch.Generator().manual_seed(4))(x)
    assert torch.equal(a, b) and not torch.equal(a, c)
    flipped = [bool(torch.equal(a[i], x[i].flip(-1))) for i in range(64)]
    kept = [bool(torch.equal(a[i], x[i])) for i in range(64)]
    assert all(f != k for f, k in zip(flipped, kept))  # each image whole: mirrored or untouched
    assert 16 < sum(flipped) < 48  # about half
    assert torch.equal(load_transform("echo").train_transform(None)(x), x)  # no _flip: no flip


def test_center_crop_cuts_the_centre_then_resizes_to_64() -> None:
    module = load_transform("center_crop")
    x = _images(2, 3, 96, 100)
    assert torch.equal(module.center_crop(x, 48), x[..., 24:72, 26:74])  # torchvision's rounding of the offsets
    out = module.transform(((0.0,) * 3, (1.0,) * 3))(x)
    assert out.shape == (2, 3, 64, 64)
    assert torch.allclose(out, F.interpolate(x[..., 24:72, 26:74], size=(64, 64), mode="bilinear", align_corners=False))
    x = _images(2, 3, 32, 32)  # digits32: smaller than the crop, so padded to 48x48 first
    norm = ((0.5,) * 3, (0.25,) * 3)
    out = module.transform(norm)(x)
    assert out.shape == (2, 3, 64, 64) == (2, *module.out_shape((3, 32, 32)))
    padded = F.pad(x, (8, 8, 8, 8))
    assert torch.allclose(out, (F.interpolate(padded, size=(64, 64), mode="bilinear", align_corners=False) - 0.5) / 0.25)
    assert torch.equal(module.train_transform(norm, torch.Generator().manual_seed(0))(x), out)  # nothing random


def test_center_crop_pads_small_images_with_zeros_as_torchvision_does() -> None:
    module = load_transform("center_crop")
    x = _images(2, 1, 8, 8) + 0.5  # no zeros of its own
    crop = module.center_crop(x, 48)
    assert crop.shape == (2, 1, 48, 48)
    assert torch.equal(crop[..., 20:28, 20:28], x) and int((crop != 0).sum()) == x.numel()
    odd = module.center_crop(_images(1, 1, 7, 9) + 0.5, 10)  # odd padding: the extra zero goes bottom / right
    assert odd.shape == (1, 1, 10, 10) and (odd[..., 1:8, 0:9] != 0).all() and (odd != 0).sum() == 63
    assert torch.equal(module.center_crop(x, 4), x[..., 2:6, 2:6])
    wide = _images(1, 1, 8, 60)  # padded in height only, cropped in width
    assert torch.equal(module.center_crop(wide, 48)[..., 20:28, :], wide[..., 6:54])
    out = module.transform(((0.0,), (1.0,)))(x)
    assert out.shape == (2, 1, 64, 64)
    assert torch.equal(out, F.interpolate(crop, size=(64, 64), mode="bilinear", align_corners=False))
    assert out[..., :10, :].abs().max() == 0 and out[..., 30:34, 30:34].min() > 0


def test_norm_resize_crop_resizes_the_shorter_side_then_crops() -> None:
    x = _images(2, 3, 32, 32)
    norm = ((0.0,) * 3, (1.0,) * 3)
    out = load_transform("norm_256_224").transform(norm)(x)
    assert out.shape == (2, 3, 224, 224)
    resized = F.interpolate(x, size=(256, 256), mode="bilinear", align_corners=False)
    assert torch.allclose(out, resized[..., 16:240, 16:240])
    wide = _images(2, 3, 24, 40)
    out = load_transform("norm_256_224").transform(norm)(wide)
    resized = F.interpolate(wide, size=(256, 426), mode="bilinear", align_corners=False)  # int(256 * 40 / 24)
    assert out.shape == (2, 3, 224, 224) and torch.allclose(out, resized[..., 16:240, 101:325])
    shrunk = load_transform("norm_16_8").transform(norm)(x)  # shrinking antialiases, as PIL does
    expected = F.interpolate(x, size=(16, 16), mode="bilinear", antialias=True, align_corners=False)[..., 4:12, 4:12]
    assert torch.allclose(shrunk, expected)
    module = load_transform("norm_256_224_flip")
    assert torch.equal(module.transform(norm)(wide), out)  # evaluation: never flipped
    flipped = module.train_transform(norm, torch.Generator().manual_seed(3))(wide)
    assert all(torch.equal(f, o) or torch.equal(f, o.flip(-1)) for f, o in zip(flipped, out))
    for size in (7, 64):  # norm_cc_<size>: norm_<size> under another name
        assert torch.equal(load_transform(f"norm_cc_{size}").transform(norm)(wide), load_transform(f"norm_{size}").transform(norm)(wide))
    # but LEMUR's norm_256 is Resize((256, 256)) (test_transforms_lemur.py): it squeezes, where norm_cc_256 crops
    squeezed = F.interpolate(wide, size=(256, 256), mode="bilinear", align_corners=False)
    assert torch.allclose(load_transform("norm_256").transform(norm)(wide), squeezed)


@pytest.mark.parametrize(("name", "dim", "p"), [("random_vertical_flip", -2, 0.22), ("random_horizontal_flip", -1, 0.24)])
def test_random_flips_flip_training_images_only_with_their_probability(name: str, dim: int, p: float) -> None:
    x = _images(400, 3, 64, 64)  # already 64x64: the resize leaves them, so a flip is exact
    norm = ((0.5,) * 3, (0.25,) * 3)
    module = load_transform(name)
    plain = (x - 0.5) / 0.25
    assert torch.equal(module.transform(norm)(x), plain)  # evaluation: deterministic, never flipped
    a = module.train_transform(norm, torch.Generator().manual_seed(3))(x)
    b = module.train_transform(norm, torch.Generator().manual_seed(3))(x)
    c = module.train_transform(norm, torch.Generator().manual_seed(4))(x)
    assert torch.equal(a, b) and not torch.equal(a, c)
    flipped = [bool(torch.equal(a[i], plain[i].flip(dim))) for i in range(400)]
    kept = [bool(torch.equal(a[i], plain[i])) for i in range(400)]
    assert all(f != k for f, k in zip(flipped, kept))  # each image whole: its rows (columns) reversed, or untouched
    assert abs(sum(flipped) / 400 - p) < 0.07
    small = _images(4, 3, 16, 16)  # LEMUR flips before the resize
    out = module.train_transform(norm, torch.Generator().manual_seed(0))(small)
    assert out.shape == (4, 3, 64, 64)


# ---- batches from prepare ------------------------------------------------------------------------
def _prepared(name: str, seed: int = 0):  # type: ignore[no-untyped-def]
    dataset = get_dataset("digits32")
    data = dataset.load(None)
    prm = {"batch": 32, "transform": name}
    return prepare(dataset.info, data, seeded_split(len(data), 0), prm, seed, load_transform(name)), data


def test_prepare_transforms_each_batch_and_flips_only_training_batches() -> None:
    prepared, _ = _prepared("norm_64_flip")
    batches = list(prepared.train)
    assert len(batches) == len(prepared.train) == 34  # 1,078 training images in batches of 32
    assert batches[0][0].shape == (32, 3, 64, 64) and prepared.one.shape == (1, 3, 64, 64)
    assert prepared.batch.shape == (32, 3, 64, 64)
    again, _ = _prepared("norm_64_flip")
    assert all(torch.equal(p[0], q[0]) for p, q in zip(batches, again.train))  # same seed, same flips
    other, _ = _prepared("norm_64_flip", seed=1)
    assert not torch.equal(next(iter(other.train))[0], batches[0][0])
    unflipped, _ = _prepared("norm_64")
    assert torch.equal(unflipped.batch, prepared.batch)  # evaluation inputs: no flip


@pytest.mark.parametrize("name", ["center_crop", "random_vertical_flip", "norm_256_224_flip"])
def test_prepare_runs_the_new_families_and_seeds_their_flips(name: str) -> None:
    prepared, _ = _prepared(name)
    size = parse_transform(name).size
    first = next(iter(prepared.train))[0]
    assert first.shape == (32, 3, size, size) and prepared.one.shape == (1, 3, size, size)
    again, _ = _prepared(name)
    assert torch.equal(next(iter(again.train))[0], first)


def test_plain_norm_gives_the_batches_it_gave_before_transforms_ran_per_batch() -> None:
    prepared, data = _prepared("norm")
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in get_dataset("digits32").info.norm)
    whole = (torch.from_numpy(data.x) - mean) / std  # the old recipe: the whole dataset at once
    train = torch.from_numpy(seeded_split(len(data), 0).train)
    old = DataLoader(TensorDataset(whole[train], torch.from_numpy(data.y)[train]), batch_size=32, shuffle=True,
                     generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(prepared.train, old, strict=True))
    assert torch.equal(prepared.batch, whole[train[:32]])
