import torch


class Accuracy:
    """Fraction of samples whose arg-max logit is the label."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.correct = 0
        self.total = 0

    def __call__(self, outputs, targets):
        predicted = torch.argmax(outputs.reshape(-1, outputs.shape[-1]), dim=1)
        targets = targets.reshape(-1)
        self.correct += int((predicted == targets).sum().item())
        self.total += int(targets.numel())
        return self.correct, self.total

    def result(self):
        return self.correct / max(self.total, 1e-8)


def create_metric(out_shape=None):
    return Accuracy()
