"""A Kolmogorov-Arnold network (or its MLP baseline) under LEMUR's model contract.

Generated ``nn_code`` is this file with Cellar's imports inlined and the architecture block
replaced by the candidate's, so the code that is stored is the code that was trained.

The network is ``CONV_LAYERS`` (image input only), a flatten, then ``DENSE_LAYERS``. Each layer
is ``(basis, kwargs, width)``: a KAN layer of that basis (``bspline``, ``rbf``, ``cheb``,
``mix``; see the layer classes) or, for ``linear``, an affine layer with SiLU after it unless it
is the output layer. The output layer's width (``None``) is the task's: ``out_shape[0]``
classes (logits) or 1 (a regression prediction). KAN layers have no activation between them:
their edge functions are the nonlinearity. Images without convolutions are flattened into the
first dense layer. Convolutions are ``CONV_KERNEL`` x ``CONV_KERNEL`` with stride
``CONV_STRIDE`` and zero padding ``CONV_PADDING``; a ``linear`` one is ``nn.Conv2d`` + SiLU.

B-spline and RBF grids cover ``GRID_RANGE``; beyond it an edge is its ``silu`` term alone.
``extend_grid(new_grid_size)`` re-grids every B-spline (grid size is a fidelity); rebuild the
optimizer (``train_setup``) afterwards.

Parameters (``K`` basis functions per edge: bspline ``g + k``, rbf ``g``, cheb ``d + 1``,
mix ``2g + k + d + 1``): a KAN layer ``in * out * (1 + K)``, plus ``3 * out`` for mix; a
linear layer ``in * out + out``; a convolution counts as a layer with
``in = channels * CONV_KERNEL**2``.

Shapes:
    input: (batch, features) or (batch, channels, H, W)
    output: (batch, out_shape[0])
"""

import torch
from torch import nn

from search_spaces.contracts.supervised import SupervisedTraining, supported_hyperparameters  # cellar: inline
from search_spaces.kan.layers.conv_kan import ConvKANLayer  # cellar: inline
from search_spaces.kan.layers.resolver import kan_layer_resolver  # cellar: inline

# cellar: architecture
ARCH = "bspline(g=5,k=3)x8|cheb(d=3)"
CONV_LAYERS = ()
DENSE_LAYERS = (
    ("bspline", {"grid_size": 5, "spline_order": 3}, 8),
    ("cheb", {"degree": 3}, None),
)
GRID_RANGE = (-1.0, 1.0)
CONV_KERNEL, CONV_STRIDE, CONV_PADDING = 3, 2, 1
# cellar: end architecture


def _grid_kwargs(basis, kwargs):
    """The layer's keyword arguments, with the grid range for bases that have a grid."""
    return dict(kwargs, grid_range=GRID_RANGE) if basis in ("bspline", "rbf", "mix") else dict(kwargs)


def dense_layer(basis, kwargs, in_features, out_features, hidden):
    if basis == "linear":
        linear = nn.Linear(in_features, out_features)
        return nn.Sequential(linear, nn.SiLU()) if hidden else linear
    return kan_layer_resolver(basis, in_features, out_features, **_grid_kwargs(basis, kwargs))


def conv_layer(basis, kwargs, in_channels, out_channels):
    geometry = {"kernel_size": CONV_KERNEL, "stride": CONV_STRIDE, "padding": CONV_PADDING}
    if basis == "linear":
        return nn.Sequential(nn.Conv2d(in_channels, out_channels, **geometry), nn.SiLU())
    return ConvKANLayer(in_channels, out_channels, basis, **geometry, **_grid_kwargs(basis, kwargs))


class Net(SupervisedTraining, nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.device = device
        sample_shape = tuple(in_shape[1:])  # LEMUR's in_shape is (1, *sample_shape)
        if CONV_LAYERS and len(sample_shape) != 3:
            raise ValueError(
                f"{ARCH!r} starts with convolutions, which need image input (1, C, H, W); got in_shape "
                f"{tuple(in_shape)}. Use an architecture without conv: layers for this dataset."
            )
        layers = []
        if len(sample_shape) == 3:
            channels, height, width = sample_shape
            for basis, kwargs, out_channels in CONV_LAYERS:
                layers.append(conv_layer(basis, kwargs, channels, out_channels))
                height = (height + 2 * CONV_PADDING - CONV_KERNEL) // CONV_STRIDE + 1
                width = (width + 2 * CONV_PADDING - CONV_KERNEL) // CONV_STRIDE + 1
                channels = out_channels
            features = channels * height * width
        else:
            features = 1
            for size in sample_shape:
                features *= size
        layers.append(nn.Flatten(1))
        for i, (basis, kwargs, width) in enumerate(DENSE_LAYERS):
            hidden = i < len(DENSE_LAYERS) - 1
            out_features = width if hidden else out_shape[0]
            layers.append(dense_layer(basis, kwargs, features, out_features, hidden))
            features = out_features
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x)

    def extend_grid(self, new_grid_size):
        """Re-grid every B-spline to ``new_grid_size`` intervals, keeping each edge function on
        the grid range; call ``train_setup`` again, as the spline weights are new parameters."""
        for layer in self.layers:
            if hasattr(layer, "extend_grid"):
                layer.extend_grid(new_grid_size)
