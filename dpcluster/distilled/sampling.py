"""What the distillers draw at random, shared by them: real images of one class (the images a set starts from,
the real batches it is matched to) and freshly initialised networks (DM's random embeddings, MTT's experts)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from dpcluster.errors import UserError
from dpcluster.models import build_model
from dpcluster.specs import ModelSpec

if TYPE_CHECKING:
    from dpcluster.data.base import DataBundle


def class_counts(data: "DataBundle", train_labels: torch.Tensor, images_per_class: int, method: str) -> list[int]:
    """Training images per class, checked to be enough to start ``images_per_class`` synthetic images from."""
    counts = torch.bincount(train_labels, minlength=data.num_classes).tolist()
    too_small = [c for c in range(data.num_classes) if counts[c] < images_per_class]
    if too_small:
        raise UserError(f"{method}: classes {too_small} of {data.name} have fewer than "
                        f"images_per_class = {images_per_class} training images")
    return counts


class ClassSampler:
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


def fresh_network(model_spec: ModelSpec, data: "DataBundle", seed: int, device) -> torch.nn.Module:
    """A network of ``model_spec`` for ``data`` initialised from ``seed``, on ``device``, in train mode, frozen."""
    # Initialised on the CPU under a private RNG state: reproducible on any device, global RNG untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_model(model_spec, tuple(data.input_shape), data.num_classes)
    net = net.to(device).train()  # train mode as in the paper (BatchNorm then uses the batch's statistics)
    net.requires_grad_(False)
    return net
