"""Batches for one epoch, from on-device tensors (no DataLoader) or from a Dataset (DataLoader with workers).

Each epoch's order comes from its own seeded generator, so a run that starts part-way (rewinding to
iteration k) sees exactly the batches an uninterrupted run would have seen from k on.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from dpcluster.data.base import TensorSet


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 4 + stream)


def steps_per_epoch(data: TensorSet | Dataset, batch_size: int) -> int:
    return math.ceil(len(data) / batch_size)


def epoch_batches(data: TensorSet | Dataset, batch_size: int, seed: int, epoch: int, skip: int,
                  device: torch.device, workers: int = 0,
                  shard: Callable[[torch.Tensor], torch.Tensor] | None = None
                  ) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
    """The batches of ``epoch`` after the first ``skip`` ones, on ``device``, each with the size of the whole
    batch; with ``shard``, only this process's part of each batch (data-parallel training)."""
    order = torch.randperm(len(data), generator=epoch_generator(seed, epoch))[skip * batch_size:]
    whole = list(order.split(batch_size))
    batches = [shard(index) for index in whole] if shard is not None else whole
    sizes = [len(index) for index in whole]
    if isinstance(data, TensorSet):
        for index, size in zip(batches, sizes):
            index = index.to(data.x.device)
            yield data.x.index_select(0, index), data.y.index_select(0, index), size
        return
    loader = DataLoader(data, batch_sampler=[index.tolist() for index in batches], num_workers=workers,
                        pin_memory=device.type == "cuda")
    for (x, y), size in zip(loader, sizes):
        yield x.to(device, non_blocking=True), y.to(device, non_blocking=True), size


def eval_batches(data: TensorSet | Dataset, batch_size: int, device: torch.device,
                 workers: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    if isinstance(data, TensorSet):
        for start in range(0, len(data), batch_size):
            yield data.x[start:start + batch_size], data.y[start:start + batch_size]
        return
    for x, y in DataLoader(data, batch_size=batch_size, num_workers=workers, pin_memory=device.type == "cuda"):
        yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)
