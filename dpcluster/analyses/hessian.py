"""Hessian sharpness of a (pruned) network on a fixed batch: top eigenvalue and trace, through ``torch.func``.

The space is the subnetwork's: pruned weight entries are held at zero and are not directions of it, so every
quantity here is one of P H P, where H is the Hessian of the mean cross-entropy loss with respect to all trainable
parameters and P zeroes the pruned entries. Hessian-vector products are forward-over-reverse (``jvp`` of ``grad``),
which costs about two backward passes and never builds H. The model is evaluated in eval mode with its buffers as
they are, so BatchNorm uses its running statistics and the loss is a deterministic function of the parameters
alone (in train mode it would also depend on the batch statistics, and the Hessian would not be the one of the
function the network computes at test time).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp

from dpcluster.data.base import TensorSet
from dpcluster.pruning.masks import Mask

Vector = dict[str, Tensor]
HVP = Callable[[Vector], Vector]


@dataclass(frozen=True)
class Sharpness:
    # The eigenvalue of P H P of largest magnitude (power iteration), and whether the iteration met its tolerance.
    top_eigenvalue: float
    eigen_iterations: int
    eigen_converged: bool
    # Hutchinson's estimate of trace(P H P) and the standard error of that mean over ``trace_samples`` probes.
    trace: float
    trace_std_error: float
    trace_samples: int


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for the duration, then every module's own previous mode back (not one flag for all)."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def _project(vector: Vector, masks: Vector) -> Vector:
    """P v: the pruned entries zeroed; tensors the mask does not name (biases, norm parameters) unchanged."""
    return {name: v * masks[name] if name in masks else v for name, v in vector.items()}


def _dot(a: Vector, b: Vector) -> float:
    # Accumulated in float64: the Rayleigh quotients and Hutchinson probes sum over every parameter.
    return float(sum((a[name].double() * b[name].double()).sum() for name in a))


def _scale(vector: Vector, factor: float) -> Vector:
    return {name: v * factor for name, v in vector.items()}


def _device_masks(mask: Mask, like: Vector) -> Vector:
    """The mask as 0/1 tensors of each parameter's dtype on its device (only for names ``like`` holds)."""
    unknown = [name for name in mask if name not in like]
    if unknown:
        raise ValueError(f"the mask names tensors that are not trainable parameters: {', '.join(unknown)}")
    return {name: m.to(like[name].device, like[name].dtype) for name, m in mask.items()}


def hessian_vector_product(model: nn.Module, mask: Mask, x: Tensor, y: Tensor) -> tuple[HVP, Vector]:
    """``(hvp, params)``: the subnetwork's Hessian-vector product on the batch (x, y), and the point it is taken at.

    ``params`` are the model's trainable parameters (prunable weights, biases, norm parameters), detached, with the
    pruned entries zeroed: the subnetwork's point. ``hvp(v)`` (``v`` a dict like ``params``) is P H P v for H the
    Hessian of the mean cross-entropy loss on (x, y) at ``params``. Buffers and frozen parameters are passed through
    unchanged, and every call evaluates the model in eval mode (restoring its modes afterwards). The model's own
    tensors are never modified.
    """
    params = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
    masks = _device_masks(mask, params)
    params = _project(params, masks)
    constants = {name: p.detach() for name, p in model.named_parameters() if not p.requires_grad}
    constants.update(dict(model.named_buffers()))

    def loss(point: Vector) -> Tensor:
        return F.cross_entropy(functional_call(model, (point, constants), (x,)), y)

    gradient = grad(loss)

    def hvp(v: Vector) -> Vector:
        # d/dt grad(params + t P v) at t = 0 is H P v; the outer P keeps the result in the subspace too.
        with _eval_mode(model):
            _, product = jvp(gradient, (params,), (_project(v, masks),))
        return _project(product, masks)

    return hvp, params


def _random_like(like: Vector, masks: Vector, generator: torch.Generator,
                 draw: Callable[[torch.Size, torch.dtype], Tensor]) -> Vector:
    """A masked random vector: drawn on the CPU (so a seed gives the same vector on any device), then moved."""
    return _project({name: draw(t.shape, t.dtype).to(t.device) for name, t in like.items()}, masks)


