"""Datasets read from files under ``CELLAR_DATA_DIR``, in the formats and folder layouts the
usual packages download them to (torchvision, PyTorch Geometric), so an existing data folder works
as it is. Nothing is downloaded: a missing file is an error that says where it belongs.

Planetoid files are Python pickles (that is their format): put only files you trust there.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..errors import DatasetFileError, DatasetUnavailableError
from ._base import ArrayData, Dataset, DatasetInfo, GraphData, GraphSetData

__all__ = ["Cifar10", "Cifar100", "FileDataset", "ImageNet16", "Mnist", "OgbnArxiv", "Planetoid", "TUDataset"]


class FileDataset(Dataset):
    """A dataset whose files live under ``CELLAR_DATA_DIR``; ``info`` holds what is fixed, the
    shapes that depend on the files come from ``describe``."""

    #: where the files go, relative to CELLAR_DATA_DIR, for error messages
    layout: ClassVar[str]

    def required(self, root: Path) -> list[Path]:
        raise NotImplementedError

    def check_available(self, data_dir: Path | None) -> None:
        name = self.info.name
        if data_dir is None:
            raise DatasetUnavailableError(
                f"dataset {name!r} is read from files: set CELLAR_DATA_DIR to a folder holding {self.layout}"
            )
        missing = [str(path.relative_to(data_dir)) for path in self.required(data_dir) if not _exists(path)]
        if missing:
            raise DatasetUnavailableError(
                f"dataset {name!r} needs {', '.join(missing)} under CELLAR_DATA_DIR ({data_dir}); "
                f"expected layout: {self.layout}"
            )

    def describe(self, data_dir: Path | None) -> DatasetInfo:
        self.check_available(data_dir)
        assert data_dir is not None
        return _describe(type(self), data_dir, _stamp(self.required(data_dir)))

    def load(self, data_dir: Path | None) -> ArrayData | GraphData | GraphSetData:
        self.check_available(data_dir)
        assert data_dir is not None
        return self._read(data_dir)

    def _read(self, root: Path) -> ArrayData | GraphData | GraphSetData:
        raise NotImplementedError

    def _describe(self, root: Path) -> DatasetInfo:
        data = self._read(root)
        return replace(self.info, num_samples=len(data), **self._shapes(data))

    def _shapes(self, data: ArrayData | GraphData | GraphSetData) -> dict[str, tuple[int, ...]]:
        """Shapes that depend on the files (default: none; the formats fix them)."""
        return {}


def _graph_shapes(features: int, labels: np.ndarray) -> dict[str, tuple[int, ...]]:
    return {"in_shape": (features,), "out_shape": (int(labels.max()) + 1,)}


def _exists(path: Path) -> bool:
    return path.exists() or path.with_name(path.name + ".gz").exists()


def _stamp(paths: list[Path]) -> tuple[tuple[str, float], ...]:
    """File names and modification times: a changed file is described again."""
    found = [p if p.exists() else p.with_name(p.name + ".gz") for p in paths]
    return tuple((str(p), p.stat().st_mtime) for p in found)


@lru_cache(maxsize=64)
def _describe(cls: type[FileDataset], root: Path, stamp: tuple[tuple[str, float], ...]) -> DatasetInfo:
    return cls()._describe(root)


def _open(path: Path):  # noqa: ANN202 - a binary file object
    return open(path, "rb") if path.exists() else gzip.open(path.with_name(path.name + ".gz"), "rb")


def _unpickle(path: Path, what: str) -> object:
    """The object pickled in ``path``; ``what`` names the format, for the error when it is not one."""
    try:
        with _open(path) as handle:
            return pickle.load(handle, encoding="latin1")  # noqa: S301 - the formats are pickles
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, OSError) as error:
        raise DatasetFileError(f"{path}: not {what}: {type(error).__name__}: {error}") from None


# ---- CIFAR (python pickle batches) ----------------------------------------------------------------
class _Cifar(FileDataset):
    folder: ClassVar[str]
    parts: ClassVar[tuple[str, ...]]
    label_key: ClassVar[str]

    def required(self, root: Path) -> list[Path]:
        return [root / self.folder / part for part in self.parts]

    def _batches(self, root: Path) -> list[dict[str, object]]:
        batches = []
        for part in self.parts:
            path = root / self.folder / part
            raw = _unpickle(path, "a CIFAR python batch")
            keys = {k.decode() if isinstance(k, bytes) else k for k in raw} if isinstance(raw, dict) else set()
            if not {"data", self.label_key} <= keys:
                got = f"a dict with keys {sorted(map(str, keys))}" if isinstance(raw, dict) else f"a {type(raw).__name__}"
                raise DatasetFileError(
                    f"{path}: not a CIFAR python batch (a pickled dict with 'data' and '{self.label_key}'), "
                    f"it holds {got}; use the 'python version' of the dataset"
                )
            batches.append({k.decode() if isinstance(k, bytes) else k: v for k, v in raw.items()})
        return batches

    def _arrays(self, root: Path) -> tuple[np.ndarray, np.ndarray]:
        """The batches' images (uint8, shaped as ``info.in_shape``) and labels, concatenated."""
        batches = self._batches(root)
        x = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches]).reshape(-1, *self.info.in_shape)
        y = np.concatenate([np.asarray(b[self.label_key], dtype=np.int64) for b in batches])
        return x, y

    def _read(self, root: Path) -> ArrayData:
        x, y = self._arrays(root)
        return ArrayData(x=x.astype(np.float32) / 255.0, y=y)


