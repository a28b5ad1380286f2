"""Choosing the device and putting the data where training reads it fastest."""

from __future__ import annotations

import dataclasses

import torch

from dpcluster.data.base import DataBundle, TensorSet
from dpcluster.errors import UserError


def resolve_device(name: str) -> torch.device:
    """"auto" is the first CUDA GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device: {name!r} is not a device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device: {name} asked for, but this machine has no CUDA GPU")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"--device: {name} asked for, but only {torch.cuda.device_count()} GPU(s) are visible")
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"--device: {name!r} is not supported (use auto, cpu, cuda or cuda:N)")
    return device


def fits_on(device: torch.device, nbytes: int) -> bool:
    """Whether a training set of ``nbytes`` can live on ``device`` with room left for training."""
    if device.type != "cuda":
        return True
    free, _total = torch.cuda.mem_get_info(device)
    return nbytes < free // 4


def place_data(data: DataBundle, device: torch.device, placement: str) -> DataBundle:
    """Move tensor sets onto the training device (placement "auto" only when they fit)."""
    if placement == "loader":
        return data
    moved = {}
    for split in ("train", "test"):
        part = getattr(data, split)
        if isinstance(part, TensorSet) and (placement == "device" or fits_on(device, part.nbytes())):
            moved[split] = part.to(device)
    return dataclasses.replace(data, **moved) if moved else data
