"""Input transforms by LEMUR name, as torch ops on batches (whole batches at once, where LEMUR runs torchvision per image).

A name parses into a ``TransformSpec`` (family, size, flips, resize, crop); ``TRANSFORMS`` lists the
accepted patterns and ``FAMILIES`` what each family does. ``transform_source(name)`` is one standalone file
implementing exactly that transform (the template ``pipeline.py`` with the name's parameters bound),
stored as the trial's ``transform_code``; ``load_transform(name)`` runs that source as a module.
The few names whose LEMUR file is not their family's rule (``LEMUR_FILES``: ``norm_160_flip``,
``norm_256``, ``complex_192``) are what LEMUR's file does, ``norm_160_flip`` and ``complex_192``
written from ``torchvision_pipeline.py`` (torchvision on each 8-bit image, as LEMUR runs it).
Importing this package does not import torch.
"""

from __future__ import annotations

from ._names import (
    CENTER_CROP,
    FAMILIES,
    FIXED_SIZE,
    LEMUR_FILES,
    MAX_SIZE,
    RANDOM_FLIP_P,
    SOFT_PAD_SIZE,
    TRANSFORMS,
    TransformSpec,
    UnknownTransformError,
    check_transform,
    parse_transform,
)
from ._source import TEMPLATE_MODULE, TORCHVISION_MODULE, load_transform, transform_module, transform_source

__all__ = [
    "CENTER_CROP",
    "FAMILIES",
    "FIXED_SIZE",
    "LEMUR_FILES",
    "MAX_SIZE",
    "RANDOM_FLIP_P",
    "SOFT_PAD_SIZE",
    "TEMPLATE_MODULE",
    "TORCHVISION_MODULE",
    "TRANSFORMS",
    "TransformSpec",
    "UnknownTransformError",
    "check_transform",
    "load_transform",
    "parse_transform",
    "transform_module",
    "transform_source",
]
