"""A LEMUR input transform as plain torch ops on batches (no torchvision).

LEMUR's transforms (``ab/nn/transform/<name>.py``) are torchvision pipelines run on one PIL image at
a time. This runs the same steps on a batch of float images ``(N, C, H, W)`` in [0, 1] (what
``ToTensor`` gives), so a dataset is never resized as a whole: random flip (``random_*_flip``),
centre crop (``center_crop``), resize, centre crop or pad, random flip (``_flip``), then normalise
(``norm``, ``center_crop``, ``random_*_flip``) or cast to complex64 (``complex``). Plain ``norm``
and ``echo`` also take feature rows ``(N, F)``.

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
FAMILY = "echo"  # norm | echo | complex | soft_pad | center_crop | random_horizontal_flip | random_vertical_flip
SIZE = None  # output height and width (soft_pad: the size it pads up to); None keeps the input's
FLIP = False  # flip training images horizontally with probability FLIP_P
RESIZE = None  # norm: the shorter side's length before the centre crop of SIZE; None: SIZE
CROP = None  # center_crop: the centre CROP x CROP taken (zero-padded where smaller) before resizing to SIZE
VFLIP = False  # flip training images vertically with probability FLIP_P
FLIP_P = 0.5  # the probability of each random flip
SQUASH = False  # norm: resize both sides to SIZE (LEMUR's norm_256 is Resize((256, 256))), no centre crop
# cellar: end architecture

#: the families that normalise each channel with the dataset's (mean, std)
NORMALISED = ("norm", "center_crop", "random_horizontal_flip", "random_vertical_flip")
#: the families that flip before resizing, as LEMUR does; ``_flip`` names flip after it
FLIP_FIRST = ("random_horizontal_flip", "random_vertical_flip")


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
    ``(means, stds)`` per channel (or feature), used by the normalising families only."""
    return pipeline(norm, train=False, generator=None)


def train_transform(norm, generator=None):
    """The same for training batches: with ``FLIP`` (``VFLIP``), each image is mirrored left-right
    (top-bottom) with probability ``FLIP_P``, drawn from ``generator`` (a seeded ``torch.Generator``;
    None: torch's global one)."""
    return pipeline(norm, train=True, generator=generator)


def pipeline(norm, train, generator):
    """The steps of this transform as one function on batches; ``train`` turns the flips on."""
    normalised = FAMILY in NORMALISED
    mean = torch.tensor(norm[0], dtype=torch.float32) if normalised else None
    std = torch.tensor(norm[1], dtype=torch.float32) if normalised else None

    def apply(x):
        if x.dim() != 4 and (SIZE is not None or FLIP or VFLIP or FAMILY in ("complex", "soft_pad")):
            raise ValueError(f"transform {NAME!r} works on images (N, C, H, W), got a batch of shape {list(x.shape)}")
        if train and FAMILY in FLIP_FIRST:
            x = flip_some(x, generator)
        if CROP is not None:
            x = center_crop(x, CROP)
        if SIZE is not None:
            if FAMILY == "soft_pad":
                x = pad_to(x, SIZE)
            elif FAMILY == "norm" and not SQUASH:  # torchvision's Resize(RESIZE) then CenterCrop(SIZE)
                x = center_crop(resize_shorter(x, RESIZE or SIZE), SIZE)
            else:  # Resize((SIZE, SIZE))
                x = resize(x, SIZE, SIZE)
        if train and FAMILY not in FLIP_FIRST:
            x = flip_some(x, generator)
        if normalised:
            x = normalise(x, mean, std)
        elif FAMILY == "complex":
            x = x.to(torch.complex64)
        return x

    return apply


def resize(x, height, width):
    """Bilinear resize to ``height`` x ``width``; an image already that size stays as it is."""
    if tuple(x.shape[-2:]) == (height, width):
        return x
    # PIL antialiases when it shrinks; torch does only when asked (and upsampling needs no filter)
    shrink = height < x.shape[-2] or width < x.shape[-1]
    return F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=shrink)


def resize_shorter(x, size):
    """torchvision's ``Resize(size)``: the shorter side becomes ``size``, keeping the aspect ratio."""
    height, width = x.shape[-2:]
    # torchvision's arithmetic for the longer side
    target = (size, int(size * width / height)) if height <= width else (int(size * height / width), size)
    return resize(x, *target)


def center_crop(x, size):
    """torchvision's ``CenterCrop(size)``: the central ``size`` x ``size``; a side shorter than
    ``size`` is first padded with zeros, evenly (the extra zero, if odd, on the bottom / right)."""
    height, width = x.shape[-2:]
    if size > height or size > width:
        rows, cols = max(0, size - height), max(0, size - width)
        x = F.pad(x, (cols // 2, (cols + 1) // 2, rows // 2, (rows + 1) // 2))
        height, width = x.shape[-2:]
    top, left = round((height - size) / 2), round((width - size) / 2)
    return x[..., top : top + size, left : left + size]


def pad_to(x, size):
    """Zeros on the bottom and right up to ``size`` x ``size``; larger sides stay as they are."""
    height, width = x.shape[-2:]
    return F.pad(x, (0, max(0, size - width), 0, max(0, size - height)))


def flip_some(x, generator):
    """With ``FLIP``, mirror each image left-right with probability ``FLIP_P``; then, with
    ``VFLIP``, top-bottom. One uniform draw per image and flip, from ``generator``."""
    device = generator.device if generator is not None else torch.device("cpu")
    for on, dim in ((FLIP, -1), (VFLIP, -2)):
        if on:
            flip = torch.rand(x.shape[0], generator=generator, device=device) < FLIP_P
            x = torch.where(flip.to(x.device).view(-1, 1, 1, 1), x.flip(dim), x)
    return x


def normalise(x, mean, std):
    """``(x - mean) / std`` along dimension 1: the channels of images, the features of rows."""
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return (x - mean.to(x.device).view(shape)) / std.to(x.device).view(shape)
