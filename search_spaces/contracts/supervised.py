import math

import torch
from torch import nn


def supported_hyperparameters():
    """The keys of ``prm`` this model's training reads (LEMUR contract)."""
    return {"lr", "momentum", "weight_decay"}


class SupervisedTraining:
    """LEMUR's ``train_setup``/``learn`` for supervised tasks.

    Integer labels are classes (cross-entropy; label -100 is ignored, which masks nodes outside the
    training split of a graph); floating-point targets are regressed (mean squared error).
    ``prm`` keys: ``lr``, ``momentum``, ``weight_decay``; optional ``optimizer`` (sgd, adam,
    adamw; default sgd), ``nesterov`` (default true), ``scheduler`` (cosine or constant; default
    cosine over ``epoch`` epochs, as NAS-Bench-201 trains).
    """

    def train_setup(self, prm):
        self.to(self.device)
        self.criteria = (nn.CrossEntropyLoss().to(self.device),)
        lr = float(prm["lr"])
        momentum = float(prm.get("momentum", 0.9))
        weight_decay = float(prm.get("weight_decay", 0.0))
        name = str(prm.get("optimizer", "sgd"))
        if name == "sgd":
            nesterov = bool(prm.get("nesterov", True)) and momentum > 0
            self.optimizer = torch.optim.SGD(
                self.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov
            )
        elif name == "adam":
            self.optimizer = torch.optim.Adam(self.parameters(), lr=lr, weight_decay=weight_decay)
        elif name == "adamw":
            self.optimizer = torch.optim.AdamW(self.parameters(), lr=lr, weight_decay=weight_decay)
        else:
            raise ValueError(f"unknown optimizer {name!r}; choose one of: sgd, adam, adamw")
        self.scheduler = None
        if str(prm.get("scheduler", "cosine")) == "cosine":
            epochs = max(1, int(prm.get("epoch", 1)))
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=epochs)

    def learn(self, train_data):
        """One epoch over ``train_data``; returns the mean training loss (LEMUR ignores it)."""
        self.train()
        total, count = 0.0, 0
        for inputs, labels in train_data:
            inputs, labels = inputs.to(self.device), labels.to(self.device)
            self.optimizer.zero_grad()
            outputs = self(inputs)
            if labels.is_floating_point():
                loss = nn.functional.mse_loss(outputs, labels.view_as(outputs))
            else:
                loss = self.criteria[0](outputs, labels)
            loss.backward()
            self.optimizer.step()
            total += loss.item() * len(labels)
            count += len(labels)
        if self.scheduler is not None:
            self.scheduler.step()
        return total / count if count else math.nan