class Cifar10(_Cifar):
    folder = "cifar-10-batches-py"
    parts = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch")
    label_key = "labels"
    layout = "cifar-10-batches-py/{data_batch_1..5,test_batch} (torchvision's CIFAR10 download, python version)"
    info = DatasetInfo(
        name="cifar-10",
        task="img-classification",
        metric="acc",
        in_shape=(3, 32, 32),
        out_shape=(10,),
        source="file",
        norm=((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
        description="CIFAR-10 from its python pickle batches (train and test pooled, split by Cellar)",
    )


class Cifar100(_Cifar):
    folder = "cifar-100-python"
    parts = ("train", "test")
    label_key = "fine_labels"
    layout = "cifar-100-python/{train,test} (torchvision's CIFAR100 download, python version)"
    info = DatasetInfo(
        name="cifar-100",
        task="img-classification",
        metric="acc",
        in_shape=(3, 32, 32),
        out_shape=(100,),
        source="file",
        norm=((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
        description="CIFAR-100 (fine labels) from its python pickles (train and test pooled)",
    )


class ImageNet16(_Cifar):
    """Downsampled ImageNet at 16x16 (Chrabaszcz et al., 2017) as NAS-Bench-201 uses it: its python
    pickle batches, keeping the first 120 classes (ImageNet16-120)."""

    folder = "ImageNet16"
    parts = (*(f"train_data_batch_{i}" for i in range(1, 11)), "val_data")
    label_key = "labels"
    classes: ClassVar[int] = 120
    layout = "ImageNet16/{train_data_batch_1..10,val_data} (the downsampled ImageNet 16x16 pickles, as NAS-Bench-201 reads them)"
    info = DatasetInfo(
        name="imagenet16-120",
        task="img-classification",
        metric="acc",
        in_shape=(3, 16, 16),
        out_shape=(120,),
        source="file",
        norm=((0.4811, 0.4575, 0.4078), (0.2471, 0.2406, 0.2563)),
        description="ImageNet16-120: downsampled ImageNet at 16x16, its first 120 classes (NAS-Bench-201's third dataset)",
    )

    def _read(self, root: Path) -> ArrayData:
        x, y = self._arrays(root)  # labels 1..1000
        keep = (y >= 1) & (y <= self.classes)
        return ArrayData(x=x[keep].astype(np.float32) / 255.0, y=y[keep] - 1)


# ---- MNIST (IDX files) ------------------------------------------------------------------------
def read_idx(path: Path) -> np.ndarray:
    """An IDX file (unsigned bytes): a 4-byte magic with the number of dimensions, the sizes as
    big-endian int32, then the data."""
    with _open(path) as handle:
        header = handle.read(4)
        if len(header) != 4 or header[0] != 0 or header[1] != 0 or header[2] != 0x08:
            raise ValueError(f"{path.name}: not an IDX file of unsigned bytes")
        dims = struct.unpack(">" + "I" * header[3], handle.read(4 * header[3]))
        data = np.frombuffer(handle.read(), dtype=np.uint8)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path.name}: header says {dims} but holds {data.size} bytes")
    return data.reshape(dims)


class Mnist(FileDataset):
    parts = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    layout = "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] (torchvision's MNIST download)"
    info = DatasetInfo(
        name="mnist",
        task="img-classification",
        metric="acc",
        in_shape=(1, 28, 28),
        out_shape=(10,),
        source="file",
        norm=((0.1307,), (0.3081,)),
        description="MNIST from its IDX files (train and test pooled, split by Cellar)",
    )

    def required(self, root: Path) -> list[Path]:
        return [root / "MNIST" / "raw" / part for part in self.parts]

    def _read(self, root: Path) -> ArrayData:
        train_x, train_y, test_x, test_y = (read_idx(p) for p in self.required(root))
        x, y = np.concatenate([train_x, test_x]), np.concatenate([train_y, test_y])
        if x.ndim != 3 or len(x) != len(y):
            raise ValueError(f"MNIST files disagree: images {x.shape}, labels {y.shape}")
        return ArrayData(x=(x.astype(np.float32) / 255.0)[:, None], y=y.astype(np.int64))

    def _shapes(self, data: ArrayData) -> dict[str, tuple[int, ...]]:  # type: ignore[override]
        return {"in_shape": tuple(data.x.shape[1:])}


# ---- Planetoid citation graphs ------------------------------------------------------------------
class Planetoid(FileDataset):
    """Cora, CiteSeer, PubMed in the Planetoid "ind.<name>.*" files (Yang et al. 2016)."""

    folder: ClassVar[str]
    prefix: ClassVar[str]
    parts = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")

    def required(self, root: Path) -> list[Path]:
        return [root / self.folder / "raw" / f"ind.{self.prefix}.{part}" for part in self.parts]

    def _read(self, root: Path) -> GraphData:
        raw = root / self.folder / "raw"
        objects = {
            part: _unpickle(raw / f"ind.{self.prefix}.{part}", "a Planetoid pickle")
            for part in self.parts
            if part != "test.index"
        }
        with _open(raw / f"ind.{self.prefix}.test.index") as handle:
            test_index = np.array([int(line) for line in handle.read().decode().split()], dtype=np.int64)

        def dense(matrix: object) -> np.ndarray:
            return np.asarray(matrix.todense() if hasattr(matrix, "todense") else matrix, dtype=np.float32)

        allx, tx = dense(objects["allx"]), dense(objects["tx"])
        ally, ty = dense(objects["ally"]), dense(objects["ty"])
        test_sorted = np.sort(test_index)
        if self.prefix == "citeseer":
            # some CiteSeer test nodes are isolated and missing from tx/ty: give them zero rows
            span = test_sorted[-1] - test_sorted[0] + 1
            full_x = np.zeros((span, tx.shape[1]), dtype=np.float32)
            full_y = np.zeros((span, ty.shape[1]), dtype=np.float32)
            full_x[test_sorted - test_sorted[0]], full_y[test_sorted - test_sorted[0]] = tx, ty
            tx, ty = full_x, full_y
        x = np.concatenate([allx, tx])
        labels = np.concatenate([ally, ty])
        # tx/ty hold the test nodes in sorted order; test.index lists where each belongs
        x[test_index], labels[test_index] = x[test_sorted], labels[test_sorted]
        graph = objects["graph"]
        if not isinstance(graph, dict):
            raise DatasetFileError(
                f"{raw / f'ind.{self.prefix}.graph'}: not a Planetoid adjacency dict (node -> neighbours), "
                f"it holds a {type(graph).__name__}"
            )
        pairs = {(int(s), int(d)) for s, targets in graph.items() for d in targets if int(s) != int(d)}
        pairs |= {(d, s) for s, d in pairs}
        pairs = {(s, d) for s, d in pairs if s < len(x) and d < len(x)}
        edge_index = np.array(sorted(pairs), dtype=np.int64).T.reshape(2, -1)
        return GraphData(x=x, edge_index=edge_index, y=labels.argmax(axis=1).astype(np.int64))

    def _shapes(self, data: GraphData) -> dict[str, tuple[int, ...]]:  # type: ignore[override]
        return _graph_shapes(data.x.shape[1], data.y)


def _planetoid(name: str, folder: str, nodes: int, features: int, classes: int) -> type[Planetoid]:
    info = DatasetInfo(
        name=name,
        task="node-classification",
        metric="acc",
        in_shape=(features,),
        out_shape=(classes,),
        num_samples=nodes,
        source="file",
        transform="echo",
        description=f"{folder} citation graph from the Planetoid files ({nodes} nodes, {classes} classes as published)",
    )
    layout = f"{folder}/raw/ind.{name}.{{x,tx,allx,y,ty,ally,graph,test.index}} (PyG's Planetoid download)"
    return type(folder, (Planetoid,), {"info": info, "folder": folder, "prefix": name, "layout": layout})


Cora = _planetoid("cora", "Cora", 2708, 1433, 7)
CiteSeer = _planetoid("citeseer", "CiteSeer", 3327, 3703, 6)
PubMed = _planetoid("pubmed", "PubMed", 19717, 500, 3)


# ---- OGB node property prediction (its raw CSV files) -----------------------------------------------
def _read_csv(path: Path, dtype: type) -> np.ndarray:
    """An OGB raw table: comma-separated numbers, one row per line, no header (gzipped as OGB ships it)."""
    try:
        with _open(path) as handle:
            return np.loadtxt(handle, delimiter=",", dtype=dtype, ndmin=2)
    except ValueError as error:
        raise DatasetFileError(f"{path}: not an OGB raw CSV table of numbers: {error}") from None


class OgbnArxiv(FileDataset):
    """ogbn-arxiv (Hu et al., 2020) from OGB's raw files: the citation graph of 169,343 arXiv CS
    papers, 128-dimensional word-embedding features, 40 subject areas. Edges are made undirected, as
    OGB's examples and NAS-Bench-Graph use the graph."""

    parts = ("edge.csv.gz", "node-feat.csv.gz", "node-label.csv.gz")
    layout = "ogbn_arxiv/raw/{edge,node-feat,node-label}.csv.gz (OGB's NodePropPredDataset download)"
    info = DatasetInfo(
        name="ogbn-arxiv",
        task="node-classification",
        metric="acc",
        in_shape=(128,),
        out_shape=(40,),
        num_samples=169_343,
        source="file",
        transform="echo",
        description="ogbn-arxiv citation graph from OGB's raw files (169,343 nodes, 40 classes; split by Cellar)",
    )

    def required(self, root: Path) -> list[Path]:
        return [root / "ogbn_arxiv" / "raw" / part.removesuffix(".gz") for part in self.parts]

    def _read(self, root: Path) -> GraphData:
        raw = root / "ogbn_arxiv" / "raw"
        edges = _read_csv(raw / "edge.csv", np.int64)
        x = _read_csv(raw / "node-feat.csv", np.float32)
        y = _read_csv(raw / "node-label.csv", np.int64)[:, 0]
        if edges.shape[1] != 2:
            raise DatasetFileError(f"{raw / 'edge.csv'}: expected two columns (source, target), got {edges.shape[1]}")
        pairs = np.concatenate([edges, edges[:, ::-1]])
        pairs = np.unique(pairs[pairs[:, 0] != pairs[:, 1]], axis=0)
        return GraphData(x=x, edge_index=np.ascontiguousarray(pairs.T), y=y)

    def _shapes(self, data: GraphData) -> dict[str, tuple[int, ...]]:  # type: ignore[override]
        return _graph_shapes(data.x.shape[1], data.y)


# ---- TU graph classification ------------------------------------------------------------------
class TUDataset(FileDataset):
    """A graph classification set in the TU format (Morris et al. 2020): ``<NAME>_A.txt`` edges
    (1-based node ids), ``_graph_indicator.txt``, ``_graph_labels.txt`` and, optionally,
    ``_node_labels.txt`` (one-hot encoded) and ``_node_attributes.txt`` as node features."""

    tu_name: ClassVar[str]

    def required(self, root: Path) -> list[Path]:
        base = root / self.tu_name / "raw" / self.tu_name
        return [Path(f"{base}_{part}.txt") for part in ("A", "graph_indicator", "graph_labels")]

    def _read(self, root: Path) -> GraphSetData:
        base = root / self.tu_name / "raw" / self.tu_name

        def table(part: str, dtype: type) -> np.ndarray | None:
            path = Path(f"{base}_{part}.txt")
            if not _exists(path):
                return None
            with _open(path) as handle:
                rows = [line.replace(",", " ").split() for line in handle.read().decode().splitlines() if line.strip()]
            return np.array(rows, dtype=dtype)

        edges = table("A", np.int64)
        indicator = table("graph_indicator", np.int64)
        graph_labels = table("graph_labels", np.int64)
        assert edges is not None and indicator is not None and graph_labels is not None
        indicator, graph_labels = indicator[:, 0] - 1, graph_labels[:, 0]
        parts = []
        node_labels = table("node_labels", np.int64)
        if node_labels is not None:
            values = node_labels[:, 0]
            codes = np.searchsorted(np.unique(values), values)
            parts.append(np.eye(codes.max() + 1, dtype=np.float32)[codes])
        attributes = table("node_attributes", np.float32)
        if attributes is not None:
            parts.append(attributes.astype(np.float32))
        features = np.concatenate(parts, axis=1) if parts else np.ones((len(indicator), 1), dtype=np.float32)
        edges = edges - 1
        graphs = []
        for g in range(int(indicator.max()) + 1):
            nodes = np.nonzero(indicator == g)[0]
            local = {int(n): i for i, n in enumerate(nodes)}
            inside = edges[np.isin(edges[:, 0], nodes)]
            edge_index = np.array([[local[int(s)], local[int(d)]] for s, d in inside], dtype=np.int64).T.reshape(2, -1)
            graphs.append((features[nodes], edge_index))
        labels = np.searchsorted(np.unique(graph_labels), graph_labels).astype(np.int64)
        return GraphSetData(graphs=graphs, y=labels)

    def _shapes(self, data: GraphSetData) -> dict[str, tuple[int, ...]]:  # type: ignore[override]
        return _graph_shapes(data.graphs[0][0].shape[1], data.y)


def _tu(name: str, tu_name: str, graphs: int, features: int, classes: int) -> type[TUDataset]:
    info = DatasetInfo(
        name=name,
        task="graph-classification",
        metric="acc",
        in_shape=(features,),
        out_shape=(classes,),
        num_samples=graphs,
        source="file",
        transform="echo",
        description=f"{tu_name} from the TU graph classification files ({graphs} graphs, {classes} classes)",
    )
    layout = f"{tu_name}/raw/{tu_name}_{{A,graph_indicator,graph_labels}}.txt (PyG's TUDataset download)"
    title = tu_name.replace("-", "").title()
    return type(title, (TUDataset,), {"info": info, "tu_name": tu_name, "layout": layout})


Mutag = _tu("mutag", "MUTAG", 188, 7, 2)
Proteins = _tu("proteins", "PROTEINS", 1113, 4, 2)
Enzymes = _tu("enzymes", "ENZYMES", 600, 21, 6)
ImdbBinary = _tu("imdb-binary", "IMDB-BINARY", 1000, 1, 2)
Nci1 = _tu("nci1", "NCI1", 4110, 37, 2)
