"""Datasets that ship with packages (scikit-learn, PyG) or are generated from a seed: nothing is
ever downloaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._base import ArrayData, Dataset, DatasetInfo, GraphData

__all__ = [
    "BreastCancer",
    "Digits",
    "Digits32",
    "FunctionFit",
    "Iris",
    "KanBessel",
    "KanExp4d",
    "KanExpSin",
    "KanXy",
    "Karate",
    "StochasticBlockModel",
    "Wine",
]


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images.astype(np.float32) / 16.0, bunch.target.astype(np.int64)


class Digits(Dataset):
    """scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), pixel values scaled to [0, 1]."""

    # mean and std of all pixels after scaling by 1/16, measured on the whole set
    info = DatasetInfo(
        name="digits",
        task="img-classification",
        metric="acc",
        in_shape=(1, 8, 8),
        out_shape=(10,),
        num_samples=1797,
        norm=((0.3053,), (0.3760,)),
        description="scikit-learn's 8x8 handwritten digits, 1 channel, 10 classes",
    )

    def load(self, data_dir: Path | None) -> ArrayData:
        images, labels = _digits()
        return ArrayData(x=images[:, None, :, :], y=labels)


class Digits32(Dataset):
    """The digits as 3x32x32 images (bilinear upsampling, grey copied to three channels): the
    input shape of CIFAR-sized models such as NAS-Bench-201's."""

    info = DatasetInfo(
        name="digits32",
        task="img-classification",
        metric="acc",
        in_shape=(3, 32, 32),
        out_shape=(10,),
        num_samples=1797,
        norm=((0.3388,) * 3, (0.3228,) * 3),  # measured after upsampling
        description="scikit-learn's digits upsampled to 3x32x32 (CIFAR-shaped), 10 classes",
    )

    def load(self, data_dir: Path | None) -> ArrayData:
        from scipy.ndimage import zoom

        images, labels = _digits()
        large = np.clip(zoom(images, (1, 4, 4), order=1), 0.0, 1.0).astype(np.float32)
        return ArrayData(x=np.repeat(large[:, None, :, :], 3, axis=1), y=labels)


def _tabular(name: str, loader: str, features: int, classes: int, samples: int, about: str) -> type[Dataset]:
    class Tabular(Dataset):
        info = DatasetInfo(
            name=name,
            task="tab-classification",
            metric="acc",
            in_shape=(features,),
            out_shape=(classes,),
            num_samples=samples,
            norm=None,  # standardised with the training split's mean and std
            description=about,
        )

        def load(self, data_dir: Path | None) -> ArrayData:
            import sklearn.datasets

            bunch = getattr(sklearn.datasets, loader)()
            return ArrayData(x=bunch.data.astype(np.float32), y=bunch.target.astype(np.int64))

    Tabular.__name__ = Tabular.__qualname__ = "".join(part.title() for part in name.split("_"))
    return Tabular


Iris = _tabular("iris", "load_iris", 4, 3, 150, "scikit-learn's iris: 4 measurements, 3 species")
Wine = _tabular("wine", "load_wine", 13, 3, 178, "scikit-learn's wine: 13 chemical measurements, 3 cultivars")
BreastCancer = _tabular(
    "breast_cancer", "load_breast_cancer", 30, 2, 569, "scikit-learn's breast cancer (Wisconsin): 30 features, 2 classes"
)


