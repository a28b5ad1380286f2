"""Differentiable siamese augmentation (DSA) and ZCA whitening."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dpcluster.data import DataBundle, TensorSet, load_data
from dpcluster.data import zca as zca_module
from dpcluster.data.augment import KINDS, augment, resolve_augmentation
from dpcluster.data.dsa import (DSA_STRATEGY, NOFLIP_STRATEGY, TRANSFORMS, brightness, color, contrast, crop_shift,
                                cutout, cutout_size, dsa, flip, rotate, saturation, scale, strategy_parts, translate)
from dpcluster.data.zca import ZCA
from dpcluster.errors import SpecError
from dpcluster.errors import UserError
from dpcluster.specs.experiment import AUGMENTATIONS, DataSpec
from fakedata import make_cifar10, make_imagefolder, numbered, shift

PARTS = ("color", "crop", "cutout", "flip", "scale", "rotate")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)




def same_state(generator: torch.Generator) -> torch.Generator:
    twin = torch.Generator()
    twin.set_state(generator.get_state())
    return twin


# --- DSA: the whole call --------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(6, 1, 8, 8), (4, 3, 32, 32), (3, 2, 12, 10)])
@pytest.mark.parametrize("part", PARTS)
def test_each_part_keeps_shape_dtype_and_passes_gradients(shape, part):
    x = torch.randn(shape, requires_grad=True)
    out = dsa(x, torch.Generator().manual_seed(0), part)
    assert out.shape == x.shape and out.dtype == x.dtype and out.is_contiguous()
    (out * torch.randn(shape)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert torch.isfinite(x.grad).all()


def test_full_strategy_keeps_shape_and_passes_gradients():
    for seed in range(12):
        x = torch.randn(5, 3, 16, 16, requires_grad=True)
        out = dsa(x, torch.Generator().manual_seed(seed))
        assert out.shape == x.shape and out.dtype == torch.float32
        out.square().sum().backward()
        assert x.grad.abs().sum() > 0


def test_float64_is_kept():
    x = torch.randn(3, 2, 8, 8, dtype=torch.float64)
    for part in PARTS:
        assert dsa(x, torch.Generator().manual_seed(1), part).dtype == torch.float64


def test_one_transform_is_chosen_per_call(monkeypatch):
    chosen = []
    for name in PARTS:
        monkeypatch.setitem(TRANSFORMS, name, lambda x, draw, name=name: chosen.append(name) or x)
    g = torch.Generator().manual_seed(0)
    for calls in range(1, 301):
        dsa(torch.zeros(2, 1, 4, 4), g)
        assert len(chosen) == calls
    counts = {name: chosen.count(name) for name in PARTS}
    assert all(20 < count < 80 for count in counts.values()), counts  # about 50 each: a uniform choice


def test_same_generator_state_gives_the_same_augmentation():
    x = torch.randn(8, 3, 16, 16)
    for seed in range(20):
        g1 = torch.Generator().manual_seed(seed)
        g2 = same_state(g1)
        assert torch.equal(dsa(x, g1), dsa(x, g2))
        # The generators stay in step afterwards.
        assert torch.equal(g1.get_state(), g2.get_state())


def test_siamese_two_batches_get_the_same_transform_per_sample():
    """Real and synthetic batches of one size augmented from one generator state: sample i of each gets the same
    transform, so where the images agree the outputs agree, for every part of the strategy."""
    real = torch.randn(6, 3, 16, 16)
    syn = torch.randn(6, 3, 16, 16, requires_grad=True)
    with torch.no_grad():
        syn[:3] = real[:3]
    for seed in range(30):
        g = torch.Generator().manual_seed(seed)
        twin = same_state(g)
        out_real, out_syn = dsa(real, g), dsa(syn, twin)
        torch.testing.assert_close(out_syn[:3], out_real[:3], rtol=0, atol=1e-6)
    out_syn.sum().backward()
    assert syn.grad.abs().sum() > 0


def test_different_seeds_give_different_augmentations():
    x = torch.randn(8, 3, 16, 16)
    outputs = [dsa(x, torch.Generator().manual_seed(seed)) for seed in range(10)]
    distinct = {tuple(o.flatten()[:50].tolist()) for o in outputs}
    assert len(distinct) >= 8
    g = torch.Generator().manual_seed(0)
    successive = [dsa(x, g) for _ in range(5)]
    assert not all(torch.equal(successive[0], o) for o in successive[1:])


def test_parameters_differ_between_samples_unless_shared():
    x = torch.randn(1, 3, 16, 16).expand(8, 3, 16, 16).contiguous()
    for part in ("color", "crop", "cutout", "scale", "rotate"):
        out = dsa(x, torch.Generator().manual_seed(0), part)
        assert not all(torch.equal(out[0], o) for o in out[1:]), part
        shared = dsa(x, torch.Generator().manual_seed(0), part, shared=True)
        assert all(torch.equal(shared[0], o) for o in shared[1:]), part
        assert not torch.equal(shared[0], x[0]), part


def test_strategies_and_unknown_parts():
    assert strategy_parts(DSA_STRATEGY) == PARTS
    assert strategy_parts(NOFLIP_STRATEGY) == tuple(p for p in PARTS if p != "flip")
    assert strategy_parts("none") == () and strategy_parts("crop") == ("crop",)
    x = torch.randn(2, 1, 8, 8)
    assert dsa(x, torch.Generator(), "none") is x
    with pytest.raises(ValueError, match="blur"):
        dsa(x, torch.Generator(), "crop_blur")
    with pytest.raises(ValueError):
        dsa(torch.randn(1, 8, 8), torch.Generator())


# --- DSA: each transform with fixed parameters ----------------------------------------------------------------

def test_flip_mirrors_the_chosen_samples():
    x = numbered(3, 2, 5, 6)
    out = flip(x, torch.tensor([True, False, True]))
    assert torch.equal(out[0], x[0].flip(2)) and torch.equal(out[1], x[1]) and torch.equal(out[2], x[2].flip(2))


@pytest.mark.parametrize("dy, dx", [(0, 0), (2, 0), (0, -3), (-1, 4), (7, 0)])
def test_translate_shifts_content_with_zero_fill(dy, dx):
    x = numbered(2, 3, 8, 9)
    out = translate(x, torch.tensor([dy, 0]), torch.tensor([dx, 0]))
    assert torch.equal(out[0], shift(x[0], dy, dx))
    assert torch.equal(out[1], x[1])


@pytest.mark.parametrize("size, pad", [(32, 4), (8, 1), (16, 2)])
def test_random_crop_is_a_shift_within_one_eighth(size, pad):
    assert crop_shift(size) == pad
    x = numbered(40, 1, size, size)
    out = dsa(x, torch.Generator().manual_seed(0), "crop")
    found = []
    for o, i in zip(out, x):
        shifts = [(dy, dx) for dy in range(-pad, pad + 1) for dx in range(-pad, pad + 1)
                  if torch.equal(o, shift(i, dy, dx))]
        assert len(shifts) == 1
        found.append(shifts[0])
    assert len(set(found)) > 3


def test_cutout_zeroes_a_square_of_the_expected_size():
    x = torch.ones(2, 3, 8, 8)
    out = cutout(x, torch.tensor([2, -1]), torch.tensor([3, 6]), (4, 4))
    expected = torch.ones(8, 8)
    expected[2:6, 3:7] = 0
    assert torch.equal(out[0], expected.expand(3, 8, 8))
    clipped = torch.ones(8, 8)
    clipped[0:3, 6:8] = 0  # the square reaches past the top and the right border
    assert torch.equal(out[1], clipped.expand(3, 8, 8))


def test_random_cutout_is_half_the_size():
    assert cutout_size(32) == 16 and cutout_size(8) == 4
    x = torch.ones(64, 2, 32, 32)
    out = dsa(x, torch.Generator().manual_seed(0), "cutout")
    whole = 0
    for image in out:
        zero = image[0] == 0
        assert torch.equal(image[0], image[1])
        rows, cols = zero.any(1).nonzero().flatten(), zero.any(0).nonzero().flatten()
        height, width = len(rows), len(cols)
        assert 8 <= height <= 16 and 8 <= width <= 16  # clipped at a border by at most half
        assert int(zero.sum()) == height * width  # one rectangle, contiguous
        assert rows[-1] - rows[0] + 1 == height and cols[-1] - cols[0] + 1 == width
        whole += height == 16 and width == 16
    assert whole > 10


def test_rotate_and_scale_identities_and_exact_cases():
    x = torch.randn(3, 2, 9, 9)
    torch.testing.assert_close(rotate(x, torch.zeros(3)), x, rtol=0, atol=1e-5)
    torch.testing.assert_close(scale(x, torch.ones(3), torch.ones(3)), x, rtol=0, atol=1e-5)
    # A quarter turn (anticlockwise as printed) and a scale of -1 on the width axis are exact pixel permutations.
    torch.testing.assert_close(rotate(x, torch.full((3,), math.pi / 2)), torch.rot90(x, 1, (2, 3)),
                               rtol=0, atol=1e-5)
    torch.testing.assert_close(scale(x, -torch.ones(3), torch.ones(3)), x.flip(3), rtol=0, atol=1e-5)
    torch.testing.assert_close(scale(x, torch.ones(3), -torch.ones(3)), x.flip(2), rtol=0, atol=1e-5)
    # Scale above 1 shrinks the content: the border becomes zero.
    shrunk = scale(torch.ones(1, 1, 9, 9), torch.tensor([1.2]), torch.tensor([1.2]))
    assert shrunk[0, 0, 0, 0] < 1 and shrunk[0, 0, 4, 4] == pytest.approx(1.0)


def test_random_rotation_stays_within_fifteen_degrees():
    # A centred bright dot on the x axis moves along a circle; its angle is the rotation.
    x = torch.zeros(32, 1, 65, 65)
    x[:, 0, 32, 62] = 1.0
    out = dsa(x, torch.Generator().manual_seed(0), "rotate")
    angles = []
    for image in out[:, 0]:
        weights = image / image.sum()
        rows, cols = torch.meshgrid(torch.arange(65.0), torch.arange(65.0), indexing="ij")
        y, xx = float((weights * (rows - 32)).sum()), float((weights * (cols - 32)).sum())
        angles.append(math.degrees(math.atan2(y, xx)))
    assert all(abs(a) <= 15.5 for a in angles) and max(angles) - min(angles) > 10


def test_color_transforms():
    x = torch.randn(2, 3, 5, 5)
    zero, one = torch.zeros(2), torch.ones(2)
    torch.testing.assert_close(color(x, zero, one, one), x)
    torch.testing.assert_close(brightness(x, torch.tensor([0.25, -0.5])),
                               x + torch.tensor([0.25, -0.5]).view(2, 1, 1, 1))
    grey = saturation(x, zero)
    torch.testing.assert_close(grey, x.mean(1, keepdim=True).expand_as(x))
    flat = contrast(x, zero)
    torch.testing.assert_close(flat, x.mean((1, 2, 3), keepdim=True).expand_as(x))
    doubled = contrast(x, 2 * one)
    torch.testing.assert_close(doubled - doubled.mean((1, 2, 3), keepdim=True),
                               2 * (x - x.mean((1, 2, 3), keepdim=True)))
    # One channel: saturation has nothing to act on.
    gray = torch.randn(2, 1, 4, 4)
    torch.testing.assert_close(saturation(gray, torch.tensor([0.0, 2.0])), gray)


def test_random_color_ranges():
    x = torch.zeros(200, 1, 4, 4)
    out = dsa(x, torch.Generator().manual_seed(0), "color")
    shifts = out[:, 0, 0, 0]
    assert torch.allclose(out, shifts.view(-1, 1, 1, 1).expand_as(out))  # a constant image stays constant
    assert shifts.min() >= -0.5 and shifts.max() <= 0.5 and shifts.max() - shifts.min() > 0.8


# --- DSA in augment -------------------------------------------------------------------------------------------

def test_augment_runs_dsa():
    assert {"dsa", "dsa_noflip"} <= set(KINDS) and set(KINDS) == set(AUGMENTATIONS)
    x = torch.randn(4, 3, 8, 8)
    for seed in range(6):
        g = torch.Generator().manual_seed(seed)
        assert torch.equal(augment(x, "dsa", g), dsa(x, torch.Generator().manual_seed(seed), DSA_STRATEGY))
        twin = same_state(g)
        assert torch.equal(augment(x, "dsa_noflip", g), dsa(x, twin, NOFLIP_STRATEGY))


def test_dsa_noflip_never_flips_and_dsa_does(monkeypatch):
    flips = []
    monkeypatch.setitem(TRANSFORMS, "flip", lambda x, draw: flips.append(1) or x)
    g = torch.Generator().manual_seed(0)
    x = numbered(2, 1, 8, 8)
    for _ in range(200):
        augment(x, "dsa_noflip", g)
    assert not flips
    for _ in range(60):
        augment(x, "dsa", g)
    assert flips


def test_dsa_noflip_keeps_an_asymmetric_image_unmirrored():
    """With only flip-like transforms left, no draw of "dsa_noflip" ever mirrors: the left half stays brighter."""
    x = torch.zeros(16, 1, 16, 16)
    x[..., :5] = 1.0
    g = torch.Generator().manual_seed(0)
    for _ in range(100):
        out = augment(x, "dsa_noflip", g)
        left, right = out[..., :8].sum((1, 2, 3)), out[..., 8:].sum((1, 2, 3))
        assert (left > right).all() or torch.allclose(left, right)  # equal only for a flat (contrast 0) image
    mirrored = 0
    for _ in range(60):
        out = augment(x, "dsa", g)
        mirrored += int((out[..., 8:].sum((1, 2, 3)) > out[..., :8].sum((1, 2, 3)) + 1).any())
    assert mirrored


def bundle(name: str) -> DataBundle:
    empty = TensorSet(torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.int64))
    return DataBundle(name=name, num_classes=10, input_shape=(1, 8, 8), mean=(0.0,), std=(1.0,),
                      class_names=tuple("0123456789"), train=empty, test=empty)


def test_resolve_augmentation():
    digits, cifar = bundle("digits"), bundle("cifar10")
    assert not digits.mirror_safe and cifar.mirror_safe and bundle("imagenette").mirror_safe
    assert resolve_augmentation("auto", digits) == "dsa_noflip"
    assert resolve_augmentation("auto", cifar) == "dsa"
    for kind in ("none", "crop", "dsa", "dsa_noflip"):
        assert resolve_augmentation(kind, digits) == kind
    assert digits.zca is False


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_dsa_on_cuda_matches_cpu():
    x = torch.randn(8, 3, 32, 32)
    for seed in range(12):
        on_gpu = dsa(x.cuda(), torch.Generator().manual_seed(seed))
        assert on_gpu.device.type == "cuda"
        torch.testing.assert_close(on_gpu.cpu(), dsa(x, torch.Generator().manual_seed(seed)), rtol=0, atol=1e-4)
    syn = x.cuda().requires_grad_()
    dsa(syn, torch.Generator().manual_seed(0), "rotate").sum().backward()
    assert syn.grad.abs().sum() > 0


# --- ZCA --------------------------------------------------------------------------------------------------------

def correlated(n: int, seed: int = 0) -> torch.Tensor:
    """``n`` images (3, 2, 2) with strongly correlated pixels and covariance eigenvalues well above 1e-5."""
    g = torch.Generator().manual_seed(seed)
    mixing = torch.randn(12, 12, generator=g) + 2 * torch.eye(12)
    return (torch.randn(n, 12, generator=g) @ mixing + 3.0).view(n, 3, 2, 2)


def covariance(x: torch.Tensor) -> torch.Tensor:
    flat = x.reshape(x.shape[0], -1).double()
    flat = flat - flat.mean(0)
    return flat.T @ flat / (flat.shape[0] - 1)


def test_whitened_training_data_has_identity_covariance():
    x = correlated(3000)
    assert (covariance(x) - torch.eye(12, dtype=torch.float64)).abs().max() > 1  # correlated before
    zca = ZCA.fit(x, regularization=1e-5)
    white = zca.apply(x)
    assert white.shape == x.shape and white.dtype == torch.float32
    torch.testing.assert_close(covariance(white), torch.eye(12, dtype=torch.float64), rtol=0, atol=1e-3)
    assert white.reshape(3000, -1).mean(0).abs().max() < 1e-4


def test_fit_matches_kornias_formula():
    x = correlated(500, seed=1)
    flat = x.reshape(500, -1).double()
    centred = flat - flat.mean(0, keepdim=True)
    cov = centred.T @ centred / (500 - 1)
    u, s, _ = torch.linalg.svd(cov)
    expected = u @ torch.diag(1 / torch.sqrt(s + 0.1)) @ u.T
    zca = zca_module.fit(x)  # regularization 0.1 by default
    torch.testing.assert_close(zca.transform.double(), expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(zca.mean.double(), flat.mean(0), rtol=0, atol=1e-5)
    # The regularization keeps small directions from being blown up: eigenvalues S / (S + 0.1) < 1.
    white_cov = torch.linalg.eigvalsh(covariance(zca.apply(x)))
    torch.testing.assert_close(white_cov, torch.sort(s / (s + 0.1)).values, rtol=1e-4, atol=1e-6)


def test_fit_matches_a_closed_form_on_a_diagonal_covariance():
    # Four "images" of two pixels, +-a along the first and +-b along the second: the mean is 0 and the unbiased
    # covariance is diag(2a^2, 2b^2) / 3, so W = diag(1 / sqrt(2a^2 / 3 + 0.1), 1 / sqrt(2b^2 / 3 + 0.1)).
    a, b = 3.0, 0.5
    x = torch.tensor([[a, 0.0], [-a, 0.0], [0.0, b], [0.0, -b]], dtype=torch.float64).view(4, 1, 1, 2)
    zca = ZCA.fit(x, regularization=0.1)
    expected = torch.diag(torch.tensor([(2 * a * a / 3 + 0.1) ** -0.5, (2 * b * b / 3 + 0.1) ** -0.5],
                                       dtype=torch.float64))
    torch.testing.assert_close(zca.transform, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(zca.mean, torch.zeros(2, dtype=torch.float64))
    # The regularized whitening leaves each axis with variance S / (S + 0.1), below 1.
    white = zca.apply(x).view(4, 2)
    torch.testing.assert_close(white[0, 0], torch.tensor(a * (2 * a * a / 3 + 0.1) ** -0.5, dtype=torch.float64))


def test_fit_matches_an_independent_numpy_svd_with_kornias_semantics():
    # kornia's zca_mean: unbiased covariance of the centred, flattened images; U, S from an SVD of it; eps added
    # to the singular values; T = U diag(1 / sqrt(S + eps)) U^T; x -> (x - mean) T. Computed here in numpy.
    rng = np.random.default_rng(7)
    pixels = rng.random((40, 3, 2, 2)) ** 2  # [0, 1] pixels, correlated through the square of uniform noise
    flat = pixels.reshape(40, -1)
    centred = flat - flat.mean(axis=0)
    u, s, _ = np.linalg.svd(np.cov(flat, rowvar=False, ddof=1))
    transform = u @ np.diag(1.0 / np.sqrt(s + 0.1)) @ u.T
    zca = ZCA.fit(torch.from_numpy(pixels).float())
    np.testing.assert_allclose(zca.transform.double().numpy(), transform, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(zca.apply(torch.from_numpy(pixels).float()).reshape(40, -1).double().numpy(),
                               centred @ transform, rtol=1e-4, atol=1e-5)


def test_apply_is_one_affine_map_for_train_and_test():
    train, test = correlated(400, seed=2), correlated(7, seed=3)
    zca = ZCA.fit(train)
    assert torch.allclose(zca.transform, zca.transform.T, atol=1e-6)
    out = zca.apply(test)
    assert out.shape == test.shape
    torch.testing.assert_close(out.reshape(7, -1), (test.reshape(7, -1) - zca.mean) @ zca.transform)
    both = zca.apply(torch.cat([train, test]))
    torch.testing.assert_close(both, torch.cat([zca.apply(train), out]))
    a, b = test[:3], test[3:6]
    # Affine: the map of a midpoint is the midpoint of the maps.
    torch.testing.assert_close(zca.apply((a + b) / 2), (zca.apply(a) + zca.apply(b)) / 2, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(zca.invert(out), test, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError):
        zca.apply(torch.randn(2, 1, 3, 3))
    with pytest.raises(ValueError):
        ZCA.fit(train[:1])


def test_apply_in_blocks_matches_one_shot(monkeypatch):
    x = correlated(50, seed=4)
    zca = ZCA.fit(x)
    whole = zca.apply(x)
    monkeypatch.setattr(zca_module, "_BLOCK_VALUES", 12 * 7)  # 7 rows at a time, in fit and apply
    torch.testing.assert_close(ZCA.fit(x).transform, zca.transform, rtol=1e-5, atol=1e-6)
    y = x.clone().requires_grad_()
    blocked = zca.apply(y)
    torch.testing.assert_close(blocked, whole)
    blocked.sum().backward()
    assert y.grad.abs().sum() > 0


def test_load_data_whitens_digits_as_mtt_on_raw_pixels():
    plain = load_data(DataSpec())
    white = load_data(DataSpec(zca=True))
    assert white.zca is True and plain.zca is False
    assert white.train.x.shape == plain.train.x.shape and torch.equal(white.train.y, plain.train.y)
    assert not torch.allclose(white.train.x, plain.train.x, atol=0.1)
    # MTT fits on [0, 1] pixels (ToTensor, no Normalize): the digits' pixels are value / 16.
    raw = plain.train.x * plain.std[0] + plain.mean[0]
    assert float(raw.min()) > -1e-6 and float(raw.max()) < 1 + 1e-6
    expected = ZCA.fit(raw)
    torch.testing.assert_close(white.train.x, expected.apply(raw), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(white.test.x, expected.apply(plain.test.x * plain.std[0] + plain.mean[0]),
                               rtol=1e-4, atol=1e-4)  # fitted on train only
    # Not what fitting on the normalized images gives: there the same 0.1 whitens far harder.
    harder = ZCA.fit(plain.train.x).apply(plain.train.x)
    assert harder.std() > 1.3 * white.train.x.std()
    # Whitened images are not normalized pixels: the identity normalization, so nothing renormalizes them.
    assert white.mean == (0.0,) and white.std == (1.0,)
    loader = load_data(DataSpec(zca=True, placement="loader"))  # still in memory behind the Dataset
    assert loader.zca is True
    torch.testing.assert_close(loader.train[3][0], white.train.x[3])


def test_load_data_fits_cifar_zca_on_unnormalized_pixels(tmp_path, monkeypatch):
    written = make_cifar10(tmp_path, n_train_per_batch=2, n_test=3)
    fitted_on = []

    def spy(x, regularization):
        # Decomposing a 3072 x 3072 covariance takes ~15 s on one core; a stand-in ZCA (the images' mean and
        # half the identity) is enough to see what load_data fits on and how it applies the result.
        fitted_on.append((x.clone(), regularization))
        return ZCA(x.reshape(len(x), -1).mean(0), torch.eye(x[0].numel()) * 0.5)

    monkeypatch.setattr(zca_module, "fit", spy)
    data = load_data(DataSpec(name="cifar10", root=str(tmp_path), zca=True))
    (x, regularization), = fitted_on
    assert regularization == 0.1
    raw = torch.from_numpy(written["train_x"]).permute(0, 3, 1, 2).float() / 255.0
    torch.testing.assert_close(x, raw, rtol=0, atol=1e-6)  # [0, 1] pixels, not (pixel - mean) / std
    raw_test = torch.from_numpy(written["test_x"]).permute(0, 3, 1, 2).float() / 255.0
    mean = raw.reshape(10, -1).mean(0)
    torch.testing.assert_close(data.train.x.reshape(10, -1), (raw.reshape(10, -1) - mean) * 0.5, rtol=0, atol=1e-5)
    torch.testing.assert_close(data.test.x.reshape(3, -1), (raw_test.reshape(3, -1) - mean) * 0.5, rtol=0, atol=1e-5)
    assert data.zca and data.mean == (0.0, 0.0, 0.0) and data.std == (1.0, 1.0, 1.0)


def test_zca_on_an_imagefolder(tmp_path):
    classes = ("n00000001", "n00000002")
    make_imagefolder(tmp_path, classes, n_per_class=3, size=10)
    spec = dict(name="imagenet", root=str(tmp_path), classes=classes, resolution=8, workers=0, zca=True)
    with pytest.raises(UserError, match="placement") as info:
        load_data(DataSpec(**spec, placement="loader"))
    assert "\n" not in str(info.value) and "device" in str(info.value)
    for placement in ("device", "auto"):
        data = load_data(DataSpec(**spec, placement=placement))
        assert data.zca is True and isinstance(data.train, TensorSet) and data.train.x.shape == (6, 3, 8, 8)
    with pytest.raises(UserError, match="ZCA") as info:
        load_data(DataSpec(**{**spec, "resolution": 128}, placement="device"))
    assert "\n" not in str(info.value)


# --- FRePo's and KIP's whitening spaces (data.zca = "frepo", "kip") ------------------------------------------------

def _frepo_upstream(train, test):
    """FRePo's lib/dataset/dataloader.py and ops.py, in NumPy on channels-last [0, 1] pixels: standardized per
    channel, zca_mean subtracted, whitening_transform from the SVD of cov + zca_reg * trace(cov) / d * I."""
    mean, std = train.mean(axis=(0, 1, 2)), train.std(axis=(0, 1, 2))
    x_train = ((train - mean) / std).reshape(len(train), -1)
    x_test = ((test - mean) / std).reshape(len(test), -1)
    zca_mean = x_train.mean(axis=0)
    centred = x_train - zca_mean
    cov = centred.T @ centred / len(x_train)
    reg_amount = 0.1 * np.trace(cov) / cov.shape[0]
    u, s, _ = np.linalg.svd(cov + reg_amount * np.eye(cov.shape[0]))
    whitening = np.einsum("ij,j,kj->ik", u, s ** (-1 / 2), u)
    return (x_train - zca_mean) @ whitening, (x_test - zca_mean) @ whitening


def _kip_upstream(train, test):
    """KIP's nn_training.ipynb ``zca_normalize``: standardized per channel, each image less its mean and over its
    norm (layer_norm), whitening_transform from cov = X^T X / n (not centred) + zca_reg * trace(cov) / d * I."""
    mean, std = train.mean(axis=(0, 1, 2)), train.std(axis=(0, 1, 2))

    def layer_norm(images):
        images = ((images - mean) / std).reshape(len(images), -1)
        images = images - images.mean(axis=1)[:, np.newaxis]
        return images / np.linalg.norm(images, axis=1)[:, np.newaxis]

    x_train, x_test = layer_norm(train), layer_norm(test)
    cov = 1.0 / len(x_train) * x_train.T.dot(x_train)
    reg_amount = 0.1 * np.trace(cov) / cov.shape[0]
    u, s, _ = np.linalg.svd(cov + reg_amount * np.eye(cov.shape[0]))
    whitening = np.einsum("ij,j,kj->ik", u, s ** (-1 / 2), u)
    return x_train @ whitening, x_test @ whitening


@pytest.mark.parametrize("style, upstream", [("frepo", _frepo_upstream), ("kip", _kip_upstream)])
def test_frepo_and_kip_whitening_is_their_codes(style, upstream):
    """Our (N, C, H, W) whitening against their code's on the same pixels channels-last: ZCA commutes with the
    reordering of an image's values, so the outputs agree value for value once put back in the same order."""
    from dpcluster.data.zca import whiten

    rng = np.random.default_rng(0)
    train = rng.random((40, 4, 4, 3))
    test = rng.random((7, 4, 4, 3))
    ours_train, ours_test = whiten(torch.from_numpy(train).permute(0, 3, 1, 2).double(),
                                   torch.from_numpy(test).permute(0, 3, 1, 2).double(), style)
    theirs_train, theirs_test = upstream(train, test)
    for ours, theirs in ((ours_train, theirs_train), (ours_test, theirs_test)):
        theirs = torch.from_numpy(theirs).view(len(theirs), 4, 4, 3).permute(0, 3, 1, 2)
        torch.testing.assert_close(ours, theirs, rtol=1e-7, atol=1e-9)
    # Not MTT's: the same pixels whitened as MTT does land elsewhere.
    mtt_train, _ = whiten(torch.from_numpy(train).permute(0, 3, 1, 2).double(),
                          torch.from_numpy(test).permute(0, 3, 1, 2).double(), "mtt")
    assert (mtt_train - ours_train).abs().max() > 0.1


def test_data_zca_names_the_whitening_space(tmp_path):
    from dpcluster.specs import DataSpec

    assert DataSpec(zca="mtt") == DataSpec(zca=True) and DataSpec(zca=True).zca_style == "mtt"
    kip = load_data(DataSpec(zca="kip"))
    assert kip.zca and kip.zca_style == "kip" and kip.mean == (0.0,)
    assert DataSpec(zca="kip").content_hash() != DataSpec(zca=True).content_hash()
    with pytest.raises(SpecError, match="zca: must be true, false or one of mtt, frepo, kip"):
        DataSpec(zca="pca")
