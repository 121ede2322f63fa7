"""A LEMUR input transform as plain torch ops on batches (no torchvision).

LEMUR's transforms (``ab/nn/transform/<name>.py``) are torchvision pipelines run on one PIL image at
a time. This runs the same steps on a batch of float images ``(N, C, H, W)`` in [0, 1] (what
``ToTensor`` gives), so a dataset is never resized as a whole: resize or pad, random horizontal
flip, then normalise (``norm``) or cast to complex64 (``complex``). Plain ``norm`` and ``echo`` also
take feature rows ``(N, F)``.

Deviation from LEMUR, on purpose: LEMUR gives its test set the training transform, random flip
included; here ``transform(norm)`` (LEMUR's entry point, used for evaluation) is deterministic and
only ``train_transform(norm, generator)`` flips, drawing from ``generator`` so a seed fixes every flip.

Shapes:
    input: ``(N, C, H, W)`` float images, or ``(N, F)`` feature rows (``norm``, ``echo``)
    output: ``(N, *out_shape((C, H, W)))``; float32, complex64 for ``complex``
"""

import torch
import torch.nn.functional as F

# cellar: architecture
NAME = None  # this file is the template; Cellar writes a name's constants here (see transform_source)
FAMILY = "echo"  # norm | echo | complex | soft_pad
SIZE = None  # output height and width (soft_pad: the size it pads up to); None keeps the input's
FLIP = False  # flip training images horizontally with probability 0.5
# cellar: end architecture


def out_shape(in_shape):
    """One transformed sample's shape, given one input sample's (channels first)."""
    if SIZE is None:
        return tuple(in_shape)
    channels, height, width = in_shape
    if FAMILY == "soft_pad":
        return (channels, max(height, SIZE), max(width, SIZE))
    return (channels, SIZE, SIZE)


def transform(norm):
    """LEMUR's entry point: this transform on batches, deterministic (evaluation). ``norm`` is
    ``(means, stds)`` per channel (or feature), used by ``norm`` only."""
    return pipeline(norm, train=False, generator=None)


def train_transform(norm, generator=None):
    """The same for training batches: with ``FLIP``, each image is mirrored with probability 0.5,
    drawn from ``generator`` (a seeded ``torch.Generator``; None: torch's global one)."""
    return pipeline(norm, train=True, generator=generator)


def pipeline(norm, train, generator):
    """The steps of this transform as one function on batches; ``train`` turns the flip on."""
    mean = torch.tensor(norm[0], dtype=torch.float32) if FAMILY == "norm" else None
    std = torch.tensor(norm[1], dtype=torch.float32) if FAMILY == "norm" else None

    def apply(x):
        if x.dim() != 4 and (SIZE is not None or FLIP or FAMILY in ("complex", "soft_pad")):
            raise ValueError(f"transform {NAME!r} works on images (N, C, H, W), got a batch of shape {list(x.shape)}")
        if SIZE is not None:
            x = pad_to(x, SIZE) if FAMILY == "soft_pad" else resize(x, SIZE, crop=FAMILY == "norm")
        if FLIP and train:
            x = flip_some(x, generator)
        if FAMILY == "norm":
            x = normalise(x, mean, std)
        elif FAMILY == "complex":
            x = x.to(torch.complex64)
        return x

    return apply


def resize(x, size, crop):
    """Bilinear resize to ``size`` x ``size``. With ``crop`` (torchvision's ``Resize(size)`` then
    ``CenterCrop(size)``) the shorter side becomes ``size``, keeping the aspect ratio, and the
    centre is cut out; without it (``Resize((size, size))``) both sides become ``size``."""
    height, width = x.shape[-2:]
    if (height, width) == (size, size):
        return x
    if crop:
        # torchvision's arithmetic for the longer side
        target = (size, int(size * width / height)) if height <= width else (int(size * height / width), size)
    else:
        target = (size, size)
    # PIL antialiases when it shrinks; torch does only when asked (and upsampling needs no filter)
    shrink = target[0] < height or target[1] < width
    x = F.interpolate(x, size=target, mode="bilinear", align_corners=False, antialias=shrink)
    top, left = round((target[0] - size) / 2), round((target[1] - size) / 2)
    return x[..., top : top + size, left : left + size]


def pad_to(x, size):
    """Zeros on the bottom and right up to ``size`` x ``size``; larger sides stay as they are."""
    height, width = x.shape[-2:]
    return F.pad(x, (0, max(0, size - width), 0, max(0, size - height)))


def flip_some(x, generator):
    """Mirror each image left-right with probability 0.5."""
    device = generator.device if generator is not None else torch.device("cpu")
    flip = torch.rand(x.shape[0], generator=generator, device=device) < 0.5
    return torch.where(flip.to(x.device).view(-1, 1, 1, 1), x.flip(-1), x)


def normalise(x, mean, std):
    """``(x - mean) / std`` along dimension 1: the channels of images, the features of rows."""
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return (x - mean.to(x.device).view(shape)) / std.to(x.device).view(shape)
