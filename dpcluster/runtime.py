"""Choosing the device, the CPU threads a job may use, and putting the data where training reads it fastest."""

from __future__ import annotations

import dataclasses
import os
import sys

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


def granted_cpus() -> int:
    """The CPUs this process was given: Slurm's grant (``SLURM_CPUS_PER_TASK``), a Ray task's ``num_cpus``
    (at least 1 for a fraction), else the CPUs this process may run on.

    Why: torch starts a thread per core of the node whatever the scheduler granted, so two one-CPU jobs on a
    two-core node would run four threads and slow each other down many times over."""
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "").strip()
    if slurm.isdigit() and int(slurm) > 0:
        return int(slurm)
    ray_cpus = _ray_task_cpus()
    if ray_cpus is not None:
        return max(1, int(ray_cpus))
    return len(os.sched_getaffinity(0))


def _ray_task_cpus() -> float | None:
    if "ray" not in sys.modules:
        return None
    import ray

    try:
        if not ray.is_initialized():
            return None
        return ray.get_runtime_context().get_assigned_resources().get("CPU")
    except Exception:  # noqa: BLE001 - not inside a Ray task (the driver): no grant to read
        return None


def use_granted_cpus() -> int:
    """Run torch's intra-op work on the granted CPUs only; returns their number."""
    cpus = granted_cpus()
    torch.set_num_threads(cpus)
    return cpus


def progress_seconds() -> float:
    """How often a training saves its progress (``DPCLUSTER_PROGRESS_SECONDS``, default 30): at the end of the
    first epoch that ends this long after the last save. 0 saves after every epoch."""
    text = os.environ.get("DPCLUSTER_PROGRESS_SECONDS", "").strip()
    try:
        return max(0.0, float(text)) if text else 30.0
    except ValueError:
        raise UserError(f"DPCLUSTER_PROGRESS_SECONDS: expected a number of seconds, got {text!r}") from None


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
