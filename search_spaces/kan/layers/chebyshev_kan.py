import torch

from search_spaces.kan.layers.kan_layer import KANLayer  # cellar: inline


def chebyshev_basis(x: torch.Tensor, degree: int) -> torch.Tensor:
    """Chebyshev polynomials ``T_0 .. T_degree`` of ``tanh(x)``, by the three-term recurrence.

    ``tanh`` maps any input into ``[-1, 1]``, where the polynomials are bounded (ChebyKAN).

    Shapes:
        x: (batch, in)
        output: (batch, in, degree + 1)
    """
    t = torch.tanh(x)
    polys = [torch.ones_like(t), t]
    for _ in range(2, degree + 1):
        polys.append(2 * t * polys[-1] - polys[-2])
    return torch.stack(polys[: degree + 1], dim=-1)


class ChebyshevKANLayer(KANLayer):
    """KAN layer with Chebyshev-polynomial edges (ChebyKAN, SynodicMonth 2024).

    ``K = degree + 1`` polynomials of ``tanh(x)``. ChebyKAN has no ``silu`` path; it is kept here
    so that every basis computes the same kind of edge function.

    Parameters: ``out * in * (2 + degree)``.

    Shapes:
        input: (*, in_features)
        output: (*, out_features)
    """

    def __init__(self, in_features: int, out_features: int, degree: int = 3, init_scale: float = 0.1) -> None:
        if degree < 1:
            raise ValueError(f"degree must be >= 1, got {degree}")
        super().__init__(in_features, out_features, degree + 1, init_scale)
        self.degree = degree

    def basis(self, x: torch.Tensor) -> torch.Tensor:
        return chebyshev_basis(x, self.degree)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, degree={self.degree}"
