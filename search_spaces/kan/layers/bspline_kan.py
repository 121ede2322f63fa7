import torch
from torch import nn

from search_spaces.kan.layers.kan_layer import KANLayer, refit_coefficients  # cellar: inline


def uniform_knots(low: torch.Tensor, high: torch.Tensor, grid_size: int, spline_order: int) -> torch.Tensor:
    """Knots of ``grid_size`` equal intervals on ``[low, high]``, ``spline_order`` more on each side.

    The extra knots make the ``grid_size + spline_order`` B-splines a partition of unity on the
    whole of ``[low, high]``.

    Shapes:
        low, high: (in,)
        output: (in, grid_size + 2 * spline_order + 1)
    """
    steps = torch.arange(-spline_order, grid_size + spline_order + 1, dtype=low.dtype, device=low.device)
    step = (high - low) / grid_size
    return low.unsqueeze(-1) + step.unsqueeze(-1) * steps


def bspline_basis(x: torch.Tensor, knots: torch.Tensor, spline_order: int) -> torch.Tensor:
    """B-splines of order ``spline_order`` (degree, as in the KAN paper) on each input's knots.

    Cox-de Boor, all basis functions at once: start from the indicator of each knot interval
    (half open, so a point is in exactly one) and raise the order one step at a time.

    Shapes:
        x: (batch, in)
        knots: (in, n_knots)
        output: (batch, in, n_knots - 1 - spline_order)
    """
    x = x.unsqueeze(-1)  # (batch, in, 1)
    bases = ((x >= knots[:, :-1]) & (x < knots[:, 1:])).to(x.dtype)
    for p in range(1, spline_order + 1):
        rising = (x - knots[:, : -(p + 1)]) / (knots[:, p:-1] - knots[:, : -(p + 1)])
        falling = (knots[:, p + 1 :] - x) / (knots[:, p + 1 :] - knots[:, 1:-p])
        bases = rising * bases[..., :-1] + falling * bases[..., 1:]
    return bases


def regrid_splines(
    knots: torch.Tensor,
    coefficients: torch.Tensor,
    spline_order: int,
    new_grid_size: int,
    samples_per_interval: int = 8,
) -> tuple[torch.Tensor, torch.Tensor]:
    """New knots of ``new_grid_size`` intervals on the same range, and coefficients that keep the splines.

    The coefficients are the least-squares fit of the old splines at evenly spaced points of each
    input's range (the KAN paper's grid extension). When the new grid refines the old one (a
    multiple of its intervals) the old spline is in the new space and the fit is exact up to
    rounding. Beyond the range the old spline's tail is not kept.

    Shapes:
        knots: (in, G + 2 * spline_order + 1)
        coefficients: (out, in, G + spline_order)
        output: (in, new_grid_size + 2 * spline_order + 1), (out, in, new_grid_size + spline_order)
    """
    if new_grid_size < 1:
        raise ValueError(f"new_grid_size must be >= 1, got {new_grid_size}")
    low, high = knots[:, spline_order], knots[:, -1 - spline_order]
    old_grid_size = knots.shape[1] - 2 * spline_order - 1
    count = samples_per_interval * (max(new_grid_size, old_grid_size) + spline_order) + 1
    t = torch.linspace(0.0, 1.0, count, dtype=knots.dtype, device=knots.device)
    samples = low + (high - low) * t.unsqueeze(-1)  # (count, in)
    new_knots = uniform_knots(low, high, new_grid_size, spline_order)
    new_coefficients = refit_coefficients(
        bspline_basis(samples, knots, spline_order), coefficients, bspline_basis(samples, new_knots, spline_order)
    )
    return new_knots, new_coefficients


class BSplineKANLayer(KANLayer):
    """KAN layer with B-spline edges (Liu et al. 2024; efficient-kan's formulation).

    ``K = grid_size + spline_order`` B-splines on a uniform grid over ``grid_range``, per input
    (the knots are a buffer of shape ``(in, grid_size + 2 * spline_order + 1)``). Outside the
    extended grid the spline part is zero and only ``silu`` remains.

    Parameters: ``out * in * (1 + grid_size + spline_order)``.

    Shapes:
        input: (*, in_features)
        output: (*, out_features)
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        grid_size: int = 5,
        spline_order: int = 3,
        grid_range: tuple[float, float] = (-1.0, 1.0),
        init_scale: float = 0.1,
    ) -> None:
        if grid_size < 1 or spline_order < 1:
            raise ValueError(f"grid_size and spline_order must be >= 1, got {grid_size} and {spline_order}")
        super().__init__(in_features, out_features, grid_size + spline_order, init_scale)
        self.grid_size = grid_size
        self.spline_order = spline_order
        low = torch.full((in_features,), float(grid_range[0]))
        high = torch.full((in_features,), float(grid_range[1]))
        self.register_buffer("grid", uniform_knots(low, high, grid_size, spline_order))

    def grid_bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(in,)`` each: where each input's spline is a partition of unity."""
        return self.grid[:, self.spline_order], self.grid[:, -1 - self.spline_order]

    def basis(self, x: torch.Tensor) -> torch.Tensor:
        return bspline_basis(x, self.grid, self.spline_order)

    @torch.no_grad()
    def extend_grid(self, new_grid_size: int) -> None:
        """Re-grid to ``new_grid_size`` intervals, keeping every edge function on the grid range
        (see ``regrid_splines``). The weight is a new ``Parameter``: build the optimizer again."""
        self.grid, coefficients = regrid_splines(self.grid, self.coefficients, self.spline_order, new_grid_size)
        self.grid_size = new_grid_size
        self.num_basis = new_grid_size + self.spline_order
        self.weight = nn.Parameter(torch.cat([self.base_weight.unsqueeze(-1), coefficients], dim=-1))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, grid_size={self.grid_size}, spline_order={self.spline_order}"
