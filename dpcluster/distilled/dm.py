"""Distribution matching (Zhao & Bilen, "Dataset Condensation with Distribution Matching", WACV 2023).

Synthetic images start as random real images of their class. Each iteration draws a freshly initialised,
untrained network and moves the synthetic images so that, class by class, the mean of their embeddings
matches the mean embedding of a batch of real images; the images are the only parameters (SGD, momentum 0.5).

Augmentation is the paper's: differentiable siamese augmentation (DSA; colour, crop, cutout, flip, scale,
rotate, one of them per call), without the flip on digits, whose meaning a mirror image changes. As in DM's
code, every class gets its own random draw, and that one draw is applied alike to the real and the synthetic
images of the class (DM seeds ``DiffAugment`` with the same seed for both), so the two embedding means are
compared under the same transform.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from dpcluster.data.augment import resolve_augmentation
from dpcluster.data.base import TensorSet
from dpcluster.data.dsa import DSA_STRATEGY, NOFLIP_STRATEGY, dsa
from dpcluster.distilled.format import DistilledSet
from dpcluster.distilled.state import IterationState
from dpcluster.errors import UserError
from dpcluster.models import build_model
from dpcluster.specs import ModelSpec

if TYPE_CHECKING:
    from dpcluster.data.base import DataBundle

Progress = Callable[[int, int, float], None]

# The augmentations distribution matching can match under (``distilled.augmentation`` after "auto").
_STRATEGIES = {"dsa": DSA_STRATEGY, "dsa_noflip": NOFLIP_STRATEGY, "none": "none"}


def augmentation_for(data: "DataBundle") -> str:
    """DM's augmentation for ``data``: DSA as in the paper, without flips where a mirror image changes the label."""
    return resolve_augmentation("auto", data)


