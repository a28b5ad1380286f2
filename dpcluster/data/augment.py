"""Batched data augmentation that runs on the images' own device (CPU or GPU).

The random parameters are drawn on the CPU with the caller's generator (so a seed gives the same
augmentation on any device) and only the small parameter tensors are moved to ``x.device``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from dpcluster.data.dsa import DSA_STRATEGY, NOFLIP_STRATEGY, dsa

if TYPE_CHECKING:
    from dpcluster.data.base import DataBundle

# "dsa": differentiable siamese augmentation (dpcluster.data.dsa), one random transform per call; "dsa_noflip" is
# the same without the horizontal flip, for images whose label a mirror image changes (digits).
KINDS = ("none", "flip", "crop", "crop_flip", "dsa", "dsa_noflip")


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each sample left-right with probability 1/2."""
    flip = torch.rand(x.shape[0], generator=generator) < 0.5
    return torch.where(flip.to(x.device).view(-1, 1, 1, 1), x.flip(3), x)


def random_crop(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad by max(1, H // 8) pixels and take a random HxW window per sample (a random shift)."""
    n, c, h, w = x.shape
    pad = max(1, h // 8)
    padded = F.pad(x, (pad, pad, pad, pad))
    top = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    left = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    rows = (top.view(n, 1) + torch.arange(h, device=x.device)).view(n, 1, h, 1)
    cols = (left.view(n, 1) + torch.arange(w, device=x.device)).view(n, 1, 1, w)
    samples = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    channels = torch.arange(c, device=x.device).view(1, c, 1, 1)
    # Advanced indexing with broadcast (n, c, h, w) index tensors: one gather for the whole batch.
    return padded[samples, channels, rows, cols]


def resolve_augmentation(kind: str, data: "DataBundle") -> str:
    """``kind`` with "auto" made concrete for ``data``: "dsa", or "dsa_noflip" where mirroring changes labels."""
    if kind == "auto":
        return "dsa" if data.mirror_safe else "dsa_noflip"
    return kind


def augment(x: torch.Tensor, kind: str, generator: torch.Generator) -> torch.Tensor:
    """Augment a batch ``x`` (N, C, H, W); ``kind`` is one of :data:`KINDS`.

    The DSA kinds are differentiable with respect to ``x``; so are the others (indexing and ``torch.where``).
    """
    if kind == "none":
        return x
    if kind == "flip":
        return random_flip(x, generator)
    if kind == "crop":
        return random_crop(x, generator)
    if kind == "crop_flip":
        return random_flip(random_crop(x, generator), generator)
    if kind == "dsa":
        return dsa(x, generator, DSA_STRATEGY)
    if kind == "dsa_noflip":
        return dsa(x, generator, NOFLIP_STRATEGY)
    raise ValueError(f"unknown augmentation {kind!r}; expected one of {', '.join(KINDS)}")
