"""The Hessian and loss-landscape analyses against their definitions: exact Hessians of small models, known
spectra, finite differences, and the invariants of the subnetwork (pruned weights neither move nor matter)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from dpcluster.analyses.hessian import Sharpness, extreme_eigenvalues, hessian_vector_product, hutchinson_trace, sharpness
from dpcluster.analyses.landscape import filter_normalised_direction, grid, plane
from dpcluster.data.base import TensorSet
from dpcluster.models import build_model
from dpcluster.pruning.model_masks import apply_mask, capture_state, prunable_weights
from dpcluster.specs import ModelSpec, TrainingSpec
from dpcluster.training import train
from dpcluster.training.loop import evaluate

pytestmark = pytest.mark.usefixtures("one_thread")

CPU = torch.device("cpu")


def _random_mask(model: nn.Module, density: float, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.rand(w.shape, generator=generator) < density for name, w in prunable_weights(model).items()}


def _mlp(dtype: torch.dtype, seed: int = 0):
    """A two-layer tanh network with biases, a batch, and a mask pruning about half of each weight matrix."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).to(dtype)
    x = torch.randn(32, 5, dtype=dtype)
    y = torch.randint(0, 3, (32,))
    return model, x, y, _random_mask(model, 0.5, seed)


def _flat(vector: dict[str, torch.Tensor], names: list[str]) -> torch.Tensor:
    return torch.cat([vector[n].reshape(-1) for n in names])


def _exact_php(model: nn.Module, x: torch.Tensor, y: torch.Tensor, mask) -> tuple[torch.Tensor, list[str]]:
    """P H P in float64, H from torch.autograd.functional.hessian of the loss of the flattened (masked) parameters."""
    names = [n for n, _ in model.named_parameters()]
    point = {n: p.detach().double() * (mask[n].double() if n in mask else 1.0) for n, p in model.named_parameters()}
    shapes = [point[n].shape for n in names]
    sizes = [point[n].numel() for n in names]
    model64 = copy.deepcopy(model).double()  # a float64 twin: the exact reference for any dtype

    def loss(flat: torch.Tensor) -> torch.Tensor:
        parts = {n: t.reshape(s) for n, t, s in zip(names, flat.split(sizes), shapes)}
        return F.cross_entropy(functional_call(model64, parts, (x.double(),)), y)

    hessian = torch.autograd.functional.hessian(loss, _flat(point, names))
    keep = _flat({n: (mask[n] if n in mask else torch.ones(point[n].shape, dtype=torch.bool)).double()
                  for n in names}, names)
    return keep[:, None] * hessian * keep[None, :], names


