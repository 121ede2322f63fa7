"""Writers of small dataset files in the real formats, for the loaders' tests."""

from __future__ import annotations

import gzip
import pickle
import struct
from collections import defaultdict
from pathlib import Path

import numpy as np
import scipy.sparse as sp


def write_cifar10(root: Path, per_batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Six pickled batches as the python version of CIFAR-10 ships them; returns (images, labels)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    images, labels = [], []
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"):
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        batch_labels = [int(v) for v in rng.integers(0, 10, size=per_batch)]
        with open(folder / name, "wb") as handle:
            pickle.dump({b"batch_label": name.encode(), b"labels": batch_labels, b"data": data}, handle, protocol=2)
        images.append(data)
        labels.extend(batch_labels)
    return np.concatenate(images).reshape(-1, 3, 32, 32), np.array(labels)


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as handle:
            handle.write(payload)
    else:
        path.write_bytes(payload)


def write_mnist(root: Path, train: int, test: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    x = rng.integers(0, 256, size=(train + test, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, size=train + test).astype(np.uint8)
    write_idx(raw / "train-images-idx3-ubyte", x[:train], compress=True)
    write_idx(raw / "train-labels-idx1-ubyte", y[:train])
    write_idx(raw / "t10k-images-idx3-ubyte", x[train:])
    write_idx(raw / "t10k-labels-idx1-ubyte", y[train:], compress=True)
    return x, y


def write_planetoid(root: Path, folder: str, prefix: str, nodes: int, features: int, classes: int,
                    test: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, set[tuple[int, int]]]:
    """Planetoid's ind.<prefix>.* files for a random graph; returns (features, labels, edges).

    As in the published files: allx/ally hold the first nodes in order, tx/ty the test nodes in
    the order test.index lists them, and test.index is not sorted."""
    rng = np.random.default_rng(seed)
    x = (rng.random((nodes, features)) < 0.2).astype(np.float32)
    y = rng.integers(0, classes, size=nodes)
    onehot = np.eye(classes, dtype=np.float32)[y]
    first_test = nodes - test
    test_index = rng.permutation(np.arange(first_test, nodes))
    graph: dict[int, list[int]] = defaultdict(list)
    edges = set()
    for _ in range(nodes * 2):
        s, d = (int(v) for v in rng.integers(0, nodes, size=2))
        if s != d:
            graph[s].append(d)
            edges |= {(s, d), (d, s)}
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    parts = {
        "x": sp.csr_matrix(x[:first_test]), "allx": sp.csr_matrix(x[:first_test]),
        "tx": sp.csr_matrix(x[test_index]), "y": onehot[:first_test], "ally": onehot[:first_test],
        "ty": onehot[test_index], "graph": graph,
    }
    for name, value in parts.items():
        with open(raw / f"ind.{prefix}.{name}", "wb") as handle:
            pickle.dump(value, handle, protocol=2)
    (raw / f"ind.{prefix}.test.index").write_text("\n".join(str(i) for i in test_index) + "\n")
    return x, y, edges


def write_tu(root: Path, name: str, graphs: int, seed: int = 0) -> tuple[list[int], list[int]]:
    """A TU dataset of rings (label 0) and stars (label 1) with two node labels; returns (sizes, labels)."""
    rng = np.random.default_rng(seed)
    raw = root / name / "raw"
    raw.mkdir(parents=True)
    edges, indicator, node_labels, graph_labels, sizes = [], [], [], [], []
    first = 1
    for g in range(graphs):
        n = int(rng.integers(4, 9))
        label = g % 2
        pairs = [(i, (i + 1) % n) for i in range(n)] if label == 0 else [(0, i) for i in range(1, n)]
        for s, d in pairs:
            edges += [(first + s, first + d), (first + d, first + s)]
        indicator += [g + 1] * n
        node_labels += [int(i == 0 and label == 1) for i in range(n)]
        graph_labels.append(label * 2 - 1)  # TU files often use -1/1
        sizes.append(n)
        first += n
    (raw / f"{name}_A.txt").write_text("".join(f"{s}, {d}\n" for s, d in edges))
    (raw / f"{name}_graph_indicator.txt").write_text("".join(f"{g}\n" for g in indicator))
    (raw / f"{name}_node_labels.txt").write_text("".join(f"{v}\n" for v in node_labels))
    (raw / f"{name}_graph_labels.txt").write_text("".join(f"{v}\n" for v in graph_labels))
    return sizes, [(label + 1) // 2 for label in graph_labels]


def write_cifar100(root: Path, per_part: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-100's two pickles (train, test) with fine and coarse labels; returns (images, fine labels)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    images, labels = [], []
    for name in ("train", "test"):
        data = rng.integers(0, 256, size=(per_part, 3072), dtype=np.uint8)
        fine = [int(v) for v in rng.integers(0, 100, size=per_part)]
        with open(folder / name, "wb") as handle:
            pickle.dump({b"data": data, b"fine_labels": fine, b"coarse_labels": [f // 5 for f in fine]}, handle, protocol=2)
        images.append(data)
        labels.extend(fine)
    return np.concatenate(images).reshape(-1, 3, 32, 32), np.array(labels)


def write_imagenet16(root: Path, per_part: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Downsampled ImageNet 16x16: ten training pickles and val_data, labels 1..1000; returns what
    ImageNet16-120 keeps (images of classes 1..120, labels from 0)."""
    rng = np.random.default_rng(seed)
    folder = root / "ImageNet16"
    folder.mkdir(parents=True)
    images, labels = [], []
    for name in (*(f"train_data_batch_{i}" for i in range(1, 11)), "val_data"):
        data = rng.integers(0, 256, size=(per_part, 768), dtype=np.uint8)
        label = [int(v) for v in rng.integers(1, 241, size=per_part)]  # half of them beyond class 120
        with open(folder / name, "wb") as handle:
            pickle.dump({"data": data, "labels": label, "mean": np.zeros(768)}, handle)
        images.append(data)
        labels.extend(label)
    x, y = np.concatenate(images).reshape(-1, 3, 16, 16), np.array(labels)
    keep = y <= 120
    return x[keep], y[keep] - 1


def write_ogbn_arxiv(root: Path, nodes: int, features: int = 128, classes: int = 40, seed: int = 0) -> np.ndarray:
    """OGB's raw CSV files (gzipped) of a small arxiv-shaped graph; returns the directed edges."""
    rng = np.random.default_rng(seed)
    raw = root / "ogbn_arxiv" / "raw"
    raw.mkdir(parents=True)
    edges = rng.integers(0, nodes, size=(3 * nodes, 2))
    tables = {
        "edge.csv.gz": "\n".join(f"{a},{b}" for a, b in edges),
        "node-feat.csv.gz": "\n".join(",".join(f"{v:.6f}" for v in row) for row in rng.normal(size=(nodes, features))),
        "node-label.csv.gz": "\n".join(str(int(v)) for v in rng.integers(0, classes, size=nodes)),
    }
    for name, text in tables.items():
        with gzip.open(raw / name, "wt") as handle:
            handle.write(text + "\n")
    return edges


def write_every_file_dataset(root: Path) -> None:
    """Small files for every file dataset Cellar registers."""
    write_cifar10(root, per_batch=5)
    write_cifar100(root, per_part=15)
    write_mnist(root, train=16, test=8)
    write_imagenet16(root, per_part=4)
    write_ogbn_arxiv(root, nodes=60)
    for folder, prefix in (("Cora", "cora"), ("CiteSeer", "citeseer"), ("PubMed", "pubmed")):
        write_planetoid(root, folder, prefix, nodes=40, features=12, classes=3, test=10)
    for name in ("MUTAG", "PROTEINS", "ENZYMES", "IMDB-BINARY", "NCI1"):
        write_tu(root, name, graphs=20)
