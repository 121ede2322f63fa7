"""A LEMUR input transform run as LEMUR runs it: torchvision, on one 8-bit PIL image at a time.

Most LEMUR names are the same few steps with a size and a flip, which ``pipeline.py`` runs on whole
batches. A few of LEMUR's files do something else under a family's name; those run here, step for
step as torchvision does them, so that the same image and the same seed give the same tensor:

- ``random_resized_crop`` (``norm_160_flip``): ``RandomResizedCrop(SIZE)`` (scale 0.08 to 1, ratio
  3/4 to 4/3, bilinear), ``RandomHorizontalFlip()`` with ``FLIP``, ``ToTensor``, ``Normalize(norm)``;
- ``sr_pair`` (``complex_192``): a super-resolution pair ``(low, high)`` of ``(C, H, W)`` tensors:
  a random ``SIZE // SCALE`` square of the low-resolution image and the matching ``SIZE`` square
  of the high-resolution one, then, each with probability 1/2, a left-right and a top-bottom
  flip of both, then a quarter turn of both by 0, 90, 180 or 270 degrees, drawn from Python's
  ``random``. No normalisation.

``lemur_transform(norm)`` is LEMUR's entry point (``transform(norm)`` of LEMUR's file): the callable
on one image (one pair). The batch functions Cellar's training calls, ``transform(norm)`` (evaluation)
and ``train_transform(norm, generator)``, hand each image of a float batch ``(N, C, H, W)`` in [0, 1]
to it as the 8-bit PIL image a torchvision dataset gives LEMUR (``round(255 x)``), under a seed of
its own: ``torch.manual_seed`` and ``random.seed`` with it, inside a forked random state, so the
global generators are left as they were. Training draws the seeds from ``generator``; evaluation
from a generator seeded 0, so it repeats (LEMUR evaluates with the same random pipeline, and so does
Cellar here, where ``pipeline.py``'s families evaluate without their random flip).
"""

import random

import torch
from PIL import Image
from torchvision import transforms
from torchvision.transforms import functional as TF

# cellar: architecture
NAME = None  # this file is the template; Cellar writes a name's constants here (see transform_source)
FAMILY = "random_resized_crop"  # random_resized_crop | sr_pair
SIZE = 160  # random_resized_crop: the output's side; sr_pair: the high-resolution crop's side
FLIP = True  # random_resized_crop: a random left-right flip after the crop
SCALE = 3  # sr_pair: the low-resolution image is SCALE times smaller
# cellar: end architecture

#: the angles of sr_pair's random quarter turn, in degrees
QUARTER_TURNS = (0, 90, 180, 270)


def out_shape(in_shape):
    """One transformed sample's shape, given one input sample's (channels first); sr_pair: the
    low-resolution crop's."""
    side = SIZE // SCALE if FAMILY == "sr_pair" else SIZE
    return (in_shape[0], side, side)


def lemur_transform(norm):
    """LEMUR's ``transform(norm)``: the pipeline on one PIL image (sr_pair: on one pair of tensors)."""
    if FAMILY == "sr_pair":
        return sr_pair
    steps = [transforms.RandomResizedCrop(SIZE)]
    if FLIP:
        steps.append(transforms.RandomHorizontalFlip())
    steps += [transforms.ToTensor(), transforms.Normalize(*norm)]
    return transforms.Compose(steps)


def sr_pair(low, high):
    """sr_pair's steps on one (low, high) pair of ``(C, H, W)`` tensors, drawing from ``random``."""
    side = SIZE // SCALE
    height, width = low.shape[-2:]
    top = random.randint(0, max(0, height - side))
    left = random.randint(0, max(0, width - side))
    low = TF.crop(low, top, left, side, side)
    high = TF.crop(high, top * SCALE, left * SCALE, SIZE, SIZE)
    for flip in (TF.hflip, TF.vflip):
        if random.random() < 0.5:
            low, high = flip(low), flip(high)
    angle = random.choice(QUARTER_TURNS)
    if angle:
        low, high = TF.rotate(low, angle), TF.rotate(high, angle)
    return low, high


def transform(norm):
    """The batch function for evaluation: every image under a seed drawn from a generator seeded 0."""
    return per_image(lemur_transform(norm), None)


def train_transform(norm, generator=None):
    """The batch function for training: every image under a seed drawn from ``generator``."""
    return per_image(lemur_transform(norm), generator)


def per_image(one, generator):
    """A batch function that applies ``one`` (a callable on one PIL image, returning a tensor) to
    each image of a float batch ``(N, C, H, W)`` in [0, 1], each under its own seed."""
    if FAMILY == "sr_pair":
        raise ValueError(
            f"transform {NAME!r} is LEMUR's super-resolution pair transform: it takes (low, high) image "
            "pairs, and no Cellar dataset has them"
        )
    return images_through(one, generator)


def images_through(one, generator, name=None):
    """``one`` on each image of a batch, as LEMUR's torchvision datasets hand it images, seeded;
    ``name``: the transform's, for messages (default ``NAME``)."""
    name = name or NAME

    def apply(x):
        if x.dim() != 4:
            raise ValueError(f"transform {name!r} works on images (N, C, H, W), got a batch of shape {list(x.shape)}")
        draws = generator if generator is not None else torch.Generator().manual_seed(0)
        seeds = torch.randint(0, 2**62, (x.shape[0],), generator=draws, device=draws.device).tolist()
        outputs = [seeded(one, to_pil(image, name), seed) for image, seed in zip(x.detach().cpu(), seeds)]
        return torch.stack(outputs).to(x.device)

    return apply


def seeded(function, image, seed):
    """``function(image)`` with torch's and Python's global generators seeded ``seed``, restored after."""
    state = random.getstate()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            random.seed(seed)
            return function(image)
    finally:
        random.setstate(state)


def to_pil(image, name=None):
    """A float ``(C, H, W)`` image in [0, 1] as the 8-bit PIL image (``L`` or ``RGB``) it was read from."""
    channels = image.shape[0]
    if channels not in (1, 3):
        raise ValueError(f"transform {name or NAME!r} needs images with 1 or 3 channels (PIL's L or RGB), got {channels}")
    pixels = image.mul(255).round().clamp(0, 255).to(torch.uint8)
    if channels == 1:
        return Image.fromarray(pixels[0].numpy())  # uint8 (H, W): mode L
    return Image.fromarray(pixels.permute(1, 2, 0).contiguous().numpy())  # uint8 (H, W, 3): mode RGB
