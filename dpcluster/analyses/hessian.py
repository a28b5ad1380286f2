"""Hessian sharpness of a (pruned) network on a fixed batch: its largest and smallest eigenvalues and its trace,
through ``torch.func``.

The space is the subnetwork's: pruned weight entries are held at zero and are not directions of it, so every
quantity here is one of P H P, where H is the Hessian of the mean cross-entropy loss with respect to all trainable
parameters and P zeroes the pruned entries. Hessian-vector products are forward-over-reverse (``jvp`` of ``grad``),
which costs about two backward passes and never builds H; for a network with an op that has no forward-mode
derivative of its backward, reverse-over-reverse (``vjp`` of ``grad``). The model is evaluated in eval mode with its buffers as
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
from torch.func import functional_call, grad, jvp, vjp

from dpcluster.data.base import TensorSet
from dpcluster.models.swap import swapped_modules
from dpcluster.pruning.masks import Mask

Vector = dict[str, Tensor]
HVP = Callable[[Vector], Vector]


@dataclass(frozen=True)
class Sharpness:
    # The largest eigenvalue of the subnetwork's Hessian (sharpness: the largest algebraic one, not the largest in
    # magnitude), the Hessian-vector products both extreme eigenvalues took, and whether each met the tolerance
    # on its residual ||H v - lambda v||.
    top_eigenvalue: float
    eigen_iterations: int
    eigen_converged: bool
    # Hutchinson's estimate of trace(P H P) and the standard error of that mean over ``trace_samples`` probes.
    trace: float
    trace_std_error: float
    trace_samples: int
    # The smallest eigenvalue (negative where the subnetwork sits at a saddle: curvature worth knowing), and the
    # larger of the two eigenpairs' relative residuals.
    bottom_eigenvalue: float = math.nan
    eigen_residual: float = math.nan


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


class _Hardsigmoid(nn.Module):
    """relu6(x + 3) / 6, as clamps: torch's hardsigmoid has no derivative of its backward (so no second
    derivative at all), while a clamp's is zero, which is the piecewise-linear function's second derivative."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.clamp(x + 3, 0, 6) / 6


