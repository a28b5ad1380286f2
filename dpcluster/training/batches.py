"""Batches for one epoch, from on-device tensors (no DataLoader) or from a Dataset (DataLoader with workers).

Each epoch's order comes from its own seeded generator, so a run that starts part-way (rewinding to
iteration k) sees exactly the batches an uninterrupted run would have seen from k on.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from dpcluster.data.base import TensorSet


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 4 + stream)


def steps_per_epoch(data: TensorSet | Dataset, batch_size: int) -> int:
    return math.ceil(len(data) / batch_size)


def epoch_batches(data: TensorSet | Dataset, batch_size: int, seed: int, epoch: int, skip: int,
                  device: torch.device, workers: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The batches of ``epoch`` after the first ``skip`` ones, on ``device``."""
    order = torch.randperm(len(data), generator=epoch_generator(seed, epoch))[skip * batch_size:]
    if isinstance(data, TensorSet):
        order = order.to(data.x.device)
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            yield data.x.index_select(0, index), data.y.index_select(0, index)
        return
    loader = DataLoader(data, batch_size=batch_size, sampler=order.tolist(), num_workers=workers,
                        pin_memory=device.type == "cuda", drop_last=False)
    for x, y in loader:
        yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def eval_batches(data: TensorSet | Dataset, batch_size: int, device: torch.device,
                 workers: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    if isinstance(data, TensorSet):
        for start in range(0, len(data), batch_size):
            yield data.x[start:start + batch_size], data.y[start:start + batch_size]
        return
    for x, y in DataLoader(data, batch_size=batch_size, num_workers=workers, pin_memory=device.type == "cuda"):
        yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)
