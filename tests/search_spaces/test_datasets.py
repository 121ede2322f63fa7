"""Datasets: built-ins load without downloads; the seeded split is deterministic and disjoint."""

from __future__ import annotations

import numpy as np
import pytest

from search_spaces import UnknownChoiceError
from search_spaces.datasets import dataset_names, get_dataset, seeded_split


@pytest.mark.parametrize("name", dataset_names())
def test_dataset_loads_with_its_declared_shape(name: str) -> None:
    dataset = get_dataset(name)
    data = dataset.load(None)
    info = dataset.info
    assert data.x.dtype == np.float32 and data.y.dtype == np.int64
    assert data.x.shape[1:] == info.in_shape
    assert info.num_samples in (None, len(data.y))
    assert set(np.unique(data.y)) == set(range(info.num_classes))
    assert 0.0 <= data.x.min() and data.x.max() <= 1.0
    mean, std = info.norm
    assert data.x.mean() == pytest.approx(mean[0], abs=0.01)
    assert data.x.std() == pytest.approx(std[0], abs=0.01)


def test_unknown_dataset_lists_the_known_ones() -> None:
    with pytest.raises(UnknownChoiceError, match="unknown dataset 'cifar-11'; choose one of: digits"):
        get_dataset("cifar-11")


def test_seeded_split_is_deterministic_disjoint_and_complete() -> None:
    a = seeded_split(1797, seed=7)
    b = seeded_split(1797, seed=7)
    c = seeded_split(1797, seed=8)
    assert a.digest == b.digest != c.digest
    joined = np.concatenate([a.train, a.val, a.test])
    assert sorted(joined.tolist()) == list(range(1797))
    assert [len(a.train), len(a.val), len(a.test)] == [1078, 359, 360]
    assert a.record() == {"seed": 7, "fractions": [0.6, 0.2, 0.2], "sizes": [1078, 359, 360], "sha256": a.digest}


@pytest.mark.parametrize("fractions", [(0.5, 0.5, 0.0), (0.6, 0.3, 0.3)])
def test_bad_fractions_are_refused(fractions: tuple[float, float, float]) -> None:
    with pytest.raises(ValueError, match="fractions must be positive and sum to 1"):
        seeded_split(100, seed=0, fractions=fractions)
