"""LEMUR's transform names, parsed into specs. Torch-free: the API validates names with it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import IncompatibleDatasetError, UnknownChoiceError

if TYPE_CHECKING:
    from ..datasets import DatasetInfo

__all__ = [
    "FAMILIES",
    "MAX_SIZE",
    "SOFT_PAD_SIZE",
    "TRANSFORMS",
    "TransformSpec",
    "UnknownTransformError",
    "check_transform",
    "parse_transform",
]

#: family -> what it does, in the order LEMUR's torchvision pipelines do it (``<size>`` from the name)
FAMILIES: dict[str, str] = {
    "norm": "resize the shorter side to <size> and centre-crop <size>x<size>, [flip,] normalise each channel",
    "echo": "resize to <size>x<size>, [flip,] no normalisation (pixels stay in [0, 1])",
    "complex": "resize to <size>x<size>, [flip,] cast to complex64 (pixels in [0, 1], zero imaginary part)",
    "soft_pad": "pad the bottom and right with zeros up to 800x800 (larger images stay), no normalisation",
}

_RESIZE = {
    "norm": "resize the shorter side to {s} (bilinear) and centre-crop {s}x{s}",
    "echo": "resize to {s}x{s} (bilinear)",
    "complex": "resize to {s}x{s} (bilinear)",
    "soft_pad": "pad the bottom and right with zeros up to {s}x{s}",
}
_VALUES = {
    "norm": "normalise each channel (feature) with the dataset's (mean, std)",
    "echo": "leave the values as they are (images: [0, 1])",
    "complex": "cast to complex64 (zero imaginary part)",
    "soft_pad": "leave the values as they are",
}

#: the names Cellar accepts, as patterns; every name in LEMUR's statistics matches one of them
TRANSFORMS: tuple[str, ...] = (
    "norm[_<size>][_flip]",
    "echo[_<size>][_flip]",
    "complex[_<size>][_flip]",
    "soft_pad",
)

#: the largest ``<size>``: one 3x1024x1024 float image is 12 MiB, a batch of 64 of them 768 MiB
MAX_SIZE = 1024
#: LEMUR's ``soft_pad`` pads detection images to 800x800
SOFT_PAD_SIZE = 800

_NAME = re.compile(r"(?P<family>norm|echo|complex)(?:_(?P<size>[1-9][0-9]*))?(?P<flip>_flip)?|(?P<pad>soft_pad)")


class UnknownTransformError(UnknownChoiceError, ValueError):
    """A transform name outside the grammar. A ``ValueError`` too, so pydantic validators report it."""

    def __init__(self, name: object, reason: str = "") -> None:
        super().__init__("transform", name, TRANSFORMS)
        hint = f" ({reason})" if reason else ""
        self.args = (
            f"unknown transform {name!r}{hint}; allowed: {', '.join(TRANSFORMS)}, where <size> is an "
            f"integer from 1 to {MAX_SIZE} (e.g. norm, norm_299, echo_64_flip, complex_32)",
        )


@dataclass(frozen=True)
class TransformSpec:
    """One transform name, parsed. ``size`` is the output's height and width (``soft_pad``: the
    size it pads up to); None keeps the input's size. ``flip`` flips training images at random."""

    name: str
    family: str
    size: int | None = None
    flip: bool = False

    @property
    def images_only(self) -> bool:
        """True when the transform needs images ``(C, H, W)``: only plain ``norm`` and ``echo``
        also apply to feature rows (tables, node features)."""
        return self.name not in ("norm", "echo")

    @property
    def steps(self) -> tuple[str, ...]:
        """What the transform does, step by step, in words."""
        steps = [_RESIZE[self.family].format(s=self.size)] if self.size is not None else []
        if self.flip:
            steps.append("flip training images horizontally with probability 0.5 (evaluation images: never)")
        return (*steps, _VALUES[self.family])

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
        if self.family == "soft_pad":
            return (channels, max(height, self.size), max(width, self.size))
        return (channels, self.size, self.size)


def parse_transform(name: str) -> TransformSpec:
    """``norm_64_flip`` -> ``TransformSpec("norm_64_flip", "norm", 64, True)``; unknown names raise
    ``UnknownTransformError`` listing the patterns."""
    match = _NAME.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        raise UnknownTransformError(name)
    if match["pad"]:
        return TransformSpec(name=name, family="soft_pad", size=SOFT_PAD_SIZE)
    size = int(match["size"]) if match["size"] else None
    if size is not None and size > MAX_SIZE:
        raise UnknownTransformError(name, f"size {size} is larger than {MAX_SIZE}")
    return TransformSpec(name=name, family=match["family"], size=size, flip=bool(match["flip"]))


def check_transform(name: str, info: DatasetInfo | None = None) -> str:
    """``name`` if it is a transform Cellar can run (on the dataset ``info``, when given).

    Raises ``UnknownTransformError`` for a name outside the grammar and
    ``IncompatibleDatasetError`` (both ``ValueError``) for an image transform on a dataset whose
    samples are not images.
    """
    spec = parse_transform(name)
    if info is not None and spec.images_only and not (info.kind == "array" and len(info.in_shape) == 3):
        raise IncompatibleDatasetError(
            f"transform {name!r} works on images (C, H, W); dataset {info.name!r} ({info.task}) has samples "
            f"of shape {list(info.in_shape)}: use 'norm' (standardise the features) or 'echo' (leave them)"
        )
    return name