class FunctionFit(Dataset):
    """Seeded function-fitting tasks from the KAN paper (Liu et al. 2024): inputs uniform in
    [-1, 1]^d, targets the formula's value; regression scored by RMSE. One subclass per formula."""

    samples = 1000
    seed = 0

    @staticmethod
    def formula(x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def load(self, data_dir: Path | None) -> ArrayData:
        rng = np.random.Generator(np.random.PCG64(self.seed))
        x = rng.uniform(-1.0, 1.0, size=(self.samples, self.info.in_shape[0]))
        return ArrayData(x=x.astype(np.float32), y=self.formula(x).astype(np.float32)[:, None])


def _formula(name: str, dims: int, text: str, formula: object) -> type[FunctionFit]:
    info = DatasetInfo(
        name=name,
        task="regression",
        metric="rmse",
        in_shape=(dims,),
        out_shape=(1,),
        num_samples=FunctionFit.samples,
        transform="echo",
        norm=None,
        description=f"f = {text}, {FunctionFit.samples} points uniform in [-1, 1]^{dims}, seed {FunctionFit.seed}",
    )
    title = "".join(part.title() for part in name.split("-"))
    return type(title, (FunctionFit,), {"info": info, "formula": staticmethod(formula)})


def _bessel(x: np.ndarray) -> np.ndarray:
    from scipy.special import j0

    return j0(20.0 * x[:, 0])


KanExpSin = _formula("kan-exp-sin", 2, "exp(sin(pi*x) + y^2)", lambda x: np.exp(np.sin(np.pi * x[:, 0]) + x[:, 1] ** 2))
KanXy = _formula("kan-xy", 2, "x*y", lambda x: x[:, 0] * x[:, 1])
KanExp4d = _formula(
    "kan-exp-4d",
    4,
    "exp((sin(pi*(x1^2 + x2^2)) + sin(pi*(x3^2 + x4^2))) / 2)",
    lambda x: np.exp(0.5 * (np.sin(np.pi * (x[:, 0] ** 2 + x[:, 1] ** 2)) + np.sin(np.pi * (x[:, 2] ** 2 + x[:, 3] ** 2)))),
)
KanBessel = _formula("kan-bessel", 1, "J0(20*x), the Bessel function of the first kind", _bessel)


class Karate(Dataset):
    """Zachary's karate club (34 members, 4 communities), as PyTorch Geometric bundles it."""

    info = DatasetInfo(
        name="karate",
        task="node-classification",
        metric="acc",
        in_shape=(34,),
        out_shape=(4,),
        num_samples=34,
        transform="echo",
        description="Zachary's karate club: 34 nodes (one-hot features), 156 edges, 4 classes",
    )

    def load(self, data_dir: Path | None) -> GraphData:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from torch_geometric.datasets import KarateClub

        graph = KarateClub()[0]
        return GraphData(x=graph.x.numpy(), edge_index=graph.edge_index.numpy(), y=graph.y.numpy())


class StochasticBlockModel(Dataset):
    """A seeded stochastic block model with informative features: 4 blocks of 100 nodes, edge
    probability 0.05 inside a block and 0.005 across; 16 features per node drawn around a
    block-specific mean (generated here: PyG's generator needs an older scikit-learn)."""

    blocks, block_size, p_in, p_out, features, seed = 4, 100, 0.05, 0.005, 16, 0
    info = DatasetInfo(
        name="sbm",
        task="node-classification",
        metric="acc",
        in_shape=(16,),
        out_shape=(4,),
        num_samples=400,
        transform="echo",
        description="stochastic block model: 4 blocks x 100 nodes, p_in 0.05, p_out 0.005, 16 noisy features, seed 0",
    )

    def load(self, data_dir: Path | None) -> GraphData:
        rng = np.random.Generator(np.random.PCG64(self.seed))
        n = self.blocks * self.block_size
        y = np.repeat(np.arange(self.blocks), self.block_size)
        prob = np.where(y[:, None] == y[None, :], self.p_in, self.p_out)
        upper = np.triu(rng.random((n, n)) < prob, k=1)
        src, dst = np.nonzero(upper | upper.T)
        centres = rng.normal(0.0, 1.0, size=(self.blocks, self.features))
        x = centres[y] + rng.normal(0.0, 2.0, size=(n, self.features))
        return GraphData(
            x=x.astype(np.float32), edge_index=np.stack([src, dst]).astype(np.int64), y=y.astype(np.int64)
        )
