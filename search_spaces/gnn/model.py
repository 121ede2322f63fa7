"""A GraphNAS / Auto-GNN style message-passing network under LEMUR's model contract.

Generated ``nn_code`` is this file with Cellar's imports inlined and the architecture block
replaced by the candidate's, so the code that is stored is the code that was trained.

Each layer is conv -> activation (-> + residual) -> dropout. ``hidden`` is the conv's output
size; GAT's heads are concatenated as in the GAT paper and GraphNAS, so a GAT layer is
``hidden * heads`` wide. GIN's MLP is Linear-ReLU-Linear with eps fixed at 0 (GIN-0).
Skip modes: ``residual`` adds the layer's input, through a bias-free linear projection where the
widths differ; ``jk`` is jumping knowledge by concatenation of every layer's output.

Unlike GraphNAS, whose last conv outputs the classes, every conv here outputs hidden features
and a linear classifier follows the last conv (or the JK concatenation): that keeps every layer
searchable and makes residual and JK well defined.

Input rule: a ``torch_geometric.data.Data`` without ``batch`` is one graph and the network
classifies its nodes; a ``Batch`` (``batch`` holds each node's graph index) is pooled by the
READOUT into one vector per graph, which the classifier maps to the classes.

Shapes:
    input: data.x (num_nodes, in_shape[1]) float, data.edge_index (2, num_edges) long,
        optionally data.batch (num_nodes,) long
    output: (num_nodes, num_classes) logits without batch, (num_graphs, num_classes) with it
"""

import torch
from torch import nn
from torch_geometric.nn import GATConv, GCNConv, GINConv, GraphConv, SAGEConv
from torch_geometric.nn import global_add_pool, global_max_pool, global_mean_pool

from search_spaces.contracts.supervised import SupervisedTraining, supported_hyperparameters  # cellar: inline

# cellar: architecture
ARCH = "gcn(h=16,act=relu,drop=0.5)|gcn(h=16,act=relu,drop=0.5);skip=none;readout=mean"
LAYERS = (
    {"conv": "gcn", "hidden": 16, "act": "relu", "dropout": 0.5},
    {"conv": "gcn", "hidden": 16, "act": "relu", "dropout": 0.5},
)
SKIP = "none"
READOUT = "mean"
# cellar: end architecture


def gin_mlp(c_in, hidden):
    return nn.Sequential(nn.Linear(c_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden))


# Every conv takes the same arguments (in_channels, hidden, heads, aggr) and reads what it uses.
CONVS = {
    "gcn": lambda c_in, hidden, heads, aggr: GCNConv(c_in, hidden),
    "gat": lambda c_in, hidden, heads, aggr: GATConv(c_in, hidden, heads=heads, concat=True),
    "sage": lambda c_in, hidden, heads, aggr: SAGEConv(c_in, hidden, aggr=aggr),
    "gin": lambda c_in, hidden, heads, aggr: GINConv(gin_mlp(c_in, hidden), eps=0.0, train_eps=False),
    "graphconv": lambda c_in, hidden, heads, aggr: GraphConv(c_in, hidden, aggr=aggr),
}

ACTIVATIONS = {
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "softplus": nn.Softplus,
    "relu6": nn.ReLU6,
    "gelu": nn.GELU,
    "linear": nn.Identity,
}

READOUTS = {"mean": global_mean_pool, "add": global_add_pool, "max": global_max_pool}

SKIP_MODES = ("none", "residual", "jk")


def resolve(table, what, name):
    """``table[name]``, or an error that lists the valid names (PyG's resolver style)."""
    if name not in table:
        raise ValueError(f"unknown {what} {name!r}; choose one of: {', '.join(table)}")
    return table[name]


class GnnLayer(nn.Module):
    """conv -> activation (-> + residual of the input) -> dropout.

    Shapes:
        input: x (num_nodes, c_in), edge_index (2, num_edges)
        output: (num_nodes, self.width)
    """

    def __init__(self, c_in, spec, residual):
        super().__init__()
        heads = spec.get("heads", 1)
        self.width = spec["hidden"] * heads
        self.conv = resolve(CONVS, "conv", spec["conv"])(c_in, spec["hidden"], heads, spec.get("aggr"))
        self.act = resolve(ACTIVATIONS, "activation", spec["act"])()
        self.dropout = nn.Dropout(spec["dropout"])
        self.residual = None
        if residual:
            self.residual = nn.Identity() if c_in == self.width else nn.Linear(c_in, self.width, bias=False)

    def forward(self, x, edge_index):
        out = self.act(self.conv(x, edge_index))
        if self.residual is not None:
            out = out + self.residual(x)
        return self.dropout(out)


class Net(SupervisedTraining, nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.device = device
        resolve(dict.fromkeys(SKIP_MODES), "skip mode", SKIP)
        self.readout = resolve(READOUTS, "readout", READOUT)
        layers, width = [], in_shape[-1]
        for spec in LAYERS:
            layers.append(GnnLayer(width, spec, residual=SKIP == "residual"))
            width = layers[-1].width
        self.layers = nn.ModuleList(layers)
        features = sum(layer.width for layer in layers) if SKIP == "jk" else width
        self.classifier = nn.Linear(features, out_shape[0])

    def forward(self, data):
        x, edge_index = data.x, data.edge_index
        outputs = []
        for layer in self.layers:
            x = layer(x, edge_index)
            outputs.append(x)
        if SKIP == "jk":
            x = torch.cat(outputs, dim=-1)
        batch = getattr(data, "batch", None)
        if batch is not None:  # a Batch of graphs: one pooled vector per graph
            x = self.readout(x, batch)
        return self.classifier(x)
