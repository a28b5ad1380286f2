"""Pure functions for pruning masks.

A mask is a dict from parameter name (``"features.0.weight"``) to a boolean tensor of that parameter's
shape: True = kept. Pruning keeps the highest *scores* (a criterion: weight magnitude, or a random draw), across
all layers or per layer (the scope). Only conv and linear weights are prunable; biases and norm parameters are not.
Counts are exact integers: the target after round r keeps ``round(total * (1 - rate) ** r)`` weights,
computed from the total rather than from the previous round, so rounding never accumulates.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch

Mask = dict[str, torch.Tensor]
Weights = dict[str, torch.Tensor]
# A score per weight (same names and shapes as the mask): pruning keeps the highest scores.
Scores = dict[str, torch.Tensor]


def is_dense(mask: Mask) -> bool:
    """Whether ``mask`` keeps every weight."""
    return all(bool(m.all()) for m in mask.values())


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


def magnitude_scores(weights: Weights) -> Scores:
    """Each weight's magnitude: magnitude pruning keeps the largest."""
    return {name: w.detach().abs().float().cpu() for name, w in weights.items()}


def random_scores(mask: Mask, generator: torch.Generator) -> Scores:
    """An independent uniform draw per weight. Keeping the top k of i.i.d. draws keeps a uniformly random k-subset,
    so a mask chosen by these scores depends on the generator and the previous mask alone, never on a weight."""
    return {name: torch.rand(m.shape, generator=generator) for name, m in mask.items()}


def keep_top(scores: Scores, mask: Mask, keep: int) -> Mask:
    """Keep the ``keep`` highest-scoring weights among those the mask still keeps, across all layers."""
    _check_keep(mask, keep)
    names = list(mask)
    # Already-pruned weights score -inf so they are never chosen again.
    flat = torch.cat([torch.where(mask[n], scores[n].float(), torch.tensor(-math.inf)).flatten() for n in names])
    chosen = torch.zeros_like(flat, dtype=torch.bool)
    chosen[torch.topk(flat, keep, sorted=False).indices] = True
    return _split(chosen, mask)


def keep_top_per_layer(scores: Scores, mask: Mask, density: float) -> Mask:
    """Keep the ``round(layer_size * density)`` highest-scoring weights of each layer."""
    out = {}
    for name, m in mask.items():
        keep = min(int(round(m.numel() * density)), int(m.sum()))
        out[name] = keep_top({name: scores[name]}, {name: m}, keep)[name]
    return out


def next_mask(scores: Scores, mask: Mask, rate: float, round_index: int, scope: str = "global") -> Mask:
    """The mask of round ``round_index`` (>= 1): ``mask`` pruned to the round's target by ``scores``, across all
    layers (``scope = "global"``) or to the same density in each layer (``"layerwise"``)."""
    if scope == "global":
        return keep_top(scores, mask, target_kept(count_total(mask), rate, round_index))
    if scope == "layerwise":
        return keep_top_per_layer(scores, mask, (1.0 - rate) ** round_index)
    raise ValueError(f"unknown pruning scope {scope!r}")


def layer_counts(mask: Mask) -> list[tuple[str, int, int]]:
    """(layer, kept, total) for every layer of the mask, in the mask's order."""
    return [(name, int(m.sum()), m.numel()) for name, m in mask.items()]


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
