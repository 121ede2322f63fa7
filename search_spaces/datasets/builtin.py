"""Datasets that ship with scikit-learn: nothing is downloaded, ever."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._base import ArrayData, Dataset, DatasetInfo

__all__ = ["Digits"]


class Digits(Dataset):
    """scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), pixel values scaled to [0, 1]."""

    # mean and std of all pixels after scaling by 1/16, measured on the whole set
    info = DatasetInfo(
        name="digits",
        task="img-classification",
        metric="acc",
        in_shape=(1, 8, 8),
        num_classes=10,
        num_samples=1797,
        norm=((0.3053,), (0.3760,)),
        description="scikit-learn's 8x8 handwritten digits, 1 channel, 10 classes",
    )

    def load(self, data_dir: Path | None) -> ArrayData:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
        return ArrayData(x=x, y=bunch.target.astype(np.int64))
