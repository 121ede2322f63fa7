import torch

from search_spaces.kan.layers.kan_layer import KANLayer  # cellar: inline


def gaussian_rbf_basis(x: torch.Tensor, centers: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """``exp(-((x - c) / bandwidth)^2)`` for every centre ``c``.

    Shapes:
        x: (batch, in)
        centers: (K,)
        output: (batch, in, K)
    """
    return torch.exp(-(((x.unsqueeze(-1) - centers) / bandwidth) ** 2))


class RBFKANLayer(KANLayer):
    """KAN layer with Gaussian radial basis edges (FastKAN, Li 2024).

    ``K = grid_size`` Gaussians centred on an even grid over ``grid_range``, each as wide as the
    spacing of the centres (FastKAN's choice; they approximate a cubic B-spline basis). FastKAN
    also layer-normalises the input; here the input goes in unchanged, as for the other bases.

    Parameters: ``out * in * (1 + grid_size)``.

    Shapes:
        input: (*, in_features)
        output: (*, out_features)
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        grid_size: int = 8,
        grid_range: tuple[float, float] = (-1.0, 1.0),
        init_scale: float = 0.1,
    ) -> None:
        if grid_size < 2:
            raise ValueError(f"an RBF grid needs at least 2 centres, got grid_size={grid_size}")
        super().__init__(in_features, out_features, grid_size, init_scale)
        self.grid_size = grid_size
        self.bandwidth = (float(grid_range[1]) - float(grid_range[0])) / (grid_size - 1)
        self.register_buffer("centers", torch.linspace(float(grid_range[0]), float(grid_range[1]), grid_size))

    def basis(self, x: torch.Tensor) -> torch.Tensor:
        return gaussian_rbf_basis(x, self.centers, self.bandwidth)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, grid_size={self.grid_size}"