def _random_vector(like, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {n: torch.randn(t.shape, generator=generator, dtype=t.dtype) for n, t in like.items()}


# ----------------------------------------------------------------------------------------------- Hessian products


@pytest.mark.parametrize("dtype, atol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_hvp_is_the_exact_projected_hessian_times_v(dtype, atol):
    model, x, y, mask = _mlp(dtype)
    php, names = _exact_php(model, x, y, mask)
    hvp, params = hessian_vector_product(model, mask, x, y)
    for seed in range(3):
        v = _random_vector(params, seed)
        expected = php @ _flat(v, names).double()
        assert torch.allclose(_flat(hvp(v), names).double(), expected, atol=atol, rtol=0)


def test_a_network_whose_activations_torch_cannot_differentiate_twice_gets_the_exact_product():
    # torchvision's MobileNets: torch cannot differentiate hardsigmoid's and hardswish's backward at all.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Hardsigmoid(), nn.Linear(5, 4), nn.Hardswish(), nn.Linear(4, 3)).double()
    x, y = torch.randn(12, 6, dtype=torch.float64) * 3, torch.randint(0, 3, (12,))
    mask = _random_mask(model, 0.5, 0)

    class Clamped(nn.Module):  # the same functions, written so torch differentiates them twice
        def __init__(self, swish: bool):
            super().__init__()
            self.swish = swish

        def forward(self, t):
            sigmoid = torch.clamp(t + 3, 0, 6) / 6
            return t * sigmoid if self.swish else sigmoid

    reference = copy.deepcopy(model)
    reference[1], reference[3] = Clamped(False), Clamped(True)
    assert torch.allclose(reference(x), model(x), atol=1e-14, rtol=0)
    php, names = _exact_php(reference, x, y, mask)
    hvp, params = hessian_vector_product(model, mask, x, y)
    for seed in range(3):
        v = _random_vector(params, seed)
        assert torch.allclose(_flat(hvp(v), names), php @ _flat(v, names), atol=1e-12, rtol=0)


def test_params_are_every_trainable_parameter_detached_at_the_masked_point():
    model, x, y, mask = _mlp(torch.float64)
    before = capture_state(model)
    _, params = hessian_vector_product(model, mask, x, y)
    assert set(params) == {n for n, _ in model.named_parameters()}  # biases included
    for name, p in params.items():
        assert not p.requires_grad
        expected = before[name] * mask[name] if name in mask else before[name]
        assert torch.equal(p, expected)
    for name, t in capture_state(model).items():  # the model itself is untouched (its pruned weights included)
        assert torch.equal(t, before[name])


def test_a_pruned_direction_never_moves_and_never_matters():
    model, x, y, mask = _mlp(torch.float64)
    hvp, params = hessian_vector_product(model, mask, x, y)
    v = _random_vector(params, 0)
    product = hvp(v)
    for name, m in mask.items():
        assert torch.count_nonzero(product[name][~m]) == 0
    # Changing v only at pruned entries changes nothing.
    w = {n: t.clone() for n, t in v.items()}
    for name, m in mask.items():
        w[name][~m] = 1e3
    for name, t in hvp(w).items():
        assert torch.equal(t, product[name])


def _batchnorm_convnet():
    torch.manual_seed(0)
    model = build_model(ModelSpec(width=4, depth=2, norm="batchnorm"), (1, 8, 8), 10).double()
    x = torch.randn(16, 1, 8, 8, dtype=torch.float64)
    y = torch.randint(0, 10, (16,))
    with torch.no_grad():  # running statistics far from the batch's own, so train mode would be visibly wrong
        model.train()
        model(3 * torch.randn(64, 1, 8, 8, dtype=torch.float64) + 1)
    return model, x, y, _random_mask(model, 0.6, 1)


def test_hvp_on_a_batchnorm_convnet_matches_finite_differences_of_the_eval_mode_gradient():
    model, x, y, mask = _batchnorm_convnet()
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    hvp, params = hessian_vector_product(model, mask, x, y)
    v = {n: t * mask[n] if n in mask else t for n, t in _random_vector(params, 0).items()}

    def gradient(point):
        twin = build_model(ModelSpec(width=4, depth=2, norm="batchnorm"), (1, 8, 8), 10).double()
        twin.load_state_dict({**{n: b for n, b in model.named_buffers()}, **point})
        twin.eval()
        F.cross_entropy(twin(x), y).backward()
        return {n: p.grad for n, p in twin.named_parameters()}

    # The gradient has kinks (ReLU), and the nearest pre-activation here is about 1e-5 from one: a small step in
    # float64 stays on one side of every kink (a step of 1e-5 does not, and misses by O(1)).
    eps = 1e-7
    plus = gradient({n: params[n] + eps * v[n] for n in params})
    minus = gradient({n: params[n] - eps * v[n] for n in params})
    product = hvp(v)
    for name in params:
        expected = (plus[name] - minus[name]) / (2 * eps)
        expected = expected * mask[name] if name in mask else expected
        assert torch.allclose(product[name], expected, atol=1e-7, rtol=1e-5), name
    # And the double-backward product of plain autograd (no torch.func), in eval mode, exactly.
    names = list(params)
    buffers = dict(model.named_buffers())

    def loss(*point):
        return F.cross_entropy(functional_call(model, ({**buffers, **dict(zip(names, point))},), (x,)), y)

    model.eval()
    _, reference = torch.autograd.functional.hvp(loss, tuple(params.values()), tuple(v.values()))
    model.train()
    for name, expected in zip(names, reference):
        expected = expected * mask[name] if name in mask else expected
        assert torch.allclose(product[name], expected, atol=1e-12, rtol=1e-10), name
    # Eval mode: running statistics are used, not changed, and the model's own mode comes back.
    assert model.training
    for name, b in model.named_buffers():
        assert torch.equal(b, buffers[name])


def test_hvp_is_symmetric_on_a_convnet():
    model, x, y, mask = _batchnorm_convnet()
    hvp, params = hessian_vector_product(model, mask, x, y)
    u, v = _random_vector(params, 1), _random_vector(params, 2)
    u_hv = sum(float((u[n] * t).sum()) for n, t in hvp(v).items())
    v_hu = sum(float((v[n] * t).sum()) for n, t in hvp(u).items())
    assert math.isclose(u_hv, v_hu, rel_tol=1e-9)


# ---------------------------------------------------------------------------------------- eigenvalue and trace


def _matrix_hvp(matrix: torch.Tensor, mask: torch.Tensor):
    """An hvp over one parameter "w" of len(matrix) entries: P M P v for a known symmetric M."""
    keep = mask.double()

    def hvp(v):
        return {"w": keep * (matrix @ (keep * v["w"]))}

    return hvp, {"w": torch.zeros(len(matrix), dtype=torch.float64)}


def _with_spectrum(eigenvalues: list[float], seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigenvalues), len(eigenvalues), generator=generator, dtype=torch.float64))
    return q @ torch.diag(torch.tensor(eigenvalues, dtype=torch.float64)) @ q.T


