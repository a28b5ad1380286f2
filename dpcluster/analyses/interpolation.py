"""Linear mode connectivity (Frankle et al. 2020, as both papers use it): two copies of a subnetwork trained from
the same start with different data orders, and the test error along the straight line between them. The
*instability* is the error barrier: the largest error on the path minus the mean of the two endpoints' errors; a
subnetwork is stable when it is about zero."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dpcluster.data.base import TensorSet
from dpcluster.pruning.masks import Mask
from dpcluster.pruning.model_masks import restore_state

State = dict[str, torch.Tensor]


@dataclass(frozen=True)
class CurvePoint:
    alpha: float
    test_loss: float
    test_error: float


def alphas(points: int) -> list[float]:
    """``points`` evenly spaced positions from 0 (the first copy) to 1 (the second), ends included."""
    if points < 2:
        raise ValueError(f"an interpolation needs at least 2 points, got {points}")
    return [i / (points - 1) for i in range(points)]


def interpolate(a: State, b: State, alpha: float, mask: Mask | None = None) -> State:
    """(1 - alpha) a + alpha b for every floating-point tensor; integer buffers (BatchNorm's batch counter) are
    taken from ``a``. Pruned weights are zero in both ends, and stay exactly zero on the path (the mask is applied
    again so rounding cannot leave them at ±0 noise)."""
    out = {}
    for name, tensor in a.items():
        if tensor.is_floating_point():
            mixed = torch.lerp(tensor, b[name], alpha)
            out[name] = mixed * mask[name] if mask is not None and name in mask else mixed
        else:
            out[name] = tensor.clone()
    return out


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def recompute_batchnorm(model: nn.Module, data: TensorSet, device: torch.device, batch_size: int = 256) -> None:
    """Reset and recompute BatchNorm's running statistics on ``data`` (an interpolated network's statistics are
    not the mean of its ends'); torch's own ``update_bn``, which does nothing for networks without BatchNorm."""
    batches = [data.x[i:i + batch_size].to(device) for i in range(0, len(data), batch_size)]
    torch.optim.swa_utils.update_bn(batches, model.to(device), device)


def error_barrier(curve: list[CurvePoint]) -> float:
    """The largest test error on the path minus the mean of the endpoints' errors."""
    return max(p.test_error for p in curve) - (curve[0].test_error + curve[-1].test_error) / 2


def interpolation_curve(model: nn.Module, a: State, b: State, mask: Mask, points: int, test: TensorSet,
                        device: torch.device, batchnorm_data: TensorSet | None = None) -> list[CurvePoint]:
    """Test loss and error at ``points`` evenly spaced networks from ``a`` to ``b``; with ``batchnorm_data``, the
    BatchNorm statistics of each are recomputed on it first (networks with BatchNorm need it)."""
    from dpcluster.training import evaluate

    curve = []
    for alpha in alphas(points):
        restore_state(model, interpolate(a, b, alpha, mask))
        if batchnorm_data is not None and has_batchnorm(model):
            recompute_batchnorm(model, batchnorm_data, device)
        accuracy, loss = evaluate(model, test, device=device)
        curve.append(CurvePoint(alpha, loss, 1.0 - accuracy))
    return curve
