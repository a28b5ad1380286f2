"""Expert trajectories for trajectory matching: networks trained on the real data, parameters saved every epoch.

As in MTT's ``buffer.py``, each expert starts from its own random initialisation and is trained with plain SGD
(no momentum, no weight decay) on the real training set; its flattened parameter vector is recorded at
initialisation and after every epoch. A trajectory is a ``(trajectory_epochs + 1, P)`` float32 CPU tensor whose
rows are ``torch.cat([p.flatten() for _, p in model.named_parameters()])``.

Trajectories are cached as ``cache_dir/experts-<key>.pt``, keyed by everything that determines them, and written
atomically so jobs sharing the cache never read a partial file. While the experts are being trained, those
already finished are kept in ``experts-<key>.partial.pt``, so an interrupted run only retrains the unfinished one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from dpcluster.atomic import torch_save_atomic
from dpcluster.distilled.fingerprint import data_fingerprint
from dpcluster.distilled.format import load_tensor_file
from dpcluster.distilled.sampling import fresh_network
from dpcluster.errors import UserError
from dpcluster.hashing import stable_hash
from dpcluster.specs import ModelSpec, TrainingSpec
from dpcluster.specs.experiment import MTTSpec
from dpcluster.training import loop

if TYPE_CHECKING:
    from dpcluster.data.base import DataBundle

# Bump when a change here changes the trajectories, so stale cache entries are not reused.
ALGORITHM_VERSION = 1

# progress(expert, experts, epoch, epochs): expert counts from 1, epoch is the number of epochs finished.
ExpertProgress = Callable[[int, int, int, int], None]


def expert_seed(seed: int, index: int) -> int:
    """The seed of expert ``index`` (from 0): its initialisation and its batch order."""
    return seed * 1_000_003 + 7_919 * (index + 1)


def flat_parameters(model: nn.Module) -> torch.Tensor:
    """All parameters of ``model`` as one float32 CPU vector, in ``named_parameters()`` order."""
    return torch.cat([p.detach().flatten() for _, p in model.named_parameters()]).to("cpu", torch.float32)


def check_no_batchnorm(model: nn.Module, model_spec: ModelSpec) -> None:
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise UserError(f"trajectory matching: model {model_spec.name!r} uses BatchNorm, whose running statistics "
                        f"the unrolled student cannot carry; use a convnet with norm = instancenorm, layernorm "
                        f"or none")


def expert_network(model_spec: ModelSpec, data: "DataBundle", seed: int, index: int, device) -> nn.Module:
    """Expert ``index``'s freshly initialised network, trainable, on ``device``."""
    net = fresh_network(model_spec, data, expert_seed(seed, index), torch.device(device))
    return net.requires_grad_(True)


def expert_training_spec(mtt: MTTSpec, augmentation: str) -> TrainingSpec:
    return TrainingSpec(optimizer="sgd", lr=mtt.expert_lr, momentum=0.0, weight_decay=0.0,
                        epochs=mtt.trajectory_epochs, batch_size=mtt.expert_batch_size, augmentation=augmentation)


def experts_cache_key(data: "DataBundle", model_spec: ModelSpec, mtt: MTTSpec, augmentation: str, seed: int) -> str:
    payload = {
        "algorithm": ALGORITHM_VERSION,
        "model": model_spec.to_dict(),
        "experts": {"experts": mtt.experts, "trajectory_epochs": mtt.trajectory_epochs,
                    "expert_lr": mtt.expert_lr, "expert_batch_size": mtt.expert_batch_size},
        "augmentation": augmentation,
        "seed": seed,
        "data": data_fingerprint(data),
    }
    return stable_hash(payload)



def _load_trajectories(path: Path, shape: tuple[int, int], at_most: int) -> list[torch.Tensor]:
    """The trajectories stored at ``path``, each checked to be ``shape``; a UserError names a broken file."""
    stored = load_tensor_file(path)
    trajectories = stored.get("trajectories") if isinstance(stored, dict) else None
    if (not isinstance(trajectories, list) or len(trajectories) > at_most
            or not all(isinstance(t, torch.Tensor) and tuple(t.shape) == shape and t.dtype == torch.float32
                       for t in trajectories)):
        raise UserError(f"{path}: not a list of at most {at_most} float32 trajectories of shape {list(shape)} "
                        f"(a broken cache entry: delete it to train the experts again)")
    return trajectories


def expert_trajectories(data: "DataBundle", model_spec: ModelSpec, mtt: MTTSpec, augmentation: str, seed: int,
                        device, cache_dir: Path | str | None,
                        progress: ExpertProgress | None = None) -> list[torch.Tensor]:
    """``mtt.experts`` trajectories of networks trained on ``data.train``, from ``cache_dir`` when there."""
    device = torch.device(device)
    first = expert_network(model_spec, data, seed, 0, "cpu")
    check_no_batchnorm(first, model_spec)
    shape = (mtt.trajectory_epochs + 1, sum(p.numel() for p in first.parameters()))
    path = partial = None
    trajectories: list[torch.Tensor] = []
    if cache_dir is not None:
        key = experts_cache_key(data, model_spec, mtt, augmentation, seed)
        path = Path(cache_dir) / f"experts-{key}.pt"
        partial = path.with_name(f"experts-{key}.partial.pt")
        if path.is_file():
            found = _load_trajectories(path, shape, mtt.experts)
            if len(found) != mtt.experts:
                raise UserError(f"{path}: holds {len(found)} trajectories, expected {mtt.experts} (a broken cache "
                                f"entry: delete it to train the experts again)")
            return found
        if partial.is_file():
            trajectories = _load_trajectories(partial, shape, mtt.experts)

    spec = expert_training_spec(mtt, augmentation)
    for index in range(len(trajectories), mtt.experts):
        net = expert_network(model_spec, data, seed, index, device)
        snapshots = [flat_parameters(net)]

        def on_epoch(end, net=net, snapshots=snapshots, index=index) -> None:
            snapshots.append(flat_parameters(net))
            if progress is not None:
                progress(index + 1, mtt.experts, end.epoch, end.epochs)

        loop.train(net, data.train, spec, device=device, seed=expert_seed(seed, index), on_epoch=on_epoch)
        trajectories.append(torch.stack(snapshots))
        if partial is not None and index + 1 < mtt.experts:
            torch_save_atomic({"version": ALGORITHM_VERSION, "trajectories": trajectories}, partial)

    if path is not None:
        torch_save_atomic({"version": ALGORITHM_VERSION, "trajectories": trajectories}, path)
        partial.unlink(missing_ok=True)
    return trajectories
