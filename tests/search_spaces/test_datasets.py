"""Datasets: built-ins load without downloads; the seeded split is deterministic and disjoint."""

from __future__ import annotations

import numpy as np
import pytest

from search_spaces import UnknownChoiceError
from search_spaces.datasets import dataset_names, get_dataset, seeded_split


BUILTIN = [name for name in dataset_names() if get_dataset(name).info.source == "builtin"]


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_dataset_loads_with_its_declared_shape(name: str) -> None:
    dataset = get_dataset(name)
    data = dataset.load(None)
    info = dataset.info
    assert info.num_samples == len(data)
    if info.kind == "graphs":
        assert all(x.shape[1:] == info.in_shape for x, _ in data.graphs)
    else:
        assert data.x.dtype == np.float32 and data.x.shape[1:] == info.in_shape
    if info.task == "regression":
        assert data.y.dtype == np.float32 and data.y.shape == (len(data), *info.out_shape)
        assert np.all(np.abs(data.x) <= 1.0)
    else:
        assert data.y.dtype == np.int64 and set(np.unique(data.y)) == set(range(info.num_classes))
    if info.kind == "graph":
        assert data.edge_index.dtype == np.int64 and data.edge_index.shape[0] == 2
        edges = set(map(tuple, data.edge_index.T.tolist()))
        assert all((d, s) in edges for s, d in edges)  # undirected
    if info.task == "img-classification":
        assert 0.0 <= data.x.min() and data.x.max() <= 1.0
        mean, std = info.norm
        assert data.x.mean(axis=(0, 2, 3)) == pytest.approx(mean, abs=0.01)
        assert data.x.std(axis=(0, 2, 3)) == pytest.approx(std, abs=0.01)


def test_function_fitting_targets_follow_their_formula() -> None:
    data = get_dataset("kan-exp-sin").load(None)
    x, y = data.x.astype(np.float64), data.y[:, 0]
    np.testing.assert_allclose(y, np.exp(np.sin(np.pi * x[:, 0]) + x[:, 1] ** 2), rtol=1e-5)
    again = get_dataset("kan-exp-sin").load(None)
    np.testing.assert_array_equal(again.x, data.x)  # seeded


def test_unknown_dataset_lists_the_known_ones() -> None:
    with pytest.raises(UnknownChoiceError, match="unknown dataset 'cifar-11'; choose one of: breast_cancer, cifar-10, "):
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


@pytest.mark.parametrize("fractions", [(0.5, 0.5, 0.0), (0.6, 0.3, 0.3), (0.99, 0.005, 0.005)])
def test_bad_fractions_are_refused(fractions: tuple[float, float, float]) -> None:
    with pytest.raises(ValueError, match="must be positive and sum to 1|leave the validation part of 100 samples empty"):
        seeded_split(100, seed=0, fractions=fractions)
