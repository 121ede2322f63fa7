"""LEMUR's transform names, parsed into specs. Torch-free: the API validates names with it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import IncompatibleDatasetError, UnknownChoiceError

if TYPE_CHECKING:
    from ..datasets import DatasetInfo

__all__ = [
    "CENTER_CROP",
    "FAMILIES",
    "FIXED_SIZE",
    "LEMUR_FILES",
    "MAX_SIZE",
    "RANDOM_FLIP_P",
    "SOFT_PAD_SIZE",
    "TRANSFORMS",
    "TransformSpec",
    "UnknownTransformError",
    "check_transform",
    "parse_transform",
]

#: family -> what it does, in the order LEMUR's torchvision pipelines do it (sizes from the name)
FAMILIES: dict[str, str] = {
    "norm": "resize the shorter side to <size> (norm_<resize>_<crop>: to <resize>) and centre-crop "
    "<size>x<size> (<crop>x<crop>), [flip,] normalise each channel; norm_cc_<size> is norm_<size>",
    "echo": "resize to <size>x<size>, [flip,] no normalisation (pixels stay in [0, 1])",
    "complex": "resize to <size>x<size>, [flip,] cast to complex64 (pixels in [0, 1], zero imaginary part)",
}

#: the names Cellar accepts, as patterns; every name in LEMUR's statistics matches one of them
TRANSFORMS: tuple[str, ...] = (
    "norm[_<size>][_flip]",
    "norm_<resize>_<crop>[_flip]",
    "norm_cc_<size>",
    "echo[_<size>][_flip]",
    "complex[_<size>][_flip]",
    "soft_pad",
    "center_crop",
    "random_horizontal_flip",
    "random_vertical_flip",
)

#: the largest ``<size>`` (and ``<resize>``, ``<crop>``): one 3x1024x1024 float image is 12 MiB,
#: a batch of 64 of them 768 MiB
MAX_SIZE = 1024
#: LEMUR's ``soft_pad`` pads detection images to 800x800
SOFT_PAD_SIZE = 800
#: LEMUR's ``center_crop``: ``CenterCrop(48)``, then ``Resize((64, 64))``
CENTER_CROP = 48
#: the output size of LEMUR's fixed pipelines (``center_crop``, ``random_*_flip``): ``Resize((64, 64))``
FIXED_SIZE = 64
#: LEMUR's ``random_*_flip``: the probability of the flip
RANDOM_FLIP_P: dict[str, float] = {"random_horizontal_flip": 0.24, "random_vertical_flip": 0.22}

#: the names whose LEMUR file does something else than their family's rule, as LEMUR's file does it:
#: name -> (pipeline, squash, what LEMUR's file does); ``pipeline`` "batch" runs in ``pipeline.py``, the others in
#: ``torchvision_pipeline.py`` (torchvision on each 8-bit image, exactly as LEMUR)
LEMUR_FILES: dict[str, tuple[str, bool, str]] = {
    "norm_160_flip": (
        "random_resized_crop", False,
        "a random resized crop to 160x160 (torchvision's RandomResizedCrop, not Resize + CenterCrop), a random "
        "horizontal flip, normalise; in torchvision, per 8-bit image, training and evaluation alike",
    ),
    "norm_256": ("batch", True, "resize to 256x256 (Resize((256, 256)): both sides, not Resize(256) + CenterCrop(256))"),
    "complex_192": (
        "sr_pair", False,
        "a super-resolution pair transform, not a complex64 cast: a random 64x64 crop of the low-resolution "
        "image and the matching 192x192 crop of the high-resolution one, random flips and quarter turns",
    ),
}
#: sr_pair (``complex_192``): the high-resolution crop is this many times the low-resolution one
SR_SCALE = 3

#: families whose random flip comes before the resize (LEMUR's order); ``_flip`` names flip after it
_FLIP_FIRST = frozenset(RANDOM_FLIP_P)
_VALUES = {
    "norm": "normalise each channel (feature) with the dataset's (mean, std)",
    "echo": "leave the values as they are (images: [0, 1])",
    "complex": "cast to complex64 (zero imaginary part)",
    "soft_pad": "leave the values as they are",
    "center_crop": "normalise each channel with the dataset's (mean, std)",
    "random_horizontal_flip": "normalise each channel with the dataset's (mean, std)",
    "random_vertical_flip": "normalise each channel with the dataset's (mean, std)",
}

_N = r"[1-9][0-9]*"
_NAME = re.compile(
    rf"(?P<family>norm|echo|complex)(?:_(?P<size>{_N}))?(?P<flip>_flip)?"
    rf"|norm_(?P<resize>{_N})_(?P<crop>{_N})(?P<crop_flip>_flip)?"
    rf"|norm_cc_(?P<cc>{_N})"
    r"|(?P<fixed>soft_pad|center_crop|random_horizontal_flip|random_vertical_flip)"
)

#: LEMUR transforms that are one-off torchvision pipelines (besides every ``bf-v1-*``): not implemented
_ONE_OFF = frozenset({
    "five_crop", "denoise", "sr", "sr_transforms", "resize-lemur-256", "Resize_ColorJit_Flip_Blur",
    "blip2_processor", "cached_blip2fast_processor", "git_processor",
})


class UnknownTransformError(UnknownChoiceError, ValueError):
    """A transform name outside the grammar. A ``ValueError`` too, so pydantic validators report it."""

    def __init__(self, name: object, reason: str = "") -> None:
        super().__init__("transform", name, TRANSFORMS)
        hint = f" ({reason})" if reason else ""
        self.args = (
            f"unknown transform {name!r}{hint}; allowed: {', '.join(TRANSFORMS)}, where <size>, <resize> and "
            f"<crop> are integers from 1 to {MAX_SIZE} (e.g. norm, norm_299, norm_256_224_flip, echo_64_flip, "
            "complex_32, center_crop)",
        )


@dataclass(frozen=True)
class TransformSpec:
    """One transform name, parsed. ``size`` is the output's height and width (``soft_pad``: the
    size it pads up to); None keeps the input's size. ``flip`` / ``vflip`` flip training images at
    random, horizontally / vertically, with probability ``flip_p``. ``resize`` (``norm_<resize>_<crop>``)
    is the shorter side's length before the centre crop of ``size`` (None: ``size``); ``crop``
    (``center_crop``) is the centre crop taken before resizing to ``size``."""

    name: str
    family: str
    size: int | None = None
    flip: bool = False
    resize: int | None = None
    crop: int | None = None
    vflip: bool = False
    flip_p: float = 0.5
    #: "batch" (``pipeline.py``, torch ops on batches), or the torchvision pipeline of a LEMUR file
    #: that is not its family's rule (``torchvision_pipeline.py``): "random_resized_crop", "sr_pair"
    pipeline: str = "batch"
    #: norm: resize both sides to ``size`` (LEMUR's ``Resize((size, size))``) instead of the shorter
    #: side and a centre crop
    squash: bool = False

    @property
    def images_only(self) -> bool:
        """True when the transform needs images ``(C, H, W)``: only plain ``norm`` and ``echo``
        also apply to feature rows (tables, node features)."""
        return self.name not in ("norm", "echo")

    @property
    def steps(self) -> tuple[str, ...]:
        """What the transform does, step by step, in words."""
        if self.pipeline == "random_resized_crop":
            return (
                f"crop a random area of 8% to 100% of the image, aspect ratio 3/4 to 4/3, and resize it to "
                f"{self.size}x{self.size} (torchvision's RandomResizedCrop, bilinear, on the 8-bit image)",
                *(["flip horizontally with probability 0.5"] if self.flip else []),
                "to [0, 1] (ToTensor), then normalise each channel with the dataset's (mean, std)",
                "training and evaluation alike, as LEMUR; each image under its own seed (evaluation: fixed seeds)",
            )
        if self.pipeline == "sr_pair":
            low = (self.size or 0) // SR_SCALE
            return (
                f"on (low, high) image pairs: a random {low}x{low} crop of the low-resolution image and the "
                f"matching {self.size}x{self.size} crop of the high-resolution one",
                "flip both left-right with probability 0.5, then top-bottom with probability 0.5",
                "turn both by 0, 90, 180 or 270 degrees, at random; values left as they are",
            )
        flips = [
            f"flip training images {direction} with probability {self.flip_p:g} (evaluation images: never)"
            for direction, on in (("horizontally", self.flip), ("vertically", self.vflip))
            if on
        ]
        steps = flips if self.family in _FLIP_FIRST else []
        if self.crop is not None:
            steps.append(f"centre-crop {self.crop}x{self.crop} (zero-padded evenly where the image is smaller)")
        if self.size is not None:
            steps.append(self._geometry())
        if self.family not in _FLIP_FIRST:
            steps += flips
        return (*steps, _VALUES[self.family])

    def _geometry(self) -> str:
        s = self.size
        if self.family == "soft_pad":
            return f"pad the bottom and right with zeros up to {s}x{s}"
        if self.family != "norm" or self.squash:
            return f"resize to {s}x{s} (bilinear)"
        resize = self.resize or s
        padded = " (zero-padded evenly where the resized image is smaller)" if resize < s else ""
        return f"resize the shorter side to {resize} (bilinear) and centre-crop {s}x{s}{padded}"

    @property
    def description(self) -> str:
        return "; ".join(self.steps)

    def out_shape(self, in_shape: tuple[int, ...] | list[int]) -> tuple[int, ...]:
        """One transformed sample's shape, given one input sample's (channels first)."""
        in_shape = tuple(int(d) for d in in_shape)
        if self.size is None:
            return in_shape
        if len(in_shape) != 3:
            raise ValueError(f"transform {self.name!r} works on images (C, H, W), got samples of shape {list(in_shape)}")
        channels, height, width = in_shape
        if self.pipeline == "sr_pair":
            return (channels, self.size // SR_SCALE, self.size // SR_SCALE)
        if self.family == "soft_pad":
            return (channels, max(height, self.size), max(width, self.size))
        return (channels, self.size, self.size)


def parse_transform(name: str) -> TransformSpec:
    """``norm_64_flip`` -> ``TransformSpec("norm_64_flip", "norm", 64, True)``; unknown names raise
    ``UnknownTransformError`` listing the patterns."""
    match = _NAME.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        one_off = isinstance(name, str) and (name.startswith("bf-v1-") or name in _ONE_OFF)
        raise UnknownTransformError(name, "one of LEMUR's one-off torchvision pipelines, not implemented" if one_off else "")
    for group in ("size", "resize", "crop", "cc"):
        if match[group] and int(match[group]) > MAX_SIZE:
            raise UnknownTransformError(name, f"size {int(match[group])} is larger than {MAX_SIZE}")
    if name in LEMUR_FILES:
        pipeline, squash, _ = LEMUR_FILES[name]
        size = int(match["size"])
        return TransformSpec(name=name, family=match["family"], size=size, flip=bool(match["flip"]),
                             pipeline=pipeline, squash=squash)
    fixed = match["fixed"]
    if fixed == "soft_pad":
        return TransformSpec(name=name, family="soft_pad", size=SOFT_PAD_SIZE)
    if fixed == "center_crop":
        return TransformSpec(name=name, family="center_crop", size=FIXED_SIZE, crop=CENTER_CROP)
    if fixed:
        return TransformSpec(
            name=name, family=fixed, size=FIXED_SIZE, flip=fixed == "random_horizontal_flip",
            vflip=fixed == "random_vertical_flip", flip_p=RANDOM_FLIP_P[fixed],
        )
    if match["cc"]:  # Resize(size) then CenterCrop(size): norm_<size> under another name
        return TransformSpec(name=name, family="norm", size=int(match["cc"]))
    if match["crop"]:
        return TransformSpec(
            name=name, family="norm", size=int(match["crop"]), flip=bool(match["crop_flip"]), resize=int(match["resize"])
        )
    size = int(match["size"]) if match["size"] else None
    return TransformSpec(name=name, family=match["family"], size=size, flip=bool(match["flip"]))


def check_transform(name: str, info: DatasetInfo | None = None) -> str:
    """``name`` if it is a transform Cellar can run (on the dataset ``info``, when given).

    Raises ``UnknownTransformError`` for a name outside the grammar and
    ``IncompatibleDatasetError`` (both ``ValueError``) for an image transform on a dataset whose
    samples are not images.
    """
    spec = parse_transform(name)
    if info is not None and spec.pipeline == "sr_pair":
        raise IncompatibleDatasetError(
            f"transform {name!r} is LEMUR's {LEMUR_FILES[name][2]}; dataset "
            f"{info.name!r} ({info.task}) has single images: use complex_<size> with another size for the "
            "complex64 family"
        )
    if info is not None and spec.images_only and not (info.kind == "array" and len(info.in_shape) == 3):
        raise IncompatibleDatasetError(
            f"transform {name!r} works on images (C, H, W); dataset {info.name!r} ({info.task}) has samples "
            f"of shape {list(info.in_shape)}: use 'norm' (standardise the features) or 'echo' (leave them)"
        )
    return name
