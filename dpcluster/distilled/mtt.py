"""Trajectory matching (Cazenavette et al., "Dataset Distillation by Matching Training Trajectories", CVPR 2022).

Synthetic images start as random real images of their class. Each iteration picks an expert trajectory (see
:mod:`dpcluster.distilled.experts`) and a start epoch ``s``, puts a student at the expert's parameters of epoch
``s``, trains it ``syn_steps`` SGD steps on (augmented minibatches of) the synthetic images with a learnable
learning rate, and measures how far it ended from where the expert was at epoch ``s + expert_epochs``:

    loss = ||student_final - target||^2 / ||start - target||^2

The unrolled student steps are differentiated through, so the loss moves both the images and the learning
rate (each with SGD, momentum 0.5). The learned rate is kept with the set: it is the rate to train on it with.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch.func import functional_call

from dpcluster.data.augment import augment
from dpcluster.distilled.experts import check_no_batchnorm, expert_network, expert_trajectories
from dpcluster.distilled.format import DistilledSet
from dpcluster.distilled.request import distill_augmentation
from dpcluster.distilled.sampling import ClassSampler, class_counts
from dpcluster.distilled.state import IterationState
from dpcluster.errors import UserError
from dpcluster.specs import ModelSpec
from dpcluster.specs.experiment import MTTSpec

if TYPE_CHECKING:
    from dpcluster.data.base import DataBundle
    from dpcluster.distilled.request import DistillRequest

Progress = Callable[[int, int, float], None]
OnCheckpoint = Callable[[int, DistilledSet], None]

# The learned learning rate is kept at least this large (see the clamp in the loop).
MIN_SYN_LR = 1e-6


def _unflatten(flat: torch.Tensor, names: list[str], shapes: list[torch.Size]) -> dict[str, torch.Tensor]:
    """Views of the flat parameter vector, shaped and named like the model's parameters."""
    pieces = flat.split([math.prod(shape) for shape in shapes])
    return {name: piece.view(shape) for name, piece, shape in zip(names, pieces, shapes)}


def _run_config(data: "DataBundle", model_spec: ModelSpec, images_per_class: int, mtt: MTTSpec, augmentation: str,
                seed: int, trajectories: list[torch.Tensor]) -> dict[str, Any]:
    """What a saved state must agree with to be resumed (everything but the number of iterations)."""
    settings = {k: v for k, v in mtt.to_dict().items() if k != "iterations"}
    return {"data": data.name, "model": repr(model_spec.to_dict()), "images_per_class": images_per_class,
            "mtt": repr(sorted(settings.items())), "augmentation": augmentation, "seed": seed,
            "trajectories": [len(trajectories), *trajectories[0].shape]}


def start_epoch(mtt: MTTSpec, rng: torch.Generator) -> int:
    """The expert epoch a student starts from: uniform over 0 .. max_start_epoch - 1, as MTT's
    ``np.random.randint(0, args.max_start_epoch)``."""
    return int(torch.randint(mtt.max_start_epoch, (), generator=rng))


