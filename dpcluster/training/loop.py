"""The training loop: masked, seeded, resumable at any iteration, fast on a GPU and exact on a CPU.

On CUDA it trains under bf16 autocast with channels_last tensors and a fused optimizer; on CPU in fp32
with foreach kernels. Pruned weights stay exactly zero: their gradients are zeroed before each step (so
momentum and Adam moments never grow there) and the weights are multiplied by the mask after it (so weight
decay or any optimizer detail cannot revive them).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from dpcluster.data.augment import augment
from dpcluster.data.base import TensorSet
from dpcluster.pruning.masks import Mask
from dpcluster.pruning.model_masks import capture_state
from dpcluster.specs import TrainingSpec
from dpcluster.training.batches import epoch_batches, epoch_generator, eval_batches, steps_per_epoch
from dpcluster.training.distributed import Distributed, synced_batchnorm
from dpcluster.training.hooks import EpochEnd, EpochHook


@dataclass
class TrainResult:
    examples_seen: int
    seconds: float
    steps: int
    # The model's state after ``snapshot_step`` steps, when one was asked for.
    snapshot: dict[str, torch.Tensor] | None = None
    # The step this call resumed from (a progress file of an interrupted run of the same training), else None.
    resumed_from: int | None = None


@dataclass(frozen=True)
class Progress:
    """Where a training keeps its progress so an interrupted run resumes mid-training: ``path``, written at the
    end of an epoch (atomically) once ``every_seconds`` have passed since the last write, and ``key``, what
    identifies the training (a file with another key is ignored)."""

    path: Path
    key: str
    # Saving costs a copy of the model and optimizer: on a small network about as much as an epoch, so trainings
    # that take seconds are cheaper to redo than to save.
    every_seconds: float = 0.0

    def load(self) -> dict | None:
        if not self.path.exists():
            return None
        try:
            saved = torch.load(self.path, weights_only=True, map_location="cpu")
        except Exception:  # noqa: BLE001 - a damaged progress file only costs the work since the last round
            return None
        return saved if saved.get("key") == self.key else None

    def save(self, state: dict) -> None:
        from dpcluster.atomic import torch_save_atomic

        torch_save_atomic({**state, "key": self.key}, self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
        try:
            self.path.parent.rmdir()  # the folder goes with its last file
        except OSError:
            pass


def make_optimizer(params: list[nn.Parameter], spec: TrainingSpec, lr: float,
                   device: torch.device) -> torch.optim.Optimizer:
    # fused kernels exist for CUDA; elsewhere foreach batches the per-parameter updates.
    speed = {"fused": True} if device.type == "cuda" else {"foreach": True}
    if spec.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=spec.momentum, weight_decay=spec.weight_decay, **speed)
    if spec.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=spec.weight_decay, **speed)
    return torch.optim.AdamW(params, lr=lr, weight_decay=spec.weight_decay, **speed)


def lr_at(spec: TrainingSpec, base_lr: float, epoch: int) -> float:
    return base_lr * spec.gamma ** sum(1 for m in spec.lr_milestones if epoch >= m)


def _prepare(model: nn.Module, device: torch.device) -> None:
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)


def _to_input(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if device.type == "cuda" and x.dim() == 4 else x


class Diverged(RuntimeError):
    """A training whose loss became NaN or infinite (a learning rate too high for the network)."""


def train(model: nn.Module, data: TensorSet | Dataset, spec: TrainingSpec, *, device: torch.device, seed: int,
          mask: Mask | None = None, lr: float | None = None, start_step: int = 0,
          snapshot_step: int | None = None, stop_step: int | None = None, workers: int = 0,
          on_epoch: EpochHook | None = None,
          distributed: Distributed | None = None, progress: Progress | None = None) -> TrainResult:
    """Train ``model`` in place for ``spec.epochs`` epochs, starting at iteration ``start_step`` (and stopping at
    ``stop_step`` when given: the learning-rate schedule is still the whole training's).

    With ``distributed``, every process trains its share of each batch and DDP averages the gradients; on CUDA
    BatchNorm normalises with the whole batch's statistics (``synced_batchnorm``). With ``progress``, the model,
    optimizer and counters are saved after every epoch, and a run that finds the same training's progress
    continues from it: batches, augmentation and learning rate depend only on (seed, epoch), so the result is the
    uninterrupted run's. The file is removed when training ends."""
    _prepare(model, device)
    with synced_batchnorm(model, distributed, device):
        return _train(model, data, spec, device=device, seed=seed, mask=mask, lr=lr, start_step=start_step,
                      snapshot_step=snapshot_step, stop_step=stop_step, workers=workers, on_epoch=on_epoch,
                      distributed=distributed, progress=progress)


def _train(model: nn.Module, data: TensorSet | Dataset, spec: TrainingSpec, *, device: torch.device, seed: int,
           mask: Mask | None, lr: float | None, start_step: int, snapshot_step: int | None, stop_step: int | None,
           workers: int, on_epoch: EpochHook | None, distributed: Distributed | None,
           progress: Progress | None) -> TrainResult:
    stepped = model
    if distributed is not None:
        stepped = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index or 0] if device.type == "cuda" else None)
    base_lr = spec.lr if lr is None else lr
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, spec, base_lr, device)
    named = dict(model.named_parameters())
    masked = [named[name] for name in (mask or {})]
    mask_values = [mask[name].to(device, named[name].dtype) for name in (mask or {})]
    per_epoch = steps_per_epoch(data, spec.batch_size)
    total_steps = spec.epochs * per_epoch
    if start_step > total_steps:
        raise ValueError(f"start_step {start_step} is past the end of training ({total_steps} steps)")

    model.train()
    snapshot = capture_state(model) if snapshot_step == start_step else None
    step, examples, before = start_step, 0, 0.0
    saved = progress.load() if progress is not None else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        step, examples, before, snapshot = saved["step"], saved["examples"], saved["seconds"], saved["snapshot"]
    resumed_from = step if saved is not None else None
    first = step  # where this call starts: the start step, or the resumed one (always an epoch's end)
    started = saved_at = time.perf_counter()
    for epoch in range(first // per_epoch, spec.epochs):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(spec, base_lr, epoch)
        skip = first - epoch * per_epoch if epoch == first // per_epoch else 0
        augment_generator = epoch_generator(seed, epoch, stream=1)
        shard = distributed.shard if distributed is not None else None
        # The epoch's loss and accuracy for the hook, summed on the device (read once, at the epoch's end).
        epoch_loss = torch.zeros((), device=device, dtype=torch.float64)
        epoch_correct = torch.zeros((), device=device, dtype=torch.float64)
        epoch_seen = 0
        for x, y, batch_examples in epoch_batches(data, spec.batch_size, seed, epoch, skip, device, workers, shard):
            x = _to_input(augment(x, spec.augmentation, augment_generator), device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logits = stepped(x)
                if distributed is None:
                    loss = F.cross_entropy(logits, y)
                else:
                    # DDP averages the ranks' gradients; each rank's sum over its share, scaled by
                    # world_size / (whole batch), makes that average the whole batch's mean even when the last
                    # batch splits unevenly, and is 0 (not the NaN of an empty mean) on a rank that gets no example.
                    loss = F.cross_entropy(logits, y, reduction="sum") * (distributed.world_size / batch_examples)
            if on_epoch is not None and len(y):
                with torch.no_grad():
                    # This process's mean over its share (the DDP loss is its sum, scaled; see above).
                    mean = (loss.detach() if distributed is None
                            else loss.detach() * batch_examples / distributed.world_size / len(y))
                    epoch_loss += mean.double() * len(y)
                    # Soft labels (class probabilities) count as right where the argmaxes agree.
                    wanted = y.argmax(1) if y.dim() == 2 else y
                    epoch_correct += (logits.argmax(1) == wanted).sum()
                    epoch_seen += len(y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if masked:
                torch._foreach_mul_([p.grad for p in masked], mask_values)
            optimizer.step()
            if masked:
                with torch.no_grad():
                    torch._foreach_mul_(masked, mask_values)
            step += 1
            examples += batch_examples
            if step == snapshot_step:
                snapshot = capture_state(model)
            if step == stop_step:
                break
        if step == stop_step:  # only so far (the dense run up to a rewind point): the rest is not this call's
            break
        # Once a loss is NaN or infinite every later step is too: stop with why, rather than train on to chance.
        # Looked at once an epoch (on a GPU, looking means waiting for the device).
        if step > first and not torch.isfinite(loss.detach()).item():
            raise Diverged(f"the training loss became {float(loss.detach()):g} in epoch {epoch + 1} of {spec.epochs} "
                           f"(learning rate {lr_at(spec, base_lr, epoch):g}): lower the learning rate")
        if on_epoch is not None:
            seen = max(epoch_seen, 1)
            on_epoch(EpochEnd(epoch + 1, spec.epochs, step, lr_at(spec, base_lr, epoch), float(epoch_loss) / seen,
                              float(epoch_correct) / seen))
        now = time.perf_counter()
        if (progress is not None and epoch + 1 < spec.epochs and now - saved_at >= progress.every_seconds
                and (distributed is None or distributed.is_main)):
            progress.save({"model": capture_state(model), "optimizer": optimizer.state_dict(), "step": step,
                           "examples": examples, "snapshot": snapshot, "seconds": before + now - started})
            saved_at = now
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    if progress is not None and (distributed is None or distributed.is_main):
        progress.clear()
    return TrainResult(examples, before + time.perf_counter() - started, step - start_step, snapshot, resumed_from)


@torch.no_grad()
def evaluate(model: nn.Module, data: TensorSet | Dataset, *, device: torch.device, batch_size: int = 1024,
             workers: int = 0) -> tuple[float, float]:
    """Test accuracy and mean cross-entropy loss."""
    _prepare(model, device)
    model.eval()
    correct = torch.zeros((), device=device)
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    count = 0
    for x, y in eval_batches(data, batch_size, device, workers):
        # In fp32 whatever the training used (bf16 autocast on CUDA): a test accuracy, or an interpolation curve's
        # barrier of a fraction of a point, is then the network's, not bf16's rounding.
        logits = model(_to_input(x, device))
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
        count += y.shape[0]
    model.train()
    return float(correct) / count, float(loss_sum) / count
