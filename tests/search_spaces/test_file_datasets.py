"""Loaders of file datasets, on small files written here in the real formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import pickle

from search_spaces import DatasetFileError, DatasetUnavailableError
from search_spaces.datasets import get_dataset
from tests.search_spaces.formats import write_cifar10, write_imagenet16, write_mnist, write_ogbn_arxiv, write_planetoid, write_tu


def test_missing_files_are_named_with_where_they_belong(tmp_path: Path) -> None:
    with pytest.raises(DatasetUnavailableError, match="set CELLAR_DATA_DIR to a folder holding cifar-10-batches-py/"):
        get_dataset("cifar-10").check_available(None)
    with pytest.raises(DatasetUnavailableError, match=r"needs Cora/raw/ind\.cora\.x, .* under CELLAR_DATA_DIR"):
        get_dataset("cora").check_available(tmp_path)


def test_cifar10_pickled_batches(tmp_path: Path) -> None:
    images, labels = write_cifar10(tmp_path, per_batch=5)
    dataset = get_dataset("cifar-10")
    data = dataset.load(tmp_path)
    assert data.x.shape == (30, 3, 32, 32) and data.x.dtype == np.float32
    np.testing.assert_array_equal(np.round(data.x * 255).astype(np.uint8), images)
    np.testing.assert_array_equal(data.y, labels)
    info = dataset.describe(tmp_path)
    assert info.num_samples == 30 and info.out_shape == (10,)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (pickle.dumps([1, 2, 3]), "it holds a list"),
        (pickle.dumps({"data": [0]}), "it holds a dict with keys ['data']"),
        (b"not a pickle at all", "not a CIFAR python batch: UnpicklingError"),
        (b"", "not a CIFAR python batch: EOFError"),
    ],
)
def test_a_cifar_batch_that_is_not_one_is_a_dataset_error_naming_the_file(
    tmp_path: Path, content: bytes, fragment: str
) -> None:
    write_cifar10(tmp_path, per_batch=2)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(content)
    with pytest.raises(DatasetFileError) as raised:
        get_dataset("cifar-10").load(tmp_path)
    assert str(raised.value).startswith(f"{batch}: not a CIFAR python batch") and fragment in str(raised.value)


def test_a_planetoid_graph_that_is_not_an_adjacency_dict_names_the_file(tmp_path: Path) -> None:
    write_planetoid(tmp_path, "Cora", "cora", nodes=12, features=4, classes=3, test=3)
    graph = next(tmp_path.rglob("ind.cora.graph"))
    graph.write_bytes(pickle.dumps([[1, 2]]))
    with pytest.raises(DatasetFileError, match=r"ind\.cora\.graph: not a Planetoid adjacency dict"):
        get_dataset("cora").load(tmp_path)


def test_mnist_idx_files_plain_and_gzipped(tmp_path: Path) -> None:
    images, labels = write_mnist(tmp_path, train=12, test=4)
    data = get_dataset("mnist").load(tmp_path)
    assert data.x.shape == (16, 1, 28, 28)
    np.testing.assert_array_equal(np.round(data.x[:, 0] * 255).astype(np.uint8), images)
    np.testing.assert_array_equal(data.y, labels)
    assert get_dataset("mnist").describe(tmp_path).num_samples == 16


def test_a_corrupt_idx_file_says_so(tmp_path: Path) -> None:
    write_mnist(tmp_path, train=3, test=2)
    (tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x0d\x03junk")
    with pytest.raises(ValueError, match="not an IDX file of unsigned bytes"):
        get_dataset("mnist").load(tmp_path)


@pytest.mark.parametrize(("name", "folder"), [("cora", "Cora"), ("pubmed", "PubMed")])
def test_planetoid_files_give_back_every_nodes_features_and_label(tmp_path: Path, name: str, folder: str) -> None:
    x, y, edges = write_planetoid(tmp_path, folder, name, nodes=40, features=12, classes=3, test=10)
    dataset = get_dataset(name)
    graph = dataset.load(tmp_path)
    np.testing.assert_array_equal(graph.x, x)
    np.testing.assert_array_equal(graph.y, y)
    assert set(map(tuple, graph.edge_index.T.tolist())) == edges
    info = dataset.describe(tmp_path)
    assert (info.in_shape, info.out_shape, info.num_samples) == ((12,), (3,), 40)


def test_tu_files_give_graphs_with_one_hot_node_labels(tmp_path: Path) -> None:
    sizes, labels = write_tu(tmp_path, "MUTAG", graphs=10)
    data = get_dataset("mutag").load(tmp_path)
    assert [len(x) for x, _ in data.graphs] == sizes
    assert data.y.tolist() == labels  # -1/1 in the files, 0/1 here
    rings = [e for (_, e), label in zip(data.graphs, labels) if label == 0]
    assert all(e.shape[1] == 2 * len(x) for (x, _), e in zip([g for g, label in zip(data.graphs, labels) if label == 0], rings))
    assert data.graphs[1][0].sum(axis=0).tolist() == [sizes[1] - 1, 1]  # a star: one centre
    assert get_dataset("mutag").describe(tmp_path).in_shape == (2,)


def test_imagenet16_pickles_keep_the_first_120_classes(tmp_path: Path) -> None:
    images, labels = write_imagenet16(tmp_path, per_part=6)
    data = get_dataset("imagenet16-120").load(tmp_path)
    assert data.x.shape == (len(labels), 3, 16, 16) and 0 < len(labels) < 66
    np.testing.assert_array_equal(data.y, labels)
    np.testing.assert_allclose(data.x, images / 255.0, atol=1e-6)
    assert data.y.max() <= 119 and get_dataset("imagenet16-120").describe(tmp_path).out_shape == (120,)


def test_ogbn_arxiv_raw_files_give_an_undirected_graph(tmp_path: Path) -> None:
    edges = write_ogbn_arxiv(tmp_path, nodes=30, features=5, classes=4)
    data = get_dataset("ogbn-arxiv").load(tmp_path)
    assert data.x.shape == (30, 5) and len(data.y) == 30
    pairs = set(map(tuple, data.edge_index.T.tolist()))
    expected = {(int(a), int(b)) for a, b in edges if a != b}
    assert pairs == expected | {(b, a) for a, b in expected}
    assert get_dataset("ogbn-arxiv").describe(tmp_path).in_shape == (5,)
