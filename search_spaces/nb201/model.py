"""A NAS-Bench-201 network under LEMUR's model contract.

Generated ``nn_code`` is this file with Cellar's imports inlined and the architecture block
replaced by the candidate's, so the code that is stored is the code that was trained.

The skeleton is NAS-Bench-201's: a 3x3 conv stem with BatchNorm, three stages of
``CELLS_PER_STAGE`` cells at CHANNELS, 2*CHANNELS and 4*CHANNELS channels joined by residual
reduction blocks, BatchNorm-ReLU, global average pooling and a linear classifier. The stem takes
the dataset's channel count (the reference hard-codes 3). Inside a cell every edge keeps its
channels and stride 1, so the reference's FactorizedReduce never occurs and is left out.

Shapes:
    input: (batch, in_channels, H, W)
    output: (batch, num_classes) logits
"""

import torch
from torch import nn

from search_spaces.contracts.supervised import SupervisedTraining, supported_hyperparameters  # cellar: inline

# cellar: architecture
ARCH = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
GENOTYPE = (
    (("nor_conv_3x3", 0),),
    (("none", 0), ("nor_conv_3x3", 1)),
    (("skip_connect", 0), ("none", 1), ("skip_connect", 2)),
)
CHANNELS = 16
CELLS_PER_STAGE = 5
# cellar: end architecture


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in, c_out, kernel_size, stride, padding):
        super().__init__(
            nn.ReLU(inplace=False),  # not in place: one node feeds several edges
            nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out),
        )


class Zero(nn.Module):
    def forward(self, x):
        return x.mul(0.0)


class Identity(nn.Module):
    def forward(self, x):
        return x


# Every op takes the same argument: the channel count, kept by the op.
OPS = {
    "none": lambda c: Zero(),
    "skip_connect": lambda c: Identity(),
    "nor_conv_1x1": lambda c: ReLUConvBN(c, c, 1, 1, 0),
    "nor_conv_3x3": lambda c: ReLUConvBN(c, c, 3, 1, 1),
    "avg_pool_3x3": lambda c: nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
}


class Cell(nn.Module):
    """Node i sums op(node j) over its inputs j < i; the cell returns the last node."""

    def __init__(self, genotype, channels):
        super().__init__()
        self.inputs = [[j for _, j in node] for node in genotype]
        self.edges = nn.ModuleList(nn.ModuleList(OPS[op](channels) for op, _ in node) for node in genotype)

    def forward(self, x):
        nodes = [x]
        for inputs, edges in zip(self.inputs, self.edges):
            nodes.append(sum(edge(nodes[j]) for j, edge in zip(inputs, edges)))
        return nodes[-1]


class ResidualReduction(nn.Module):
    """NAS-Bench-201's reduction block: two ReLU-conv-BN (the first with stride 2) plus a
    2x2-avg-pooled 1x1 projection of the input."""

    def __init__(self, c_in, c_out):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, 1)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
            nn.Conv2d(c_in, c_out, kernel_size=1, stride=1, padding=0, bias=False),
        )

    def forward(self, x):
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class Net(SupervisedTraining, nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.device = device
        c = CHANNELS
        self.stem = nn.Sequential(nn.Conv2d(in_shape[1], c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
        layers = []
        for stage, width in enumerate((c, 2 * c, 4 * c)):
            if stage > 0:
                layers.append(ResidualReduction(width // 2, width))
            layers.extend(Cell(GENOTYPE, width) for _ in range(CELLS_PER_STAGE))
        self.cells = nn.Sequential(*layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(4 * c), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4 * c, out_shape[0])

    def forward(self, x):
        x = self.lastact(self.cells(self.stem(x)))
        return self.classifier(torch.flatten(self.pool(x), 1))
