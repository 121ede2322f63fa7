import torch


def transform(norm):
    """Standardise dimension 1 of a batch, ``(x - mean) / std`` with ``norm = (means, stds)``: the
    channels of images ``(N, C, H, W)`` or the features of tables ``(N, F)``."""
    mean = torch.tensor(norm[0], dtype=torch.float32)
    std = torch.tensor(norm[1], dtype=torch.float32)

    def apply(x):
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return (x - mean.to(x.device).view(shape)) / std.to(x.device).view(shape)

    return apply
