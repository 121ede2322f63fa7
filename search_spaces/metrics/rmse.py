import torch


class RootMeanSquaredError:
    """Square root of the mean squared difference between predictions and targets (lower is better)."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.squared = 0.0
        self.total = 0

    def __call__(self, outputs, targets):
        diff = outputs.reshape(targets.shape).float() - targets.float()
        self.squared += float(torch.sum(diff * diff).item())
        self.total += int(targets.numel())
        return self.squared, self.total

    def result(self):
        return (self.squared / max(self.total, 1e-8)) ** 0.5


def create_metric(out_shape=None):
    return RootMeanSquaredError()
