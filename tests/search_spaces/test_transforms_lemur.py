"""Cellar's transforms against LEMUR's own transform files (nn-dataset 2.2.11, ``ab/nn/transform``).

The wheel is fetched with pip at set-up (cached under ``.cellar/wheels``); each LEMUR file is
executed from it as LEMUR loads it, and given the same 8-bit images and the same seeds as Cellar's
pipeline. Where a LEMUR file is not its family's rule (``LEMUR_FILES``: ``norm_160_flip``,
``complex_192``), Cellar runs torchvision as LEMUR does and the tensors are equal; for the family
names, Cellar's batch ops on float images agree with torchvision on PIL images up to rounding.
If the wheel cannot be fetched, these tests fail: they do not skip.
"""

from __future__ import annotations

import random
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from search_spaces.datasets import get_dataset
from search_spaces.errors import IncompatibleDatasetError
from search_spaces.transforms import LEMUR_FILES, check_transform, load_transform, parse_transform, transform_source

LEMUR_VERSION = "2.2.11"
WHEELS = Path(__file__).resolve().parents[2] / ".cellar" / "wheels"
#: CIFAR-10's constants, as LEMUR's cifar-10 loader hands them to ``transform(norm)``
NORM = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))


def lemur_wheel(version: str) -> Path:
    """nn-dataset's wheel of ``version``, downloaded once (pip, no dependencies) into ``.cellar/wheels``."""
    found = sorted(WHEELS.glob(f"nn_dataset-{version}-*.whl"))
    if not found:
        WHEELS.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q",
             "-d", str(WHEELS), f"nn-dataset=={version}"],
            check=True, timeout=600,
        )  # fmt: skip
        found = sorted(WHEELS.glob(f"nn_dataset-{version}-*.whl"))
    assert found, f"pip fetched no nn-dataset {version} wheel into {WHEELS}"
    return found[-1]


class LemurTransforms:
    """LEMUR's transform modules by name, each executed from the wheel's ``ab/nn/transform/<name>.py``
    as LEMUR's ``load_dataset`` executes a transform file."""

    def __init__(self, wheel: Path) -> None:
        with zipfile.ZipFile(wheel) as archive:
            self.files = {
                path.rpartition("/")[2][:-3]: archive.read(path).decode()
                for path in archive.namelist()
                if path.startswith("ab/nn/transform/") and path.count("/") == 3 and path.endswith(".py")
            }
        self.modules: dict[str, types.ModuleType] = {}

    def __getitem__(self, name: str) -> types.ModuleType:
        if name not in self.modules:
            module = types.ModuleType(f"lemur_transform_{name}")
            exec(compile(self.files[name], f"<lemur ab/nn/transform/{name}.py>", "exec"), module.__dict__)  # noqa: S102
            self.modules[name] = module
        return self.modules[name]


@pytest.fixture(scope="module")
def lemur() -> LemurTransforms:
    transforms = LemurTransforms(lemur_wheel(LEMUR_VERSION))
    assert {"norm_160_flip", "complex_192", "norm_256", "norm_32"} <= set(transforms.files)
    return transforms


def _pixels(n: int, channels: int, height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, height, width, channels), dtype=np.uint8)


def _pil(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)


def _floats(pixels: np.ndarray) -> torch.Tensor:
    """The batch Cellar's datasets hold: float (N, C, H, W) in [0, 1]."""
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div(255)


def _seeds(generator_seed: int, n: int) -> list[int]:
    """The per-image seeds Cellar draws from a generator seeded ``generator_seed``."""
    return torch.randint(0, 2**62, (n,), generator=torch.Generator().manual_seed(generator_seed)).tolist()


def _lemur_on(lemur_pipeline, pixels: np.ndarray, seeds: list[int]) -> torch.Tensor:
    outputs = []
    for image, seed in zip(pixels, seeds):
        torch.manual_seed(seed)
        random.seed(seed)
        outputs.append(lemur_pipeline(_pil(image)))
    return torch.stack(outputs)


# ---- the names whose LEMUR file is not the family's rule: equal tensors --------------------------
@pytest.mark.parametrize(("channels", "height", "width"), [(3, 32, 32), (3, 48, 80), (1, 28, 28), (3, 200, 150)])
def test_norm_160_flip_is_lemurs_random_resized_crop_exactly(lemur, channels: int, height: int, width: int) -> None:
    pixels = _pixels(6, channels, height, width, seed=height + width)
    norm = (NORM[0][:channels], NORM[1][:channels])
    cellar = load_transform("norm_160_flip")
    ours = cellar.train_transform(norm, generator=torch.Generator().manual_seed(7))(_floats(pixels))
    theirs = _lemur_on(lemur["norm_160_flip"].transform(norm), pixels, _seeds(7, len(pixels)))
    assert ours.shape == (6, channels, 160, 160) == theirs.shape
    assert torch.equal(ours, theirs)
    # evaluation runs the same pipeline (as LEMUR does) under fixed seeds: it repeats
    evaluation = cellar.transform(norm)
    first = evaluation(_floats(pixels))
    assert torch.equal(first, _lemur_on(lemur["norm_160_flip"].transform(norm), pixels, _seeds(0, len(pixels))))
    assert torch.equal(first, evaluation(_floats(pixels)))
    # LEMUR's entry point on one PIL image, under torch's seed
    for seed in range(5):
        torch.manual_seed(seed)
        expected = lemur["norm_160_flip"].transform(norm)(_pil(pixels[0]))
        torch.manual_seed(seed)
        assert torch.equal(cellar.lemur_transform(norm)(_pil(pixels[0])), expected)


