"""Which initial values each mask keeps (the first paper's appendix figure, after Paganini and Forde): per layer, a
histogram of the initial weights, split into those the mask keeps and those it prunes, over shared bins. A
magnitude mask keeps the tails; a random mask keeps every value alike."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dpcluster.pruning.masks import Mask


@dataclass(frozen=True)
class HistogramBin:
    layer: str
    low: float
    high: float
    kept: int
    pruned: int


def kept_weight_histograms(initial: dict[str, torch.Tensor], mask: Mask, bins: int) -> list[HistogramBin]:
    """Per masked layer, ``bins`` equal bins over the range of its initial weights, counting kept and pruned
    weights in each (the last bin includes its upper edge)."""
    out = []
    for name, keep in mask.items():
        values = initial[name].detach().float().flatten().cpu()
        keep = keep.flatten().cpu()
        low, high = float(values.min()), float(values.max())
        if high <= low:
            high = low + 1e-12  # a constant layer: one filled bin
        edges = torch.linspace(low, high, bins + 1)
        kept = torch.histc(values[keep], bins=bins, min=low, max=high).long()
        pruned = torch.histc(values[~keep], bins=bins, min=low, max=high).long()
        out += [HistogramBin(name, float(edges[i]), float(edges[i + 1]), int(kept[i]), int(pruned[i]))
                for i in range(bins)]
    return out
