"""A NAS-Bench-Graph network under LEMUR's model contract (PyTorch Geometric layers).

Generated ``nn_code`` is this file with Cellar's imports inlined and the architecture block
replaced by the candidate's, so the code that is stored is the code that was trained.

The input passes dropout and ``PRE_LAYERS`` linear layers (ELU between them). Computing node i
applies ``OPS[i]`` to node ``LINKS[i]`` (0: the input); an input other than the raw features goes
through batch normalisation, ReLU and dropout first. The leaves (nodes nothing reads) are
concatenated, pass a ReLU and a linear layer to ``DIM`` features (to the classes when
``POST_LAYERS`` is 0), then the post-processing linear layers (ELU and dropout between them).
The operations: GAT with 4 heads of ``DIM // 4`` concatenated, GCN, GIN over one linear layer,
ChebNet with K=2, GraphSAGE, ARMA and k-GNN (GraphConv) with PyG's defaults, a linear layer, and
the identity. Their parameter counts equal NAS-Bench-Graph's own (``para``) at the widths it
used per dataset (``service.tabular.sources``).

Shapes:
    input: data.x (num_nodes, in_shape[-1]) float, data.edge_index (2, num_edges) long
    output: (num_nodes, num_classes) logits
"""

import torch
from torch import nn
from torch_geometric.nn import ARMAConv, ChebConv, GATConv, GCNConv, GINConv, GraphConv, SAGEConv

from search_spaces.contracts.supervised import SupervisedTraining, supported_hyperparameters  # cellar: inline

# cellar: architecture
ARCH = "gcn@0|gcn@1|fc@0|skip@0"
LINKS = (0, 1, 0, 0)
OPS = ("gcn", "gcn", "fc", "skip")
DIM = 256
PRE_LAYERS = 0
POST_LAYERS = 1
DROPOUT = 0.5
# cellar: end architecture


class Linear(nn.Linear):
    """A linear layer that ignores the graph (the benchmark's ``fc``)."""

    def forward(self, x, edge_index=None):
        return super().forward(x)


class Identity(nn.Module):
    def forward(self, x, edge_index=None):
        return x


def operation(name, c_in, c_out):
    table = {
        "gat": lambda: GATConv(c_in, c_out // 4, heads=4, concat=True),
        "gcn": lambda: GCNConv(c_in, c_out),
        "gin": lambda: GINConv(nn.Linear(c_in, c_out)),
        "cheb": lambda: ChebConv(c_in, c_out, K=2),
        "sage": lambda: SAGEConv(c_in, c_out),
        "arma": lambda: ARMAConv(c_in, c_out),
        "graph": lambda: GraphConv(c_in, c_out),
        "fc": lambda: Linear(c_in, c_out),
        "skip": lambda: Identity(),
    }
    if name not in table:
        raise ValueError(f"unknown operation {name!r}; choose one of: {', '.join(table)}")
    return table[name]()


def mlp(widths, dropout):
    """Linear layers through ``widths``, ELU and dropout between them."""
    layers = []
    for i, (c_in, c_out) in enumerate(zip(widths, widths[1:])):
        if i:
            layers += [nn.ELU(), nn.Dropout(dropout)]
        layers.append(nn.Linear(c_in, c_out))
    return nn.Sequential(*layers)


class Net(SupervisedTraining, nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.device = device
        features, classes = in_shape[-1], out_shape[0]
        self.drop = nn.Dropout(DROPOUT)
        self.relu = nn.ReLU()  # a module: zero-cost proxies (naswot) read its activations
        self.pre = mlp([features] + [DIM] * PRE_LAYERS, DROPOUT)
        widths, raw = [DIM if PRE_LAYERS else features], [PRE_LAYERS == 0]
        self.ops, self.norms = nn.ModuleList(), nn.ModuleList()
        for link, name in zip(LINKS, OPS):
            self.ops.append(operation(name, widths[link], DIM))
            self.norms.append(nn.BatchNorm1d(DIM))
            widths.append(widths[link] if name == "skip" else DIM)
            raw.append(raw[link] and name == "skip")
        self.raw = raw
        read = set(LINKS)
        self.leaves = [node for node in range(1, len(LINKS) + 1) if node not in read]
        concatenated = sum(widths[node] for node in self.leaves)
        self.out = nn.Linear(concatenated, DIM if POST_LAYERS else classes)
        self.post = mlp([DIM] * POST_LAYERS + [classes], DROPOUT) if POST_LAYERS else nn.Identity()

    def forward(self, data):
        x, edge_index = data.x, data.edge_index
        states = [self.pre(self.drop(x))]
        for node, (link, op, norm) in enumerate(zip(LINKS, self.ops, self.norms), start=1):
            h = states[link]
            if not self.raw[link] and h.shape[-1] == norm.num_features:
                h = self.drop(self.relu(norm(h)))
            states.append(op(h, edge_index))
        z = self.relu(torch.cat([states[node] for node in self.leaves], dim=-1))
        z = self.out(z)
        if POST_LAYERS:
            z = self.post(self.drop(self.relu(z)))
        return z
