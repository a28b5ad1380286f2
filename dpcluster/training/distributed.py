"""Data-parallel training across processes (DDP): one process per GPU (or CPU process with gloo), started by
torchrun or by Slurm through submitit; only rank 0 writes results.

Each global batch (the spec's batch size) is split across the ranks and DDP averages the gradients, so a
distributed run takes the same steps as a single process would on the same data order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


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