def siamese_augment(real: torch.Tensor, syn: torch.Tensor, kind: str,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One random draw of ``kind`` ("dsa", "dsa_noflip" or "none") applied alike to every image of both batches.

    This is DM's siamese use of DSA: ``DiffAugment`` seeded with the same seed for the real and the synthetic
    batch of a class, in its batch mode (every image gets the first one's parameters). Here the two batches go
    through one ``dsa(..., shared=True)`` call, which draws the transform and its parameters once; every DSA
    transform acts on each image separately, so this equals two calls from the same generator state.
    Differentiable with respect to ``syn``.
    """
    if kind not in _STRATEGIES:
        raise ValueError(f"distribution matching augments with one of {', '.join(_STRATEGIES)}, not {kind!r}")
    if kind == "none":
        return real, syn
    both = dsa(torch.cat([real, syn]), generator, _STRATEGIES[kind], shared=True)
    return both[:real.shape[0]], both[real.shape[0]:]


def class_counts(data: "DataBundle", train_labels: torch.Tensor, images_per_class: int, method: str) -> list[int]:
    """Training images per class, checked to be enough to start ``images_per_class`` synthetic images from."""
    counts = torch.bincount(train_labels, minlength=data.num_classes).tolist()
    too_small = [c for c in range(data.num_classes) if counts[c] < images_per_class]
    if too_small:
        raise UserError(f"{method}: classes {too_small} of {data.name} have fewer than "
                        f"images_per_class = {images_per_class} training images")
    return counts


class _ClassSampler:
    """Random real images of one class, without replacement. Like ``DataBundle.train_images_of_class`` but with
    the per-class indices computed once, and in-memory images gathered on their own device (no round trip)."""

    def __init__(self, data: "DataBundle", labels: torch.Tensor, device: torch.device):
        self.data, self.device = data, device
        self.indices = [torch.nonzero(labels == c).flatten() for c in range(data.num_classes)]
        self.x = getattr(data.train, "x", None)  # a TensorSet's image tensor, else None (a Dataset)

    def draw(self, label: int, count: int, generator: torch.Generator) -> torch.Tensor:
        """The training-split indices of ``count`` random images of class ``label`` (a CPU int64 tensor)."""
        indices = self.indices[label]
        return indices[torch.randperm(len(indices), generator=generator)[:count]]

    def images(self, chosen: torch.Tensor) -> torch.Tensor:
        if isinstance(self.x, torch.Tensor):
            return self.x[chosen.to(self.x.device)].to(self.device, torch.float32)
        return torch.stack([self.data.train[int(i)][0] for i in chosen]).to(self.device, torch.float32)

    def __call__(self, label: int, count: int, generator: torch.Generator) -> torch.Tensor:
        return self.images(self.draw(label, count, generator))


def initial_indices(data: "DataBundle", images_per_class: int, seed: int) -> torch.Tensor:
    """The training-split indices of the real images a DM (or MTT) run with ``seed`` starts from, class by
    class; the same images :func:`dpcluster.distilled.evaluate.random_real_subset` gives for that seed."""
    labels = data.train_labels()
    class_counts(data, labels, images_per_class, "distribution matching")
    sampler = _ClassSampler(data, labels, torch.device("cpu"))
    generator = torch.Generator().manual_seed(seed)
    return torch.cat([sampler.draw(c, images_per_class, generator) for c in range(data.num_classes)])


def initial_subset(data: "DataBundle", distilled: DistilledSet) -> TensorSet:
    """The real images the DM set ``distilled`` was started from (before any matching), with their labels, in
    the set's order: read from the indices it records (``extra["initial_indices"]``)."""
    recorded = distilled.extra.get("initial_indices")
    if recorded is None:
        raise ValueError("this set records no initial_indices (not made by distribution matching here)")
    return real_subset(data, torch.tensor(recorded, dtype=torch.int64))


def real_subset(data: "DataBundle", indices: torch.Tensor) -> TensorSet:
    """The training images at ``indices``, with their labels, in that order."""
    sampler = _ClassSampler(data, data.train_labels(), torch.device("cpu"))
    return TensorSet(sampler.images(indices).cpu(), data.train_labels()[indices])


def _fresh_network(model_spec: ModelSpec, data: "DataBundle", seed: int, device) -> torch.nn.Module:
    # Initialised on the CPU under a private RNG state: reproducible on any device, global RNG untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_model(model_spec, tuple(data.input_shape), data.num_classes)
    net = net.to(device).train()  # train mode as in the paper (BatchNorm then uses the batch's statistics)
    net.requires_grad_(False)
    return net


def distill_dm(data: "DataBundle", model_spec: ModelSpec, images_per_class: int, iterations: int, lr: float,
               real_per_class: int, seed: int, device, progress: Progress | None = None,
               augmentation: str | None = None, state_path: Path | None = None,
               checkpoint_every: int = 100, on_checkpoint=None) -> DistilledSet:
    """Distil ``images_per_class`` images per class of ``data`` by distribution matching.

    ``augmentation`` is "dsa", "dsa_noflip" or "none"; by default DSA (:func:`augmentation_for`). The set's
    ``extra["initial_indices"]`` lists the training images it started from (see :func:`initial_subset`).
    With ``state_path``, the images, optimizer and random states are saved every ``checkpoint_every``
    iterations and a later call with the same arguments resumes from there."""
    device = torch.device(device)
    classes = data.num_classes
    train_labels = data.train_labels()
    counts = class_counts(data, train_labels, images_per_class, "distribution matching")
    data_rng = torch.Generator().manual_seed(seed)
    augment_rng = torch.Generator().manual_seed(seed + 1)
    kind = augmentation or augmentation_for(data)
    if kind not in _STRATEGIES:
        raise ValueError(f"distribution matching augments with one of {', '.join(_STRATEGIES)}, not {kind!r}")
    sample = _ClassSampler(data, train_labels, device)

    start_indices = torch.cat([sample.draw(c, images_per_class, data_rng) for c in range(classes)])
    syn = sample.images(start_indices).clone().requires_grad_(True)
    labels = torch.arange(classes).repeat_interleave(images_per_class)
    optimizer = torch.optim.SGD([syn], lr=lr, momentum=0.5)
    losses: list[torch.Tensor] = []
    fingerprint = {"data": data.name, "model": model_spec.to_dict(), "images_per_class": images_per_class,
                   "lr": lr, "real_per_class": real_per_class, "seed": seed, "augmentation": kind}
    state = IterationState(state_path, {"images": syn, "optimizer": optimizer, "data_rng": data_rng,
                                        "augment_rng": augment_rng}, fingerprint)
    start, _ = state.resume()
    described = {"initial_indices": start_indices.tolist()}

    for it in range(start, iterations):
        net = _fresh_network(model_spec, data, seed * 1_000_003 + it, device)
        reals, syns = [], []
        for c in range(classes):
            real = sample(c, min(real_per_class, counts[c]), data_rng)
            real, syn_c = siamese_augment(real, syn[c * images_per_class:(c + 1) * images_per_class], kind,
                                          augment_rng)
            reals.append(real)
            syns.append(syn_c)
        # One forward per side for all classes: identical to DM's per-class forwards for per-sample norms
        # (instance/group/layer norm, none), and DM's own variant for BatchNorm nets.
        with torch.no_grad():
            real_embed = net.embed(torch.cat(reals))
        syn_embed = net.embed(torch.cat(syns))
        real_sizes = [len(r) for r in reals]
        real_means = torch.stack([e.mean(0) for e in real_embed.split(real_sizes)])
        syn_means = syn_embed.reshape(classes, images_per_class, -1).mean(1)
        loss = ((real_means - syn_means) ** 2).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
        if progress is not None:
            progress(it + 1, iterations, float(loss.detach()))
        if (it + 1) % checkpoint_every == 0 and it + 1 < iterations:
            state.save(it + 1)
            if on_checkpoint is not None:
                on_checkpoint(it + 1, _as_set(syn.detach(), labels, data, images_per_class, kind, model_spec,
                                              **described))

    history = torch.stack(losses).cpu().tolist() if losses else []
    return _as_set(syn.detach(), labels, data, images_per_class, kind, model_spec,
                   iterations=iterations, lr=lr, real_per_class=real_per_class, seed=seed,
                   loss_first=history[0] if history else None, loss_last=history[-1] if history else None,
                   **described)


def _as_set(images: torch.Tensor, labels: torch.Tensor, data: "DataBundle", images_per_class: int,
            augmentation: str, model_spec: ModelSpec, **extra) -> DistilledSet:
    return DistilledSet(
        images=images.cpu(), labels=labels, source_dataset=data.name, images_per_class=images_per_class,
        method="dm", mean=tuple(data.mean), std=tuple(data.std), learned_lr=None, num_classes=data.num_classes,
        zca=data.zca,
        extra={"model": model_spec.to_dict(), "augmentation": augmentation, **extra})
