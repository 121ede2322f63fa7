import math

import torch
from torch import nn
from torch.nn import functional as F


class KANLayer(nn.Module):
    """A Kolmogorov-Arnold layer: a learnable univariate function on every edge, summed per output.

    Edge (j, i) computes ``phi_ji(x_i) = w_ji0 * silu(x_i) + sum_k w_jik * B_k(x_i)`` and output
    ``j`` is ``sum_i phi_ji(x_i)``. Subclasses choose the basis ``B_1..B_K`` by overriding
    ``basis``; this class does the rest as in efficient-kan: expand the input once into
    ``(batch, in, 1 + K)`` features (``silu`` is feature 0) and contract them with the
    ``(out, in, 1 + K)`` weight in a single matmul.

    Unlike efficient-kan there is no separate per-edge spline scale (it is redundant with the
    coefficients) and the ``silu`` weight lives in the same tensor as the coefficients.

    Parameters: ``out * in * (1 + K)``, no bias (a constant is in the span of every basis here).

    Shapes:
        input: (*, in_features)
        output: (*, out_features)
    """

    def __init__(self, in_features: int, out_features: int, num_basis: int, init_scale: float = 0.1) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.num_basis = num_basis
        self.init_scale = init_scale
        self.weight = nn.Parameter(torch.empty(out_features, in_features, 1 + num_basis))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            bound = 1.0 / math.sqrt(self.in_features)  # nn.Linear's default for the silu path
            self.weight[..., 0].uniform_(-bound, bound)
            self.weight[..., 1:].normal_(0.0, self.init_scale * bound)

    @property
    def base_weight(self) -> torch.Tensor:
        """``(out, in)``: the weight of ``silu`` on every edge."""
        return self.weight[..., 0]

    @property
    def coefficients(self) -> torch.Tensor:
        """``(out, in, K)``: the basis coefficients of every edge."""
        return self.weight[..., 1:]

    def basis(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, in) -> (batch, in, K)``: the basis functions at every input."""
        raise NotImplementedError

    def effective_weight(self) -> torch.Tensor:
        """``(out, in, 1 + K)``: the weight the forward pass contracts with (a hook for mixtures)."""
        return self.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"{type(self).__name__} expects {self.in_features} input features, got shape {tuple(x.shape)}"
            )
        lead = x.shape[:-1]
        x = x.reshape(-1, self.in_features)
        features = torch.cat([F.silu(x).unsqueeze(-1), self.basis(x)], dim=-1)  # (batch, in, 1 + K)
        weight = self.effective_weight().reshape(self.out_features, -1)  # (out, in * (1 + K))
        return (features.reshape(x.shape[0], -1) @ weight.T).reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, num_basis={self.num_basis}"


def refit_coefficients(
    old_basis: torch.Tensor, old_coefficients: torch.Tensor, new_basis: torch.Tensor
) -> torch.Tensor:
    """New coefficients whose edge functions match the old ones on the sample points, by least squares.

    Every input ``i`` is a separate problem: ``new_basis[:, i] @ c = old_basis[:, i] @ old[:, i].T``
    for all outputs at once. Solved in float64, returned in the coefficients' dtype.

    Shapes:
        old_basis: (samples, in, K_old)
        old_coefficients: (out, in, K_old)
        new_basis: (samples, in, K_new)
        output: (out, in, K_new)
    """
    target = torch.einsum("sik,oik->iso", old_basis.double(), old_coefficients.double())  # (in, samples, out)
    design = new_basis.double().permute(1, 0, 2)  # (in, samples, K_new)
    solution = torch.linalg.lstsq(design, target).solution  # (in, K_new, out)
    return solution.permute(2, 0, 1).to(old_coefficients.dtype).contiguous()
