"""Data-parallel training across processes (DDP): one process per GPU (or CPU process with gloo), started by
torchrun or by Slurm through submitit; only rank 0 writes results.

Each global batch (the spec's batch size) is split across the ranks and DDP averages the gradients, so a
distributed run takes the same steps as a single process would on the same data order.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from dpcluster.models.swap import swapped_modules


@dataclass(frozen=True)
class Distributed:
    rank: int
    world_size: int
    # This process's index on its node (torchrun's and submitit's LOCAL_RANK): which of the node's GPUs it uses.
    local_rank: int = 0

    def device_for(self, device: torch.device) -> torch.device:
        return rank_device(device, self.local_rank)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, index: torch.Tensor) -> torch.Tensor:
        """This rank's part of a global batch."""
        return index[self.rank::self.world_size]


def world_size_of(distributed: Distributed | None) -> int:
    """How many processes a training runs on (1 without a process group)."""
    return 1 if distributed is None else distributed.world_size


def launched_world_size() -> int:
    """How many processes the job this process belongs to was started on (torchrun's WORLD_SIZE, Slurm's
    SLURM_NTASKS), before any process group is joined."""
    for name in ("WORLD_SIZE", "SLURM_NTASKS"):
        if os.environ.get(name, "").isdigit():
            return max(int(os.environ[name]), 1)
    return 1


def synced_batchnorm(model: torch.nn.Module, distributed: Distributed | None,
                     device: torch.device) -> contextlib.AbstractContextManager:
    """Within it, the model's BatchNorm layers are torch's SyncBatchNorm when training is data-parallel on CUDA:
    every rank normalises with the whole global batch's statistics, as one process training on that batch would,
    so a data-parallel training is the same procedure as a single-process one. The layers share their parameters
    and buffers with the originals, which are put back afterwards (the state dict is unchanged throughout). gloo
    has no SyncBatchNorm: on the CPU each rank keeps its own statistics, and trainings compared with each other
    must then run on the same number of processes (the ``world_size`` the rows record)."""
    if distributed is None or device.type != "cuda":
        return contextlib.nullcontext()

    def synced(module: torch.nn.Module) -> torch.nn.Module | None:
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and not isinstance(module,
                                                                                     torch.nn.SyncBatchNorm):
            return torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
        return None

    return swapped_modules(model, synced)


def rank_device(device: torch.device, local_rank: int) -> torch.device:
    """The device a rank trains on: its own GPU (``cuda:local_rank``) when ``device`` is CUDA without an index;
    otherwise ``device`` as given."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", local_rank)
    return device


def from_environment(device: torch.device) -> Distributed | None:
    """Join the process group described by the environment (torchrun's, or Slurm's via submitit), if any."""
    if "WORLD_SIZE" not in os.environ and "SLURM_NTASKS" in os.environ and int(os.environ["SLURM_NTASKS"]) > 1:
        import submitit

        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        # Before NCCL starts: every rank on its own GPU, not all of them on GPU 0.
        torch.cuda.set_device(rank_device(device, local_rank))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size(), local_rank)


def leave(distributed: Distributed | None, wait: bool = True) -> None:
    """Leave the process group, with ``wait`` once every rank is here: a process that exits while another
    rank's collective threads still talk to it can abort the other (gloo: "terminate called without an active
    exception"). Without ``wait`` (after a failure, when the other ranks may never arrive) it only tears down."""
    if distributed is not None and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()
