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
from dpcluster.distilled.request import distill_augmentation
from dpcluster.distilled.sampling import ClassSampler, class_counts, fresh_network
from dpcluster.distilled.state import IterationState
from dpcluster.models.embedding import embedder
from dpcluster.specs import ModelSpec

if TYPE_CHECKING:
    from dpcluster.data.base import DataBundle
    from dpcluster.distilled.request import DistillRequest

Progress = Callable[[int, int, float], None]

# The old private name of :func:`dpcluster.distilled.sampling.fresh_network`, for callers that still use it.
_fresh_network = fresh_network

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


def initial_indices(data: "DataBundle", images_per_class: int, seed: int) -> torch.Tensor:
    """The training-split indices of the real images a DM (or MTT) run with ``seed`` starts from, class by
    class; the same images :func:`dpcluster.distilled.evaluate.random_real_subset` gives for that seed."""
    labels = data.train_labels()
    class_counts(data, labels, images_per_class, "distribution matching")
    sampler = ClassSampler(data, labels, torch.device("cpu"))
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
    sampler = ClassSampler(data, data.train_labels(), torch.device("cpu"))
    return TensorSet(sampler.images(indices).cpu(), data.train_labels()[indices])


def distill_dm(data: "DataBundle", model_spec: ModelSpec, images_per_class: int, iterations: int, lr: float,
               real_per_class: int, seed: int, device, progress: Progress | None = None,
               augmentation: str | None = None, state_path: Path | None = None,
               checkpoint_every: int = 100, on_checkpoint=None, embedding: str | None = None) -> DistilledSet:
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
    sample = ClassSampler(data, train_labels, device)

    start_indices = torch.cat([sample.draw(c, images_per_class, data_rng) for c in range(classes)])
    syn = sample.images(start_indices).clone().requires_grad_(True)
    labels = torch.arange(classes).repeat_interleave(images_per_class)
    optimizer = torch.optim.SGD([syn], lr=lr, momentum=0.5)
    losses: list[torch.Tensor] = []
    fingerprint = {"data": data.name, "model": model_spec.to_dict(), "images_per_class": images_per_class,
                   "lr": lr, "real_per_class": real_per_class, "seed": seed, "augmentation": kind,
                   **({"embedding": embedding} if embedding is not None else {})}
    state = IterationState(state_path, {"images": syn, "optimizer": optimizer, "data_rng": data_rng,
                                        "augment_rng": augment_rng}, fingerprint)
    start, _ = state.resume()
    described = {"initial_indices": start_indices.tolist()}

    for it in range(start, iterations):
        net = fresh_network(model_spec, data, seed * 1_000_003 + it, device)
        embed = embedder(net, embedding)
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
            real_embed = embed(torch.cat(reals))
        syn_embed = embed(torch.cat(syns))
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


def distill(request: "DistillRequest") -> DistilledSet:
    """The ``dm`` distiller (``distilled.source = "dm"``): :func:`distill_dm` with the request's settings, its
    final set handed to ``request.on_checkpoint`` too."""
    spec = request.spec
    distilled = distill_dm(request.data, request.model_spec, spec.images_per_class, spec.dm.iterations, spec.dm.lr,
                           spec.dm.real_per_class, spec.seed, request.device, request.progress,
                           augmentation=distill_augmentation(spec, request.data), state_path=request.state_path,
                           checkpoint_every=request.checkpoint_every, on_checkpoint=request.on_checkpoint,
                           embedding=spec.embedding)
    if request.on_checkpoint is not None:
        request.on_checkpoint(spec.dm.iterations, distilled)
    return distilled


def _as_set(images: torch.Tensor, labels: torch.Tensor, data: "DataBundle", images_per_class: int,
            augmentation: str, model_spec: ModelSpec, **extra) -> DistilledSet:
    return DistilledSet(
        images=images.cpu(), labels=labels, source_dataset=data.name, images_per_class=images_per_class,
        method="dm", mean=tuple(data.mean), std=tuple(data.std), learned_lr=None, num_classes=data.num_classes,
        zca=data.zca, zca_style=data.zca_style,
        extra={"model": model_spec.to_dict(), "augmentation": augmentation, **extra})
