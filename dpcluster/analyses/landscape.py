"""Loss-landscape planes after Li et al., "Visualizing the Loss Landscape of Neural Nets" (2018), in the subnetwork.

A plane is the set of points ``center + a * d1 + b * d2`` for two random, filter-normalised directions: each filter
of a direction has the norm of the same filter of the weights, so the picture does not depend on the scale of the
weights (which BatchNorm makes arbitrary). Directions are zero where the mask prunes, so with a masked center every
point of the plane is a point of the same subnetwork.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from dpcluster.data.base import TensorSet
from dpcluster.pruning.masks import Mask
from dpcluster.training.loop import evaluate

Direction = dict[str, Tensor]


def filter_normalised_direction(weights: dict[str, Tensor], mask: Mask, generator: torch.Generator) -> Direction:
    """A random direction for ``weights`` (floating-point parameters by name), normalised filter by filter.

    Every tensor gets a Gaussian draw of its shape (drawn on the CPU in the given order, so a seed gives the same
    direction on any device). Tensors with two or more dimensions (conv and linear weights) are zeroed where the
    mask prunes, then each filter (slice along dim 0) is rescaled to the norm of the same filter of the masked
    weights; a filter whose kept weights are all zero gets a zero direction. One-dimensional tensors (biases, norm
    parameters) get a zero direction, as in Li et al.'s reference code, which decides by dimension too: a LayerNorm
    weight (C, H, W) is therefore treated like a conv weight. Pure: ``weights`` is not changed.
    """
    direction = {}
    for name, w in weights.items():
        if not w.is_floating_point():
            raise ValueError(f"{name} is not a floating-point tensor ({w.dtype}): pass parameters only")
        draw = torch.randn(w.shape, generator=generator, dtype=w.dtype).to(w.device)
        if w.dim() <= 1:
            direction[name] = torch.zeros_like(w)
            continue
        kept = mask[name].to(w.device, w.dtype) if name in mask else torch.ones_like(w)
        draw, target = draw * kept, w.detach() * kept
        draw_norms = draw.flatten(1).norm(dim=1)
        target_norms = target.flatten(1).norm(dim=1)
        # A fully pruned filter has a zero draw and a zero target: scale 0 (not 0/0).
        scale = torch.where(draw_norms > 0, target_norms / draw_norms.clamp_min(torch.finfo(w.dtype).tiny),
                            torch.zeros_like(draw_norms))
        direction[name] = draw * scale.view(-1, *([1] * (w.dim() - 1)))
    return direction


def grid(size: int, span: float) -> list[float]:
    """``size`` evenly spaced coordinates from -span to span; ``size`` odd and >= 3, so the center 0 is one."""
    if size < 3 or size % 2 == 0:
        raise ValueError(f"grid size must be odd and >= 3 (so that 0 is a coordinate), got {size}")
    if not span > 0:
        raise ValueError(f"grid span must be > 0, got {span}")
    last = size - 1
    # span * (2i/last - 1) is exactly -span, 0 and span at i = 0, last/2 and last.
    return [span * (2 * i / last - 1) for i in range(size)]


def _pruned_nonzero(state: dict[str, Tensor], mask: Mask) -> list[str]:
    return [name for name, m in mask.items()
            if bool((state[name].detach()[~m.to(state[name].device)] != 0).any())]


def plane(model: nn.Module, center: dict[str, Tensor], mask: Mask, directions: tuple[Direction, Direction],
          coordinates: list[float], data: TensorSet | Dataset, *, device: torch.device,
          recompute_batchnorm: Callable[[nn.Module], None] | None = None) -> list[tuple[float, float, float, float]]:
    """Rows ``(a, b, loss, accuracy)`` on ``data`` at ``center + a * d1 + b * d2`` for a, b in ``coordinates``.

    ``center`` is a full state dict whose pruned weights are zero (else ValueError); the directions apply only to
    the tensors they name, so buffers (BatchNorm running statistics) stay as in ``center`` unless
    ``recompute_batchnorm(model)`` recomputes them at each point. Pruned weights are zero at every point: the
    directions are masked as they are added, whatever their source, and a ``recompute_batchnorm`` that changes them
    raises RuntimeError. Rows run over a, then b. The model ends loaded with ``center``.
    """
    d1, d2 = directions
    for direction in (d1, d2):
        for name, d in direction.items():
            if name not in center or center[name].shape != d.shape:
                raise ValueError(f"direction tensor {name} {tuple(d.shape)} matches no tensor of the center")
    unmasked = _pruned_nonzero(center, mask)
    if unmasked:
        raise ValueError(f"the center is not masked: pruned weights of {', '.join(unmasked)} are nonzero")
    if isinstance(data, TensorSet):
        data = data.to(device)  # evaluate takes a TensorSet's batches where they lie
    kept = {name: m.to(center[name].device, center[name].dtype) for name, m in mask.items()}

    def point(a: float, b: float) -> dict[str, Tensor]:
        state = dict(center)
        for name in set(d1) | set(d2):
            moved = center[name].detach().clone()
            if name in d1:
                moved += a * d1[name].to(moved.device, moved.dtype)
            if name in d2:
                moved += b * d2[name].to(moved.device, moved.dtype)
            state[name] = moved * kept[name] if name in kept else moved
        return state

    rows = []
    model.to(device)
    try:
        for a in coordinates:
            for b in coordinates:
                model.load_state_dict(point(a, b), strict=True)
                if recompute_batchnorm is not None:
                    recompute_batchnorm(model)
                    changed = _pruned_nonzero(model.state_dict(), mask)
                    if changed:
                        raise RuntimeError(f"recompute_batchnorm revived pruned weights of {', '.join(changed)}")
                accuracy, loss = evaluate(model, data, device=device)
                rows.append((float(a), float(b), loss, accuracy))
    finally:
        model.load_state_dict(center, strict=True)
    return rows
