"""Pure functions for pruning masks.

A mask is a dict from parameter name (``"features.0.weight"``) to a boolean tensor of that parameter's
shape: True = kept. Only conv and linear weights are prunable; biases and norm parameters are not.
Counts are exact integers: the target after round r keeps ``round(total * (1 - rate) ** r)`` weights,
computed from the total rather than from the previous round, so rounding never accumulates.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

Mask = dict[str, torch.Tensor]
Weights = dict[str, torch.Tensor]


def full_mask(weights: Weights) -> Mask:
    return {name: torch.ones_like(w, dtype=torch.bool, device="cpu") for name, w in weights.items()}


def count_total(mask: Mask) -> int:
    return sum(m.numel() for m in mask.values())


def count_kept(mask: Mask) -> int:
    return sum(int(m.sum()) for m in mask.values())


def sparsity(mask: Mask) -> float:
    """Fraction of prunable weights that are pruned."""
    return 1.0 - count_kept(mask) / count_total(mask)


def target_kept(total: int, rate: float, round_index: int) -> int:
    return int(round(total * (1.0 - rate) ** round_index))


def _check_keep(mask: Mask, keep: int) -> None:
    if not 0 <= keep <= count_kept(mask):
        raise ValueError(f"cannot keep {keep} weights: only {count_kept(mask)} remain")


def prune_global(weights: Weights, mask: Mask, keep: int) -> Mask:
    """Keep the ``keep`` largest-magnitude weights among those the mask still keeps, across all layers."""
    _check_keep(mask, keep)
    names = list(mask)
    # Already-pruned weights score -1 so they are never chosen again (magnitudes are >= 0).
    scores = torch.cat([
        torch.where(mask[n], weights[n].detach().abs().float().cpu(), torch.tensor(-1.0)).flatten() for n in names
    ])
    chosen = torch.zeros_like(scores, dtype=torch.bool)
    chosen[torch.topk(scores, keep, sorted=False).indices] = True
    return _split(chosen, mask)


def prune_layerwise(weights: Weights, mask: Mask, density: float) -> Mask:
    """Keep ``round(layer_size * density)`` largest-magnitude weights in each layer."""
    out = {}
    for name, m in mask.items():
        keep = int(round(m.numel() * density))
        out[name] = prune_global({name: weights[name]}, {name: m}, min(keep, int(m.sum())))[name]
    return out


def prune_random(mask: Mask, keep: int, generator: torch.Generator) -> Mask:
    """Keep ``keep`` weights chosen uniformly at random among those the mask still keeps."""
    _check_keep(mask, keep)
    flat = torch.cat([m.flatten() for m in mask.values()])
    scores = torch.where(flat, torch.rand(flat.shape, generator=generator), torch.tensor(-1.0))
    chosen = torch.zeros_like(flat)
    chosen[torch.topk(scores, keep, sorted=False).indices] = True
    return _split(chosen, mask)


def next_mask(strategy: str, weights: Weights | None, mask: Mask, rate: float, round_index: int,
              generator: torch.Generator | None = None) -> Mask:
    """The mask of round ``round_index`` (>= 1), pruned from ``mask`` with the given strategy."""
    if strategy == "global":
        return prune_global(weights, mask, target_kept(count_total(mask), rate, round_index))
    if strategy == "layerwise":
        return prune_layerwise(weights, mask, (1.0 - rate) ** round_index)
    if strategy == "random":
        return prune_random(mask, target_kept(count_total(mask), rate, round_index), generator)
    raise ValueError(f"unknown pruning strategy {strategy!r}")


def _split(flat: torch.Tensor, like: Mask) -> Mask:
    out, start = {}, 0
    for name, m in like.items():
        out[name] = flat[start:start + m.numel()].view(m.shape).clone()
        start += m.numel()
    return out


def mask_hash(mask: Mask) -> str:
    """A short content hash of a mask (names, shapes and kept bits)."""
    digest = hashlib.sha256()
    for name in sorted(mask):
        m = mask[name]
        digest.update(f"{name}:{tuple(m.shape)};".encode())
        digest.update(np.packbits(m.flatten().numpy().astype(np.uint8)).tobytes())
    return digest.hexdigest()[:16]


def pack_mask(mask: Mask) -> dict[str, dict]:
    """A mask as bits (1/8 of a bool tensor's size), for keeping every round's mask on disk."""
    return {name: {"shape": list(m.shape), "bits": torch.from_numpy(np.packbits(m.flatten().numpy()))}
            for name, m in mask.items()}


def unpack_mask(packed: dict[str, dict]) -> Mask:
    out = {}
    for name, item in packed.items():
        shape = tuple(item["shape"])
        count = int(np.prod(shape)) if shape else 1
        bits = np.unpackbits(item["bits"].numpy())[:count]
        out[name] = torch.from_numpy(bits.astype(bool)).view(shape)
    return out
