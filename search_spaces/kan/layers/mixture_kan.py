import torch
from torch import nn

from search_spaces.kan.layers.bspline_kan import bspline_basis, regrid_splines, uniform_knots  # cellar: inline
from search_spaces.kan.layers.chebyshev_kan import chebyshev_basis  # cellar: inline
from search_spaces.kan.layers.kan_layer import KANLayer  # cellar: inline
from search_spaces.kan.layers.rbf_kan import gaussian_rbf_basis  # cellar: inline


class MixtureKANLayer(KANLayer):
    """KAN layer whose output nodes each learn a softmax-weighted mixture of three bases (S-KAN style).

    The features are the B-spline (``grid_size``, ``spline_order``), Gaussian RBF (``grid_size``
    centres) and Chebyshev (``degree``) expansions side by side; output node ``j`` scales the
    coefficients of basis ``b`` by ``softmax(mixture_logits[j])[b]``, so one matmul still does
    the whole layer. The logits start at zero (an even mixture). S-KAN (Yang et al. 2024) also
    selects per node; its later pruning of unselected bases is not done here.

    Parameters: ``out * in * (1 + K) + 3 * out`` with
    ``K = (grid_size + spline_order) + grid_size + (degree + 1)``.

    Shapes:
        input: (*, in_features)
        output: (*, out_features)
    """

    BASES = ("bspline", "rbf", "cheb")

    def __init__(
        self,
        in_features: int,
        out_features: int,
        grid_size: int = 5,
        spline_order: int = 3,
        degree: int = 3,
        grid_range: tuple[float, float] = (-1.0, 1.0),
        init_scale: float = 0.1,
    ) -> None:
        if grid_size < 2 or spline_order < 1 or degree < 1:
            raise ValueError(
                f"need grid_size >= 2, spline_order >= 1, degree >= 1; got {grid_size}, {spline_order}, {degree}"
            )
        super().__init__(in_features, out_features, 2 * grid_size + spline_order + degree + 1, init_scale)
        self.grid_size = grid_size
        self.spline_order = spline_order
        self.degree = degree
        low = torch.full((in_features,), float(grid_range[0]))
        high = torch.full((in_features,), float(grid_range[1]))
        self.register_buffer("grid", uniform_knots(low, high, grid_size, spline_order))
        self.rbf_size = grid_size  # stays when extend_grid re-grids the splines
        self.bandwidth = (float(grid_range[1]) - float(grid_range[0])) / (grid_size - 1)
        self.register_buffer("centers", torch.linspace(float(grid_range[0]), float(grid_range[1]), grid_size))
        self.mixture_logits = nn.Parameter(torch.zeros(out_features, len(self.BASES)))

    def group_sizes(self) -> tuple[int, int, int]:
        """How many features each basis contributes, in ``BASES`` order."""
        return (self.grid_size + self.spline_order, self.rbf_size, self.degree + 1)

    def mixture_weights(self) -> torch.Tensor:
        """``(out, 3)``: each output node's weights of the three bases (rows sum to one)."""
        return torch.softmax(self.mixture_logits, dim=-1)

    def basis(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [
                bspline_basis(x, self.grid, self.spline_order),
                gaussian_rbf_basis(x, self.centers, self.bandwidth),
                chebyshev_basis(x, self.degree),
            ],
            dim=-1,
        )

    def effective_weight(self) -> torch.Tensor:
        sizes = torch.tensor(self.group_sizes(), device=self.mixture_logits.device)
        scale = torch.repeat_interleave(self.mixture_weights(), sizes, dim=-1)  # (out, K)
        ones = torch.ones_like(scale[:, :1])  # the silu path is not mixed
        return self.weight * torch.cat([ones, scale], dim=-1).unsqueeze(1)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, grid_size={self.grid_size}, spline_order={self.spline_order}, "
            f"rbf_size={self.rbf_size}, degree={self.degree}"
        )

    @torch.no_grad()
    def extend_grid(self, new_grid_size: int) -> None:
        """Re-grid the B-spline part as ``BSplineKANLayer.extend_grid`` does. The RBF and
        Chebyshev parts stay as they are: RBF centres of two grids do not nest, so refitting them
        could not keep the function exactly."""
        n_spline = self.grid_size + self.spline_order
        self.grid, spline = regrid_splines(
            self.grid, self.weight[..., 1 : 1 + n_spline], self.spline_order, new_grid_size
        )
        self.weight = nn.Parameter(torch.cat([self.weight[..., :1], spline, self.weight[..., 1 + n_spline :]], dim=-1))
        self.num_basis += new_grid_size - self.grid_size
        self.grid_size = new_grid_size
