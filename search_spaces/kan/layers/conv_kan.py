import torch
from torch import nn
from torch.nn import functional as F

from search_spaces.kan.layers.resolver import kan_layer_resolver  # cellar: inline


class ConvKANLayer(nn.Module):
    """Convolution whose kernel is a KAN layer (Bodner et al. 2024, "Convolutional KANs").

    Every ``kernel_size x kernel_size`` patch of all input channels is flattened into
    ``in_channels * kernel_size**2`` features and mapped by one KAN layer of the chosen basis to
    ``out_channels``: each output channel sums a learnable function of every pixel in the patch.
    (Bodner et al. give each channel pair its own kernel and add them; a single layer over the
    whole patch is the same edge set with one matmul.) Zero padding, as ``nn.Conv2d``.

    Parameters: those of ``KANLayer(in_channels * kernel_size**2, out_channels)``.

    Shapes:
        input: (batch, in_channels, H, W)
        output: (batch, out_channels, (H + 2 * padding - kernel_size) // stride + 1,
                 (W + 2 * padding - kernel_size) // stride + 1)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        basis: str = "bspline",
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 0,
        **basis_kwargs: object,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.kan = kan_layer_resolver(basis, in_channels * kernel_size * kernel_size, out_channels, **basis_kwargs)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        k, s, p = self.kernel_size, self.stride, self.padding
        return (height + 2 * p - k) // s + 1, (width + 2 * p - k) // s + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = self.output_size(x.shape[-2], x.shape[-1])
        patches = F.unfold(x, self.kernel_size, padding=self.padding, stride=self.stride)  # (batch, C*k*k, L)
        out = self.kan(patches.transpose(1, 2))  # (batch, L, out_channels)
        return out.transpose(1, 2).reshape(x.shape[0], self.out_channels, height, width)

    def extend_grid(self, new_grid_size: int) -> None:
        """Re-grid the kernel's splines (see ``BSplineKANLayer.extend_grid``); other bases have none."""
        if hasattr(self.kan, "extend_grid"):
            self.kan.extend_grid(new_grid_size)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}"
        )
