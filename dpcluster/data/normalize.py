"""What the loaders of the user's data (``tensors``, ``folder``, a factory) share: checking labels, the training
split's per-channel statistics, and normalizing with them."""

from __future__ import annotations

import torch

from dpcluster.errors import UserError

# Images per chunk when statistics are summed or images normalized: bounded extra memory for any size.
_CHUNK = 4096


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) standard deviation of the (N, C, H, W) images ``x``, summed in float64.
    A constant channel's standard deviation is given as 1, so normalizing it only centres it."""
    channels = x.shape[1]
    total = torch.zeros(channels, dtype=torch.float64)
    squares = torch.zeros(channels, dtype=torch.float64)
    for start in range(0, len(x), _CHUNK):
        chunk = x[start:start + _CHUNK].to(torch.float64)
        total += chunk.sum(dim=(0, 2, 3))
        squares += chunk.square().sum(dim=(0, 2, 3))
    count = max(1, x.shape[0] * x.shape[2] * x.shape[3])
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0).sqrt()
    std = torch.where(std > 1e-12, std, torch.ones_like(std))
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def normalize_(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """``x`` (N, C, H, W float) normalized in place: (x - mean) / std per channel."""
    shape = (1, len(mean), 1, 1)
    m = torch.tensor(mean, dtype=x.dtype).view(shape)
    s = torch.tensor(std, dtype=x.dtype).view(shape)
    for start in range(0, len(x), _CHUNK):
        x[start:start + _CHUNK].sub_(m).div_(s)
    return x


def check_labels(where: str, train: torch.Tensor, test: torch.Tensor, num_classes: int) -> None:
    """Labels of both splits in 0..num_classes-1 and every class with a training example; else one line."""
    for split, labels in (("training", train), ("test", test)):
        if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < num_classes:
            bad = labels[(labels < 0) | (labels >= num_classes)][0]
            raise UserError(f"{where}: {split} label {int(bad)} is outside 0..{num_classes - 1}")
    counts = torch.bincount(train, minlength=num_classes)
    empty = torch.nonzero(counts == 0).flatten().tolist()
    if empty:
        shown = ", ".join(map(str, empty[:10])) + (", ..." if len(empty) > 10 else "")
        raise UserError(f"{where}: class{'es' if len(empty) > 1 else ''} {shown} of 0..{num_classes - 1} "
                        f"{'have' if len(empty) > 1 else 'has'} no training example")
