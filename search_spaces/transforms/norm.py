import torch


def transform(norm):
    """Standardise each channel: ``(x - mean) / std`` with ``norm = (means, stds)``."""
    mean = torch.tensor(norm[0], dtype=torch.float32).view(-1, 1, 1)
    std = torch.tensor(norm[1], dtype=torch.float32).view(-1, 1, 1)

    def apply(x):
        return (x - mean.to(x.device)) / std.to(x.device)

    return apply