def _extremes(matrix, kept=None, iterations=500, tolerance=1e-10, seed=0):
    kept = torch.ones(len(matrix), dtype=torch.bool) if kept is None else kept
    hvp, like = _matrix_hvp(matrix, kept)
    return extreme_eigenvalues(hvp, like, {"w": kept}, iterations=iterations, tolerance=tolerance,
                               generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("spectrum, largest, smallest", [
    # Two eigenvalues of opposite sign and the same size: power iteration wandered and said it had converged
    # (+0.93, +0.72, +0.51 by seed); the largest is 1, the smallest -1.
    ([1.0, -1.0, 0.1, 0.05], 1.0, -1.0),
    # The largest in magnitude is negative: sharpness is still the largest algebraic eigenvalue, 1.
    ([-3.0, 1.0, 0.5, 0.2], 1.0, -3.0),
    ([-5.0, 3.0, 1.0, 0.5, -0.2, 0.1], 3.0, -5.0),
])
def test_the_extreme_eigenvalues_are_the_largest_and_smallest_algebraic_ones(spectrum, largest, smallest, seed):
    found = _extremes(_with_spectrum(spectrum, seed), seed=seed)
    assert found.converged and found.residual <= 1e-10
    assert math.isclose(found.largest, largest, abs_tol=1e-9) and math.isclose(found.smallest, smallest, abs_tol=1e-9)


def test_the_extreme_eigenvalues_of_a_large_operator_come_from_lanczos_and_say_when_they_did_not_converge():
    # 200 coordinates (past the dense shortcut): a spread spectrum with a negative end.
    spectrum = [4.0, -2.5] + list(torch.linspace(-1, 1, 198, dtype=torch.float64).tolist())
    found = _extremes(_with_spectrum(spectrum), iterations=400)
    assert found.converged and found.products <= 2 * 400 + 2
    assert math.isclose(found.largest, 4.0, rel_tol=1e-8) and math.isclose(found.smallest, -2.5, rel_tol=1e-8)
    # A budget too small to converge is reported as such: by the residual, not by a small change.
    short = _extremes(_with_spectrum([1.0 + 1e-4 * i for i in range(200)]), iterations=4, tolerance=1e-12)
    assert not short.converged and short.residual > 1e-12


def test_the_extreme_eigenvalues_ignore_pruned_directions():
    # The largest eigenvector of M lies on a pruned coordinate: the subnetwork's eigenvalues are those of the kept
    # block (all positive here: its smallest is 0.5, not the 0 a pruned direction would add).
    matrix = torch.diag(torch.tensor([10.0, 2.0, 1.0, 0.5], dtype=torch.float64))
    found = _extremes(matrix, torch.tensor([False, True, True, True]))
    assert found.converged and math.isclose(found.largest, 2.0, rel_tol=1e-9)
    assert math.isclose(found.smallest, 0.5, rel_tol=1e-9)


def test_the_extreme_eigenvalues_of_a_network_match_the_exact_projected_hessian():
    model, x, y, mask = _mlp(torch.float64)
    php, names = _exact_php(model, x, y, mask)
    keep = torch.cat([mask[n].flatten() if n in mask else torch.ones(dict(model.named_parameters())[n].numel(),
                                                                      dtype=torch.bool) for n in names])
    eigenvalues = torch.linalg.eigvalsh(php[keep][:, keep])
    hvp, params = hessian_vector_product(model, mask, x, y)
    found = extreme_eigenvalues(hvp, params, mask, iterations=1000, tolerance=1e-10,
                                generator=torch.Generator().manual_seed(0))
    assert found.converged
    assert math.isclose(found.largest, float(eigenvalues[-1]), rel_tol=1e-6)
    assert math.isclose(found.smallest, float(eigenvalues[0]), rel_tol=1e-6, abs_tol=1e-9)


def test_the_extreme_eigenvalues_are_seeded():
    model, x, y, mask = _mlp(torch.float64)
    hvp, params = hessian_vector_product(model, mask, x, y)

    def run(seed):
        return extreme_eigenvalues(hvp, params, mask, iterations=1000, tolerance=1e-10,
                                   generator=torch.Generator().manual_seed(seed))

    assert run(0) == run(0)


def test_hutchinson_is_exact_for_a_diagonal_matrix():
    # For diagonal D, z^T D z = trace(D) for every Rademacher z: no variance at all.
    kept = torch.tensor([True, False, True, True, False])
    hvp, like = _matrix_hvp(torch.diag(torch.tensor([1.0, 100.0, -2.0, 3.5, 7.0], dtype=torch.float64)), kept)
    mean, error = hutchinson_trace(hvp, like, {"w": kept}, samples=5, generator=torch.Generator().manual_seed(0))
    assert mean == pytest.approx(2.5, abs=1e-12)
    assert error == pytest.approx(0.0, abs=1e-12)


def test_hutchinson_trace_of_a_network_is_within_three_standard_errors_of_the_exact_trace():
    model, x, y, mask = _mlp(torch.float64)
    php, _ = _exact_php(model, x, y, mask)
    hvp, params = hessian_vector_product(model, mask, x, y)
    mean, error = hutchinson_trace(hvp, params, mask, samples=1000, generator=torch.Generator().manual_seed(0))
    exact = float(torch.trace(php))
    assert error > 0
    assert abs(mean - exact) < 3 * error
    # The standard error is the right size: the exact variance of z^T A z for Rademacher z is 2 sum_{i != j} A_ij^2
    # over the kept coordinates (pruned ones are zero rows and columns of P H P).
    off_diagonal = php - torch.diag(torch.diag(php))
    expected_error = math.sqrt(2 * float((off_diagonal ** 2).sum()) / 1000)
    assert error == pytest.approx(expected_error, rel=0.15)


def test_hutchinson_needs_two_samples():
    hvp, like = _matrix_hvp(torch.eye(3, dtype=torch.float64), torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError):
        hutchinson_trace(hvp, like, {}, samples=1, generator=torch.Generator())


def test_sharpness_on_digits_is_deterministic_and_consistent(digits):
    torch.manual_seed(0)
    model = build_model(ModelSpec(width=8, depth=2, norm="batchnorm"), (1, 8, 8), 10)
    mask = _random_mask(model, 0.5, 0)
    apply_mask(model, mask)
    batch = TensorSet(digits.train.x[:128], digits.train.y[:128])
    first = sharpness(model, mask, batch, device=CPU, iterations=30, samples=4, seed=3)
    assert isinstance(first, Sharpness)
    assert first == sharpness(model, mask, batch, device=CPU, iterations=30, samples=4, seed=3)
    assert first.eigen_iterations >= 1 and first.trace_samples == 4
    assert first.bottom_eigenvalue <= first.top_eigenvalue
    assert first.trace_std_error > 0
    other = sharpness(model, mask, batch, device=CPU, iterations=30, samples=4, seed=4)
    assert other.trace != first.trace


# ------------------------------------------------------------------------------------------ landscape directions


def _convnet_weights(seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(ModelSpec(width=8, depth=2, norm="batchnorm"), (1, 8, 8), 10)
    mask = _random_mask(model, 0.5, seed)
    mask["features.0.weight"][3] = False  # one filter pruned entirely
    weights = {n: p.detach() for n, p in model.named_parameters()}
    return weights, mask


def test_filter_normalised_direction_has_the_masked_filter_norms():
    weights, mask = _convnet_weights()
    before = {n: w.clone() for n, w in weights.items()}
    direction = filter_normalised_direction(weights, mask, torch.Generator().manual_seed(0))
    assert set(direction) == set(weights)
    for name, w in weights.items():
        d = direction[name]
        assert d.shape == w.shape and d.dtype == w.dtype
        if w.dim() == 1:
            assert torch.count_nonzero(d) == 0  # biases and norm parameters stay put
            continue
        assert torch.count_nonzero(d[~mask[name]]) == 0
        for f in range(w.shape[0]):
            expected = float((w[f] * mask[name][f]).norm())
            assert float(d[f].norm()) == pytest.approx(expected, rel=1e-5, abs=1e-7)
    assert torch.count_nonzero(direction["features.0.weight"][3]) == 0
    for name, w in weights.items():  # pure
        assert torch.equal(w, before[name])


def test_filter_normalised_directions_depend_on_the_generator_alone():
    weights, mask = _convnet_weights()
    a = filter_normalised_direction(weights, mask, torch.Generator().manual_seed(0))
    b = filter_normalised_direction(weights, mask, torch.Generator().manual_seed(1))
    again = filter_normalised_direction(weights, mask, torch.Generator().manual_seed(0))
    assert all(torch.equal(a[n], again[n]) for n in a)
    assert not torch.equal(a["features.0.weight"], b["features.0.weight"])
    # Two draws are close to orthogonal, as Li et al. rely on.
    flat_a = torch.cat([t.flatten() for t in a.values()])
    flat_b = torch.cat([t.flatten() for t in b.values()])
    assert abs(float(F.cosine_similarity(flat_a, flat_b, dim=0))) < 0.3


def test_grid():
    assert grid(5, 1.0) == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert grid(3, 0.25) == [-0.25, 0.0, 0.25]
    assert grid(21, 1.0)[10] == 0.0 and len(grid(21, 1.0)) == 21
    for size in (1, 2, 4):
        with pytest.raises(ValueError):
            grid(size, 1.0)
    with pytest.raises(ValueError):
        grid(5, 0.0)


# ------------------------------------------------------------------------------------------------ landscape plane


@pytest.fixture(scope="module")
def trained(digits):
    """A pruned BatchNorm ConvNet trained briefly on digits, with its masked state and two directions."""
    torch.manual_seed(0)
    model = build_model(ModelSpec(width=8, depth=2, norm="batchnorm"), (1, 8, 8), 10)
    mask = _random_mask(model, 0.5, 0)
    apply_mask(model, mask)
    train(model, digits.train, TrainingSpec(epochs=4, batch_size=64, lr=0.05, weight_decay=0.0), device=CPU,
          seed=0, mask=mask)
    center = capture_state(model)
    parameters = {n for n, _ in model.named_parameters()}
    weights = {n: t for n, t in center.items() if n in parameters}
    directions = tuple(filter_normalised_direction(weights, mask, torch.Generator().manual_seed(s)) for s in (1, 2))
    test = TensorSet(digits.test.x[:300], digits.test.y[:300])
    return model, mask, center, directions, test


def test_plane_center_is_the_evaluated_center(trained):
    model, mask, center, directions, test = trained
    rows = plane(model, center, mask, directions, grid(3, 0.5), test, device=CPU)
    assert [(a, b) for a, b, _, _ in rows] == [(a, b) for a in grid(3, 0.5) for b in grid(3, 0.5)]
    model.load_state_dict(center)
    accuracy, loss = evaluate(model, test, device=CPU)
    assert rows[4] == (0.0, 0.0, loss, accuracy)
    # The model ends at the center.
    for name, t in capture_state(model).items():
        assert torch.equal(t, center[name])


def test_plane_keeps_pruned_weights_zero_and_buffers_as_in_the_center(trained):
    model, mask, center, directions, test = trained
    seen = []

    def recompute_batchnorm(m: nn.Module) -> None:
        seen.append(capture_state(m))

    coordinates = grid(3, 1.0)
    plane(model, center, mask, directions, coordinates, test, device=CPU, recompute_batchnorm=recompute_batchnorm)
    assert len(seen) == 9
    for state, (a, b) in zip(seen, [(a, b) for a in coordinates for b in coordinates]):
        for name, m in mask.items():
            assert torch.count_nonzero(state[name][~m]) == 0
        for name, t in state.items():
            if name in directions[0]:
                expected = (center[name] + a * directions[0][name] + b * directions[1][name])
                assert torch.allclose(t, expected, atol=1e-6)
            else:  # buffers: running statistics and counters
                assert torch.equal(t, center[name])
    # Directions from elsewhere, not zero where the mask prunes, are masked as they are added.
    generator = torch.Generator().manual_seed(5)
    raw = tuple({n: torch.randn(d.shape, generator=generator) for n, d in directions[0].items()} for _ in range(2))
    seen.clear()
    plane(model, center, mask, raw, coordinates, test, device=CPU, recompute_batchnorm=recompute_batchnorm)
    assert len(seen) == 9
    for state in seen:
        for name, m in mask.items():
            assert torch.count_nonzero(state[name][~m]) == 0


def test_plane_loss_grows_away_from_a_trained_center(trained):
    model, mask, center, directions, test = trained
    rows = plane(model, center, mask, directions, grid(5, 1.0), test, device=CPU)
    by_point = {(a, b): (loss, accuracy) for a, b, loss, accuracy in rows}
    center_loss, center_accuracy = by_point[(0.0, 0.0)]
    assert center_accuracy > 0.5  # it did train
    edge = [loss for (a, b), (loss, _) in by_point.items() if max(abs(a), abs(b)) == 1.0]
    middle = [loss for (a, b), (loss, _) in by_point.items() if max(abs(a), abs(b)) == 0.5]
    assert sum(middle) / len(middle) > center_loss
    assert sum(edge) / len(edge) > sum(middle) / len(middle)


def test_plane_refuses_an_unmasked_center_and_a_callback_that_revives_pruned_weights(trained):
    model, mask, center, directions, test = trained
    name = next(iter(mask))
    unmasked = dict(center)
    unmasked[name] = center[name] + 1.0
    with pytest.raises(ValueError, match="not masked"):
        plane(model, unmasked, mask, directions, [0.0], test, device=CPU)

    def revive(m: nn.Module) -> None:
        with torch.no_grad():
            dict(m.named_parameters())[name].fill_(1.0)

    with pytest.raises(RuntimeError, match="revived"):
        plane(model, center, mask, directions, [0.0], test, device=CPU, recompute_batchnorm=revive)
    for key, t in capture_state(model).items():
        assert torch.equal(t, center[key])


# ------------------------------------------------------------------------------------------ measurement subsets


def test_measurement_subsets_are_stratified_seeded_draws_even_from_a_class_sorted_split(digits):
    """ImageFolder splits are stored class by class: their first examples are one or two classes. The subsets the
    analyses measure on hold every class in its share, the same for every caller with the sweep's seed."""
    from dpcluster.data.base import measurement_subset

    order = torch.argsort(digits.train.y, stable=True)
    by_class = TensorSet(digits.train.x[order], digits.train.y[order])
    first = by_class.y[:140]
    assert len(torch.unique(first)) <= 2  # what the first examples of such a split are
    subset = measurement_subset(by_class, 140, seed=0)
    counts = torch.bincount(subset.y, minlength=10)
    shares = torch.bincount(by_class.y, minlength=10).double() * 140 / len(by_class)
    assert len(subset) == 140 and (counts - shares).abs().max() < 1
    assert len(torch.unique(subset.y[:40])) >= 8, "classes are mixed through the subset, not in blocks"
    again = measurement_subset(by_class, 140, seed=0)
    assert torch.equal(again.x, subset.x) and torch.equal(again.y, subset.y)
    assert not torch.equal(measurement_subset(by_class, 140, seed=1).y, subset.y)
    assert len(measurement_subset(by_class, None, seed=0)) == len(by_class)


def test_batchnorm_recomputed_on_a_stratified_subset_recovers_the_network_first_examples_break(digits):
    """The issue's measurement: BatchNorm statistics recomputed on the first 140 examples of a class-sorted split
    cost the network accuracy; on a stratified subset of the same size they do not."""
    from dpcluster.analyses.interpolation import recompute_batchnorm
    from dpcluster.data.base import measurement_subset
    from dpcluster.specs import TrainingSpec
    from dpcluster.training.loop import evaluate, train

    torch.manual_seed(0)
    model = build_model(ModelSpec(width=16, depth=2, norm="batchnorm"), (1, 8, 8), 10)
    train(model, digits.train, TrainingSpec(lr=0.05, epochs=5, batch_size=128), device=CPU, seed=0)
    order = torch.argsort(digits.train.y, stable=True)
    by_class = TensorSet(digits.train.x[order], digits.train.y[order])
    recompute_batchnorm(model, TensorSet(by_class.x[:140], by_class.y[:140]), CPU)
    skewed, _ = evaluate(model, digits.test, device=CPU)
    recompute_batchnorm(model, measurement_subset(by_class, 140, seed=0), CPU)
    fair, _ = evaluate(model, digits.test, device=CPU)
    assert fair > 0.9 and fair > skewed + 0.03, (fair, skewed)
