"""A user's transform file, as LEMUR's ``check_nn(..., transform_dir=...)`` runs it.

LEMUR (``ab.nn.util.Loader.load_dataset``) executes ``<transform_dir>/<prm['transform']>.py`` as a
module and calls its ``transform(norm)``, ``norm`` being the dataset loader's ``(means, stds)`` per
channel; what it returns is the torchvision dataset's ``transform``: a callable on one PIL image that
returns a tensor, used for the training and the test images alike. Here the file's source is
executed as a module (in the sandbox, never in the API process), and its pipeline is applied to each
image of a batch as the 8-bit PIL image a torchvision dataset would hand it, each under a seed of its
own (``torchvision_pipeline.images_through``): training draws the seeds from the trial's generator,
evaluation from one seeded 0, so a seed fixes every random step and evaluations repeat.

Importing this module imports torch, torchvision and PIL (the worker's side only).
"""

from __future__ import annotations

import linecache
import types
from typing import Any

import torch

from .torchvision_pipeline import images_through

__all__ = ["TransformCodeError", "load_user_transform"]


class TransformCodeError(Exception):
    """The user's transform code failed: it does not compile, raises when executed, has no
    ``transform(norm)``, or its pipeline fails on an image or returns no tensor."""

    def __init__(self, message: str, *, line: int | None = None, error: BaseException | None = None) -> None:
        super().__init__(message)
        self.line = line
        self.error = error


def transform_filename(name: str) -> str:
    return f"<transform {name}.py>"


def load_user_transform(code: str, name: str) -> types.ModuleType:
    """The module Cellar's training uses (``NAME``, ``USER``, ``transform(norm)``,
    ``train_transform(norm, generator)``, ``out_shape`` None: the shape is what the pipeline gives)
    for the user's transform source ``code`` saved as ``<name>.py``. Raises ``TransformCodeError``."""
    filename = transform_filename(name)
    try:
        compiled = compile(code, filename, "exec")
    except SyntaxError as error:
        where = f"line {error.lineno}" + (f", column {error.offset}" if error.offset else "")
        raise TransformCodeError(
            f"the transform file {name}.py does not compile: {where}: {error.msg}", line=error.lineno, error=error
        ) from None
    linecache.cache[filename] = (len(code), None, code.splitlines(keepends=True), filename)
    user = types.ModuleType(f"cellar_user_transform_{name.replace('-', '_').replace('.', '_')}")
    user.__file__ = filename
    try:
        exec(compiled, user.__dict__)  # noqa: S102 - the user's transform, run in the sandbox
    except Exception as error:
        raise TransformCodeError(
            f"executing the transform file {name}.py raised {type(error).__name__}: {error}", error=error
        ) from None
    if not callable(getattr(user, "transform", None)):
        raise TransformCodeError(
            f"the transform file {name}.py defines no function transform(norm) (LEMUR's convention: it returns "
            "the pipeline for one PIL image, e.g. torchvision.transforms.Compose([..., ToTensor(), Normalize(*norm)]))"
        )

    def pipeline(norm: Any) -> Any:
        try:
            one = user.transform(norm)
        except Exception as error:
            raise TransformCodeError(f"transform(norm) of {name}.py raised {type(error).__name__}: {error}", error=error) from None
        if not callable(one):
            raise TransformCodeError(f"transform(norm) of {name}.py returned {type(one).__name__}, not a callable on one image")

        def checked(image: Any) -> torch.Tensor:
            try:
                out = one(image)
            except Exception as error:
                raise TransformCodeError(
                    f"the pipeline of {name}.py raised {type(error).__name__}: {error} on a {image.mode} image of "
                    f"{image.width}x{image.height}", error=error
                ) from None
            if not isinstance(out, torch.Tensor):
                raise TransformCodeError(
                    f"the pipeline of {name}.py returned {type(out).__name__} for a {image.mode} image, not a tensor "
                    "(end it with transforms.ToTensor() or PILToTensor())"
                )
            return out

        return checked

    adapter = types.ModuleType(f"cellar_transform_{user.__name__}")
    adapter.NAME = name
    adapter.USER = True
    adapter.FAMILY = "user"
    adapter.SOURCE = code
    adapter.out_shape = None
    adapter.transform = lambda norm: _batched(images_through(pipeline(norm), None, name), name)
    adapter.train_transform = lambda norm, generator=None: _batched(images_through(pipeline(norm), generator, name), name)
    return adapter


def _batched(apply: Any, name: str) -> Any:
    """``apply`` on a batch; images of different shapes (or a batch that is not images) are the
    transform's failure."""

    def run(x: torch.Tensor) -> torch.Tensor:
        try:
            return apply(x)
        except TransformCodeError:
            raise
        except (RuntimeError, ValueError) as error:
            raise TransformCodeError(
                f"the images that {name}.py gives cannot be made a batch: {error} (every image must come out "
                "the same shape: resize or crop to a fixed size)"
            ) from None  # no traceback: the frames are Cellar's, not the file's

    return run