def top_eigenvalue(hvp: HVP, like: Vector, mask: Mask, *, iterations: int, tolerance: float,
                   generator: torch.Generator) -> tuple[float, int, bool]:
    """``(eigenvalue, iterations used, converged)``: power iteration on ``hvp`` from a random masked unit vector.

    Power iteration finds the eigenvalue of largest *magnitude*, with its sign (the Rayleigh quotient): at a
    saddle or early in training that can be a negative one; where the two largest magnitudes are equal with opposite
    signs it oscillates and does not converge. It stops when the relative change of the Rayleigh quotient between
    two iterations is at most ``tolerance`` (converged) or after ``iterations`` products (not converged; one
    iteration can never converge, there is nothing to compare with). A small relative change is a heuristic: with a
    small gap between the two largest eigenvalues the estimate can still be below the true one.
    """
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    masks = _device_masks(mask, like)
    v = _random_like(like, masks, generator, lambda shape, dtype: torch.randn(shape, generator=generator, dtype=dtype))
    v = _scale(v, 1.0 / math.sqrt(_dot(v, v)))
    previous = math.nan
    for step in range(1, iterations + 1):
        product = hvp(v)
        rayleigh = _dot(v, product)  # v is a unit vector
        norm = math.sqrt(_dot(product, product))
        if norm == 0.0:
            # A random start has a component along every eigenvector (almost surely), so H v = 0 means P H P = 0.
            return 0.0, step, True
        if abs(rayleigh - previous) <= tolerance * abs(rayleigh):
            return rayleigh, step, True
        previous = rayleigh
        v = _scale(product, 1.0 / norm)
    return previous, iterations, False


def hutchinson_trace(hvp: HVP, like: Vector, mask: Mask, *, samples: int,
                     generator: torch.Generator) -> tuple[float, float]:
    """``(mean, standard error of the mean)`` of Hutchinson's estimator of trace(P H P).

    Each probe is z^T H z for a Rademacher vector z masked to the subnetwork: E[z z^T] = P, so E[z^T H z] =
    trace(P H P) exactly, and Rademacher probes have the least variance among i.i.d. ones.
    """
    if samples < 2:
        raise ValueError(f"samples must be >= 2 (a standard error needs two), got {samples}")
    masks = _device_masks(mask, like)

    def rademacher(shape: torch.Size, dtype: torch.dtype) -> Tensor:
        return (torch.randint(0, 2, shape, generator=generator) * 2 - 1).to(dtype)

    probes = []
    for _ in range(samples):
        z = _random_like(like, masks, generator, rademacher)
        probes.append(_dot(z, hvp(z)))
    values = torch.tensor(probes, dtype=torch.float64)
    return float(values.mean()), float(values.std(correction=1)) / math.sqrt(samples)


def sharpness(model: nn.Module, mask: Mask, data: TensorSet, *, device: torch.device, iterations: int = 100,
              tolerance: float = 1e-3, samples: int = 20, seed: int = 0) -> Sharpness:
    """Top Hessian eigenvalue and Hessian trace of the subnetwork on the whole of ``data`` as one batch.

    The caller passes a fixed subset (the products hold the whole batch's activations and their tangents). The
    model is moved to ``device`` and evaluated in fp32 (no autocast). The eigenvalue and trace draw from separate
    generators derived from ``seed``, so changing one's settings never changes the other's probes.
    """
    model.to(device)
    hvp, params = hessian_vector_product(model, mask, data.x.to(device), data.y.to(device))
    eigen_generator = torch.Generator().manual_seed(2 * seed)
    trace_generator = torch.Generator().manual_seed(2 * seed + 1)
    eigenvalue, used, converged = top_eigenvalue(hvp, params, mask, iterations=iterations, tolerance=tolerance,
                                                 generator=eigen_generator)
    trace, std_error = hutchinson_trace(hvp, params, mask, samples=samples, generator=trace_generator)
    return Sharpness(eigenvalue, used, converged, trace, std_error, samples)