class _Hardswish(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x * torch.clamp(x + 3, 0, 6) / 6


_TWICE_DIFFERENTIABLE = {nn.Hardsigmoid: _Hardsigmoid, nn.Hardswish: _Hardswish}


def _twice_differentiable(model: nn.Module) -> contextlib.AbstractContextManager:
    """The model with its activations that torch cannot differentiate twice (hardsigmoid, hardswish: torchvision's
    MobileNet-v3) replaced by equal ones that it can, put back afterwards."""
    return swapped_modules(model, lambda m: _TWICE_DIFFERENTIABLE[type(m)]() if type(m) in _TWICE_DIFFERENTIABLE
                           else None)


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
        with _twice_differentiable(model):
            return F.cross_entropy(functional_call(model, (point, constants), (x,)), y)

    gradient = grad(loss)
    reverse: list = []  # the gradient's vjp, once forward mode proved unavailable for one of the network's ops

    def hvp(v: Vector) -> Vector:
        # d/dt grad(params + t P v) at t = 0 is H P v; the outer P keeps the result in the subspace too.
        with _eval_mode(model):
            if not reverse:
                try:
                    _, product = jvp(gradient, (params,), (_project(v, masks),))
                    return _project(product, masks)
                except NotImplementedError:
                    # An op with no forward-mode derivative of its backward (torchvision's MobileNets' hardsigmoid):
                    # reverse-over-reverse instead, the vjp of the gradient (H is symmetric, so it is H v).
                    reverse.append(vjp(gradient, params)[1])
            (product,) = reverse[0](_project(v, masks))
        return _project(product, masks)

    return hvp, params


def _random_like(like: Vector, masks: Vector, generator: torch.Generator,
                 draw: Callable[[torch.Size, torch.dtype], Tensor]) -> Vector:
    """A masked random vector: drawn on the CPU (so a seed gives the same vector on any device), then moved."""
    return _project({name: draw(t.shape, t.dtype).to(t.device) for name, t in like.items()}, masks)


@dataclass(frozen=True)
class Extremes:
    """The largest and smallest eigenvalues of the subnetwork's Hessian, with how they were found."""

    largest: float
    smallest: float
    # Hessian-vector products used for both, and the larger relative residual ||H v - lambda v|| / max|lambda|.
    products: int
    residual: float
    converged: bool


class _Subspace:
    """The subnetwork's coordinates (the kept entries of every trainable tensor) as one float64 numpy vector."""

    def __init__(self, like: Vector, masks: Vector):
        self.like, self.keep = like, {name: (masks[name].bool() if name in masks else
                                             torch.ones_like(t, dtype=torch.bool)) for name, t in like.items()}
        self.size = sum(int(k.sum()) for k in self.keep.values())

    def vector(self, tensors: Vector):
        import numpy as np

        return np.concatenate([tensors[name].detach()[self.keep[name]].double().cpu().numpy() for name in self.like])

    def tensors(self, vector) -> Vector:
        out, at = {}, 0
        for name, t in self.like.items():
            keep = self.keep[name]
            full = torch.zeros(t.shape, dtype=t.dtype)
            count = int(keep.sum())
            full[keep.cpu()] = torch.from_numpy(vector[at:at + count]).to(t.dtype)
            out[name], at = full.to(t.device), at + count
        return out


def extreme_eigenvalues(hvp: HVP, like: Vector, mask: Mask, *, iterations: int, tolerance: float,
                        generator: torch.Generator) -> Extremes:
    """The largest and the smallest eigenvalue of the subnetwork's Hessian (``hvp`` restricted to the kept
    coordinates), by Lanczos iteration (ARPACK's, through ``scipy.sparse.linalg.eigsh`` on a ``LinearOperator`` of
    Hessian-vector products), each from the same seeded start and within ``iterations`` products.

    Power iteration, used before, finds the eigenvalue of largest *magnitude*: where two of opposite sign are about
    as large it wanders and its stopping test (a small change of the Rayleigh quotient) can pass at once on a wrong
    value, and at a saddle it returns a negative one although sharpness is the largest algebraic eigenvalue.
    Converged here means measured: both eigenpairs' residual ||H v - lambda v|| is at most ``tolerance`` times the
    larger eigenvalue's magnitude (two more products).
    """
    import numpy as np
    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    space = _Subspace(like, _device_masks(mask, like))
    if space.size == 0:
        return Extremes(0.0, 0.0, 0, 0.0, True)
    used = [0]

    def product(vector):
        used[0] += 1
        return space.vector(hvp(space.tensors(np.asarray(vector, dtype=np.float64).ravel())))

    start = torch.randn(space.size, generator=generator, dtype=torch.float64).numpy()
    if space.size <= 32:  # tiny: the whole matrix, one product per coordinate (ARPACK needs more room)
        matrix = np.stack([product(column) for column in np.eye(space.size)], axis=1)
        values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
        pairs = [(values[-1], vectors[:, -1]), (values[0], vectors[:, 0])]
    else:
        operator = LinearOperator((space.size, space.size), matvec=product, dtype=np.float64)
        # ncv Lanczos vectors, then ncv - 1 more products per implicit restart: restarts within the budget.
        ncv = min(space.size - 1, max(4, min(20, iterations // 2)))
        restarts = max(1, (iterations - ncv) // (ncv - 1) + 1)
        pairs = []
        for which in ("LA", "SA"):
            try:
                values, vectors = eigsh(operator, k=1, which=which, v0=start, ncv=ncv, tol=tolerance,
                                        maxiter=restarts)
                pairs.append((values[0], vectors[:, 0]))
            except ArpackNoConvergence as partial:
                if len(partial.eigenvalues):
                    pairs.append((partial.eigenvalues[0], partial.eigenvectors[:, 0]))
                else:  # nothing converged: the start vector's Rayleigh quotient, flagged by its residual
                    unit = start / np.linalg.norm(start)
                    pairs.append((float(unit @ product(unit)), unit))
    scale = max(abs(pairs[0][0]), abs(pairs[1][0]))
    residuals = [float(np.linalg.norm(product(v) - value * v)) / (scale or 1.0) for value, v in pairs]
    residual = max(residuals)
    return Extremes(float(pairs[0][0]), float(pairs[1][0]), used[0], residual, residual <= tolerance or scale == 0)


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
    """The largest and smallest Hessian eigenvalues and the Hessian trace of the subnetwork on the whole of
    ``data`` as one batch.

    The caller passes a fixed subset (the products hold the whole batch's activations and their tangents). The
    model is moved to ``device`` and evaluated in fp32 (no autocast). The eigenvalue and trace draw from separate
    generators derived from ``seed``, so changing one's settings never changes the other's probes.
    """
    model.to(device)
    hvp, params = hessian_vector_product(model, mask, data.x.to(device), data.y.to(device))
    eigen_generator = torch.Generator().manual_seed(2 * seed)
    trace_generator = torch.Generator().manual_seed(2 * seed + 1)
    extremes = extreme_eigenvalues(hvp, params, mask, iterations=iterations, tolerance=tolerance,
                                   generator=eigen_generator)
    trace, std_error = hutchinson_trace(hvp, params, mask, samples=samples, generator=trace_generator)
    return Sharpness(extremes.largest, extremes.products, extremes.converged, trace, std_error, samples,
                     extremes.smallest, extremes.residual)
