"""Model files under LEMUR's contract, as a user or an LLM would write them, for the tests."""

MLP_CODE = '''
import torch
from torch import nn


def supported_hyperparameters():
    return {"lr", "momentum", "dropout"}


class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.device = device
        features = 1
        for size in in_shape[1:]:
            features *= size
        self.body = nn.Sequential(
            nn.Flatten(), nn.Linear(features, 64), nn.ReLU(), nn.Dropout(prm.get("dropout", 0.0)),
            nn.Linear(64, out_shape[0]),
        )

    def forward(self, x):
        return self.body(x)

    def train_setup(self, prm):
        self.to(self.device)
        self.criteria = (nn.CrossEntropyLoss().to(self.device),)
        self.optimizer = torch.optim.SGD(self.parameters(), lr=prm["lr"], momentum=prm["momentum"])

    def learn(self, train_data):
        self.train()
        for inputs, labels in train_data:
            inputs, labels = inputs.to(self.device), labels.to(self.device)
            self.optimizer.zero_grad()
            outputs = self(inputs)
            if labels.is_floating_point():
                loss = nn.functional.mse_loss(outputs, labels)
            else:
                loss = self.criteria[0](outputs, labels)
            loss.backward()
            nn.utils.clip_grad_norm_(self.parameters(), 3)
            self.optimizer.step()
'''

GCN_CODE = '''
import torch
from torch import nn
from torch_geometric.nn import GCNConv, global_mean_pool


def supported_hyperparameters():
    return {"lr", "dropout"}


class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.device = device
        self.conv1 = GCNConv(in_shape[-1], 16)
        self.conv2 = GCNConv(16, 16)
        self.dropout = prm.get("dropout", 0.0)
        self.head = nn.Linear(16, out_shape[0])

    def forward(self, data):
        x = torch.relu(self.conv1(data.x, data.edge_index))
        x = nn.functional.dropout(x, self.dropout, self.training)
        x = torch.relu(self.conv2(x, data.edge_index))
        if getattr(data, "batch", None) is not None:
            x = global_mean_pool(x, data.batch)
        return self.head(x)

    def train_setup(self, prm):
        self.to(self.device)
        self.criteria = (nn.CrossEntropyLoss().to(self.device),)
        self.optimizer = torch.optim.Adam(self.parameters(), lr=prm["lr"])

    def learn(self, train_data):
        self.train()
        for data, labels in train_data:
            data, labels = data.to(self.device), labels.to(self.device)
            self.optimizer.zero_grad()
            loss = self.criteria[0](self(data), labels)
            loss.backward()
            self.optimizer.step()
'''


def code_for(kind: str) -> str:
    """The test model for a dataset kind: ``array``, ``graph`` or ``graphs``."""
    return MLP_CODE if kind == "array" else GCN_CODE