def distill_mtt(data: "DataBundle", model_spec: ModelSpec, images_per_class: int, mtt: MTTSpec, augmentation: str,
                seed: int, device, trajectories: list[torch.Tensor], progress: Progress | None = None,
                state_path: Path | str | None = None, checkpoint_every: int = 25,
                on_checkpoint: OnCheckpoint | None = None) -> DistilledSet:
    """Distil ``images_per_class`` images per class of ``data`` by matching ``trajectories``.

    ``augmentation`` (a kind of :func:`dpcluster.data.augment.augment`, e.g. "dsa") is applied to every student
    minibatch. ``progress(iteration, iterations, loss)`` is called after each iteration. Every
    ``checkpoint_every`` iterations and at the end, the state is saved to ``state_path`` (when given; an existing
    one is resumed from) and ``on_checkpoint(iteration, set)`` is called with the set as it is then.
    """
    device = torch.device(device)
    classes = data.num_classes
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    if not trajectories:
        raise UserError("trajectory matching: no expert trajectories")

    # One "meta" network: its parameters are never used, only its structure (functional_call supplies them).
    meta = expert_network(model_spec, data, seed, 0, device)
    check_no_batchnorm(meta, model_spec)
    meta.requires_grad_(False)
    names = [name for name, _ in meta.named_parameters()]
    shapes = [p.shape for _, p in meta.named_parameters()]
    num_params = sum(math.prod(shape) for shape in shapes)
    needed = mtt.max_start_epoch + mtt.expert_epochs  # epochs 0 .. max_start_epoch - 1 + expert_epochs
    for trajectory in trajectories:
        if trajectory.dim() != 2 or trajectory.shape[1] != num_params or trajectory.shape[0] < needed:
            raise UserError(f"trajectory matching: an expert trajectory has shape {list(trajectory.shape)}, but "
                            f"needs at least {needed} epochs (max_start_epoch + expert_epochs) of "
                            f"{num_params} parameters (the model's)")

    train_labels = data.train_labels()
    class_counts(data, train_labels, images_per_class, "trajectory matching")

    # Three streams: the real images the set starts from, the random choices (expert, start epoch, minibatch
    # order), and the augmentation. Kept on the CPU, so a seed gives the same run on any device.
    data_rng = torch.Generator().manual_seed(seed)
    choice_rng = torch.Generator().manual_seed(seed + 1)
    augment_rng = torch.Generator().manual_seed(seed + 2)

    sample = ClassSampler(data, train_labels, device)
    initial = torch.cat([sample(c, images_per_class, data_rng) for c in range(classes)])
    images = initial.clone().requires_grad_(True)
    labels = torch.arange(classes).repeat_interleave(images_per_class)
    labels_device = labels.to(device)
    syn_lr = torch.tensor(mtt.lr_init, dtype=torch.float32, device=device).requires_grad_(True)
    optimizer_images = torch.optim.SGD([images], lr=mtt.lr_images, momentum=0.5)
    optimizer_lr = torch.optim.SGD([syn_lr], lr=mtt.lr_lr, momentum=0.5)

    state = IterationState(state_path, {"images": images, "syn_lr": syn_lr, "optimizer_images": optimizer_images,
                                        "optimizer_lr": optimizer_lr, "choice_rng": choice_rng,
                                        "augment_rng": augment_rng},
                           _run_config(data, model_spec, images_per_class, mtt, augmentation, seed, trajectories))
    start, extra = state.resume()
    losses = list(extra.get("losses", []))
    # Iterations whose gradients grad_clip cut (images, learning rate), counted across resumes.
    clipped = dict(extra.get("clipped", {"images": 0, "lr": 0}))
    if start > mtt.iterations:
        raise UserError(f"{state_path}: already at iteration {start}, past iterations = {mtt.iterations}")

    def current_set(iteration: int) -> DistilledSet:
        return DistilledSet(
            images=images.detach().cpu(), labels=labels, source_dataset=data.name,
            images_per_class=images_per_class, method="mtt", mean=tuple(data.mean), std=tuple(data.std),
            learned_lr=float(syn_lr.detach()), num_classes=classes, zca=data.zca, zca_style=data.zca_style,
            extra={"model": model_spec.to_dict(), "mtt": mtt.to_dict(), "augmentation": augmentation,
                   "seed": seed, "experts": len(trajectories), "iterations_done": iteration, "clipped": dict(clipped),
                   "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None})

    def checkpoint(iteration: int) -> None:
        state.save(iteration, losses=losses, clipped=clipped)
        if on_checkpoint is not None:
            on_checkpoint(iteration, current_set(iteration))

    n = len(labels)
    batch_syn = n if mtt.batch_syn is None else min(mtt.batch_syn, n)
    for it in range(start, mtt.iterations):
        trajectory = trajectories[int(torch.randint(len(trajectories), (), generator=choice_rng))]
        s = start_epoch(mtt, choice_rng)
        starting = trajectory[s].to(device)
        target = trajectory[s + mtt.expert_epochs].to(device)

        # Memory: autograd keeps every unrolled step (syn_steps parameter vectors, and the activations and
        # double-backward graph of a batch_syn-image forward per step) until the backward pass, so memory grows
        # with syn_steps x batch_syn. batch_syn is the knob: fewer images per step, same number of steps.
        student = starting.clone().requires_grad_(True)
        chunks: list[torch.Tensor] = []
        for _ in range(mtt.syn_steps):
            if not chunks:  # a fresh random permutation, used up batch_syn images at a time (as MTT)
                chunks = list(torch.randperm(n, generator=choice_rng).to(device).split(batch_syn))
            index = chunks.pop()
            x = augment(images[index], augmentation, augment_rng)
            logits = functional_call(meta, _unflatten(student, names, shapes), (x,))
            ce = F.cross_entropy(logits, labels_device[index])
            (grad,) = torch.autograd.grad(ce, student, create_graph=True)
            student = student - syn_lr * grad

        loss = ((student - target) ** 2).sum() / ((starting - target) ** 2).sum()
        optimizer_images.zero_grad(set_to_none=True)
        optimizer_lr.zero_grad(set_to_none=True)
        loss.backward()
        if mtt.grad_clip is not None:
            # Opted into: unrolled second-order gradients can spike by orders of magnitude on single iterations,
            # and one such spike can wreck the images. It also holds the learning rate's steps to lr_lr, which
            # is why MTT does not clip and neither does the default; how often it cut is recorded.
            clipped["images"] += int(torch.nn.utils.clip_grad_norm_([images], mtt.grad_clip) > mtt.grad_clip)
            clipped["lr"] += int(torch.nn.utils.clip_grad_norm_([syn_lr], mtt.grad_clip) > mtt.grad_clip)
        optimizer_images.step()
        optimizer_lr.step()
        # MTT leaves the rate unconstrained; a step can push it to zero or below, where the student would stop
        # moving (or walk uphill) and the set's learned rate would be unusable for training. Keep it positive.
        with torch.no_grad():
            syn_lr.clamp_(min=MIN_SYN_LR)

        losses.append(float(loss.detach()))
        done = it + 1
        if progress is not None:
            progress(done, mtt.iterations, losses[-1])
        if done % checkpoint_every == 0 and done < mtt.iterations:
            checkpoint(done)

    checkpoint(mtt.iterations)  # also when resumed at the end: the caller's callback still sees the final set
    return current_set(mtt.iterations)


def distill(request: "DistillRequest") -> DistilledSet:
    """The ``mtt`` distiller (``distilled.source = "mtt"``): the expert trajectories (trained, or from the cache
    in ``request.work_dir``), then :func:`distill_mtt` on them with the request's settings."""
    spec = request.spec
    augmentation = distill_augmentation(spec, request.data)
    trajectories = expert_trajectories(request.data, request.model_spec, spec.mtt, augmentation, spec.seed,
                                       request.device, request.work_dir, request.expert_progress)
    return distill_mtt(request.data, request.model_spec, spec.images_per_class, spec.mtt, augmentation, spec.seed,
                       request.device, trajectories, request.progress, state_path=request.state_path,
                       checkpoint_every=request.checkpoint_every, on_checkpoint=request.on_checkpoint)