def test_the_global_generators_are_left_as_they_were() -> None:
    torch.manual_seed(3)
    random.seed(3)
    load_transform("norm_160_flip").train_transform(NORM, torch.Generator().manual_seed(1))(_floats(_pixels(2, 3, 32, 32, 0)))
    after = torch.rand(1), random.random()
    torch.manual_seed(3)
    random.seed(3)
    assert (torch.rand(1), random.random()) == after


def test_complex_192_is_lemurs_super_resolution_pair_transform_exactly(lemur) -> None:
    cellar = load_transform("complex_192")
    for seed in range(12):  # enough draws to meet every flip and quarter turn
        rng = np.random.default_rng(seed)
        low = torch.from_numpy(rng.random((3, 70 + seed, 90), dtype=np.float32))
        high = torch.from_numpy(rng.random((3, 3 * (70 + seed), 270), dtype=np.float32))
        random.seed(seed)
        theirs = lemur["complex_192"].transform(None)(low, high)
        random.seed(seed)
        ours = cellar.lemur_transform(None)(low, high)
        assert ours[0].shape == (3, 64, 64) and ours[1].shape == (3, 192, 192)
        assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])
    assert cellar.out_shape((3, 70, 90)) == (3, 64, 64)


def test_complex_192_is_refused_on_single_image_datasets() -> None:
    spec = parse_transform("complex_192")
    assert (spec.family, spec.size, spec.pipeline) == ("complex", 192, "sr_pair")
    with pytest.raises(IncompatibleDatasetError, match="super-resolution pair transform"):
        check_transform("complex_192", get_dataset("digits32").info)
    assert check_transform("complex_32", get_dataset("digits32").info) == "complex_32"


def test_the_stored_source_is_what_runs_and_says_what_lemur_does() -> None:
    for name in LEMUR_FILES:
        source = transform_source(name)
        assert f'NAME = "{name}"' in source and "LEMUR's file for it" in source or name == "norm_256"
        namespace: dict[str, object] = {}
        exec(compile(source, "<test>", "exec"), namespace)  # noqa: S102 - runs alone, outside Cellar
        assert namespace["out_shape"]((3, 96, 96)) == parse_transform(name).out_shape((3, 96, 96))
    assert "RandomResizedCrop" in transform_source("norm_160_flip")
    assert "from torchvision" not in transform_source("norm_32")  # the family names stay torch ops on batches


# ---- the family names: the batch ops agree with LEMUR's torchvision up to rounding ----------------
#: (name, LEMUR's file, input (C, H, W), tolerance in the output's units). Resizes differ by PIL's
#: 8-bit rounding (and its filter, when shrinking); pure crops, casts and normalisation are exact.
FAMILY_NAMES = [
    ("norm", "norm", (3, 32, 32), 1e-5),
    ("echo", "echo", (3, 32, 32), 1e-6),
    ("complex", "complex", (3, 32, 32), 1e-6),
    ("norm_32", "norm_32", (3, 32, 32), 1e-5),
    ("norm_cc_256", "norm_cc_256", (3, 256, 300), 1e-5),
    ("norm_224", "norm_224", (3, 224, 260), 1e-5),
    ("norm_64", "norm_64", (3, 32, 32), 0.1),
    ("norm_256", "norm_256", (3, 200, 280), 0.1),
    ("echo_64", "echo_64", (3, 40, 24), 0.02),
    ("complex_64", "complex_64", (3, 32, 32), 0.02),
]


@pytest.mark.parametrize(("name", "file", "shape", "tolerance"), FAMILY_NAMES)
def test_family_names_agree_with_lemurs_files(lemur, name: str, file: str, shape: tuple[int, int, int], tolerance: float) -> None:
    channels, height, width = shape
    pixels = _pixels(3, channels, height, width, seed=1)
    ours = load_transform(name).transform(NORM)(_floats(pixels))
    theirs = torch.stack([lemur[file].transform(NORM)(_pil(p)) for p in pixels])
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    assert (ours - theirs).abs().max().item() <= tolerance


def test_norm_256_resizes_both_sides_as_lemurs_file(lemur) -> None:
    """LEMUR's norm_256 is ``Resize((256, 256))``: a wide image is squeezed whole, not centre-cropped."""
    pixels = np.zeros((1, 100, 400, 3), dtype=np.uint8)
    pixels[:, :, :50] = 255  # a white band on the left, which a centre crop would cut away
    ours = load_transform("norm_256").transform(((0.0,) * 3, (1.0,) * 3))(_floats(pixels))
    theirs = lemur["norm_256"].transform(((0.0,) * 3, (1.0,) * 3))(_pil(pixels[0]))
    assert ours.shape == (1, 3, 256, 256)
    assert ours[0, :, :, :16].min() > 0.99 and theirs[:, :, :16].min() > 0.99
    assert parse_transform("norm_256").squash and not parse_transform("norm_256_flip").squash
