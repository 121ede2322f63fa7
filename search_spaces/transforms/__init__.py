"""Input transforms by name (LEMUR's naming), as torch ops: torchvision has no CPU build here.

Each module ``<name>.py`` defines ``transform(norm)`` returning a callable on a float tensor of
shape ``(..., C, H, W)``. Its source is what ``/v1/data`` reports as ``transform_code``.
"""

from __future__ import annotations

from ..errors import UnknownChoiceError

__all__ = ["TRANSFORMS", "transform_module"]

TRANSFORMS: tuple[str, ...] = ("echo", "norm")


def transform_module(name: str) -> str:
    if name not in TRANSFORMS:
        raise UnknownChoiceError("transform", name, TRANSFORMS)
    return f"{__name__}.{name}"
