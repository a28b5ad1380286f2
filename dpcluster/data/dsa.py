"""Differentiable Siamese Augmentation (DSA; Zhao & Bilen, "Dataset Condensation with Differentiable Siamese
Augmentation", ICML 2021), the augmentation DC, DM and MTT train and match with.

The transforms and their ranges are those of DSA's ``DiffAugment`` with its ``ParamDiffAug`` defaults, in its
single mode (``aug_mode = 'S'``, the one DC, DM and MTT use): each call picks ONE part of the strategy at random
and applies it to the whole batch, with random parameters per sample. The part "color" is three transforms applied
together (brightness, then saturation, then contrast).

Every transform is differentiable with respect to the images (indexing, masks, ``affine_grid``/``grid_sample``),
so gradients reach synthetic images through it, and fully batched. Random numbers are drawn on the CPU from the
caller's generator and only the small parameter tensors are moved to the images' device, so a generator state
gives the same draw on any device.

Siamese use: two calls whose generators are in the same state (``g2 = torch.Generator(); g2.set_state(
g1.get_state())``), on batches of the same size and image size, pick the same transform with the same parameters
for each sample. With ``shared=True`` a single draw is applied to every sample of the batch (DSA's seeded siamese
mode, in which all images of a batch get the first sample's parameters).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

DSA_STRATEGY = "color_crop_cutout_flip_scale_rotate"
NOFLIP_STRATEGY = "color_crop_cutout_scale_rotate"

# ParamDiffAug's defaults.
BRIGHTNESS = 1.0        # brightness: add U(-0.5, 0.5) * BRIGHTNESS
SATURATION = 2.0        # saturation: factor U(0, SATURATION)
CONTRAST = 0.5          # contrast: factor U(CONTRAST, CONTRAST + 1)
CROP_PAD_RATIO = 0.125  # crop: shift by up to round(size * ratio) pixels
CUTOUT_RATIO = 0.5      # cutout: a square of round(size * ratio) pixels
FLIP_PROB = 0.5
SCALE_RATIO = 1.2       # scale: factor U(1 / ratio, ratio) per axis
ROTATE_DEGREES = 15.0   # rotate: angle U(-15, 15) degrees


# --- the transforms with given per-sample parameters (each a (N,) tensor, on any device) -----------------------

def _per_sample(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return values.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)


def brightness(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Add ``shift[i]`` to every value of sample i."""
    return x + _per_sample(shift, x)


def saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Scale each pixel's deviation from its own channel mean by ``factor[i]`` (1: unchanged, 0: grey)."""
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * _per_sample(factor, x) + mean


def contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Scale each value's deviation from its image's mean (over channels and pixels) by ``factor[i]``."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _per_sample(factor, x) + mean


def color(x: torch.Tensor, shift: torch.Tensor, saturation_factor: torch.Tensor,
          contrast_factor: torch.Tensor) -> torch.Tensor:
    """DSA's "color": brightness, then saturation, then contrast. Neutral parameters are 0, 1, 1."""
    return contrast(saturation(brightness(x, shift), saturation_factor), contrast_factor)


def translate(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Shift sample i by integer ``dy[i]``, ``dx[i]``: ``out[i, :, r, c] = x[i, :, r + dy, c + dx]``, zero outside."""
    n, c, h, w = x.shape
    padded = F.pad(x, (1, 1, 1, 1))
    dy = dy.to(device=x.device, dtype=torch.long).view(n, 1, 1, 1)
    dx = dx.to(device=x.device, dtype=torch.long).view(n, 1, 1, 1)
    # Indices into the 1-pixel zero padding; anything falling outside the image lands on the padding.
    rows = (torch.arange(h, device=x.device).view(1, 1, h, 1) + dy + 1).clamp(0, h + 1)
    cols = (torch.arange(w, device=x.device).view(1, 1, 1, w) + dx + 1).clamp(0, w + 1)
    samples = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    channels = torch.arange(c, device=x.device).view(1, c, 1, 1)
    return padded[samples, channels, rows, cols]


def cutout(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Zero the ``size`` (height, width) rectangle at ``top[i]``, ``left[i]`` of sample i (clipped to the image)."""
    n, _, h, w = x.shape
    top = top.to(device=x.device, dtype=torch.long).view(n, 1, 1)
    left = left.to(device=x.device, dtype=torch.long).view(n, 1, 1)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (rows >= top) & (rows < top + size[0]) & (cols >= left) & (cols < left + size[1])
    return x * (~inside).unsqueeze(1).to(x.dtype)


def flip(x: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
    """Mirror left-right the samples where the boolean ``which[i]`` is true."""
    return torch.where(which.to(x.device).view(-1, 1, 1, 1), x.flip(3), x)


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    theta = theta.to(device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, align_corners=True)


def scale(x: torch.Tensor, sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    """Sample i read through the affine map diag(sx[i], sy[i]) (above 1 shrinks the content), zero outside."""
    theta = torch.zeros(x.shape[0], 2, 3)
    theta[:, 0, 0] = sx.detach().cpu()
    theta[:, 1, 1] = sy.detach().cpu()
    return _affine(x, theta)


def rotate(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate sample i by ``angle[i]`` radians about its centre, zero outside."""
    angle = angle.detach().cpu().float()
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(x.shape[0], 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin
    theta[:, 1, 0], theta[:, 1, 1] = sin, cos
    return _affine(x, theta)


# --- random parameters, drawn as DSA draws them ----------------------------------------------------------------

class _Draw:
    """Per-sample random numbers from ``generator`` on the CPU: ``n`` of them, or one repeated when shared."""

    def __init__(self, n: int, generator: torch.Generator, shared: bool):
        self.n, self.generator, self.count = n, generator, 1 if shared else n

    def uniform(self, low: float, high: float) -> torch.Tensor:
        values = low + (high - low) * torch.rand(self.count, generator=self.generator)
        return values.expand(self.n)

    def integers(self, low: int, high: int) -> torch.Tensor:
        """Integers in [low, high)."""
        return torch.randint(low, high, (self.count,), generator=self.generator).expand(self.n)


def _random_color(x: torch.Tensor, draw: _Draw) -> torch.Tensor:
    shift = draw.uniform(-0.5 * BRIGHTNESS, 0.5 * BRIGHTNESS)
    saturation_factor = draw.uniform(0.0, SATURATION)
    contrast_factor = draw.uniform(CONTRAST, CONTRAST + 1.0)
    return color(x, shift, saturation_factor, contrast_factor)


def crop_shift(size: int) -> int:
    """The largest shift of a random crop on an image side of ``size`` pixels."""
    return int(size * CROP_PAD_RATIO + 0.5)


def cutout_size(size: int) -> int:
    """The side of the cutout square on an image side of ``size`` pixels."""
    return int(size * CUTOUT_RATIO + 0.5)


def _random_crop(x: torch.Tensor, draw: _Draw) -> torch.Tensor:
    sy, sx = crop_shift(x.shape[2]), crop_shift(x.shape[3])
    dy = draw.integers(-sy, sy + 1)
    dx = draw.integers(-sx, sx + 1)
    return translate(x, dy, dx)


def _random_cutout(x: torch.Tensor, draw: _Draw) -> torch.Tensor:
    h, w = x.shape[2], x.shape[3]
    size = (cutout_size(h), cutout_size(w))
    # The square's centre: DSA's range, which lets an even-sized square reach either border equally far.
    centre_y = draw.integers(0, h + 1 - size[0] % 2)
    centre_x = draw.integers(0, w + 1 - size[1] % 2)
    return cutout(x, centre_y - size[0] // 2, centre_x - size[1] // 2, size)


def _random_flip(x: torch.Tensor, draw: _Draw) -> torch.Tensor:
    return flip(x, draw.uniform(0.0, 1.0) < FLIP_PROB)


def _random_scale(x: torch.Tensor, draw: _Draw) -> torch.Tensor:
    sx = draw.uniform(1.0 / SCALE_RATIO, SCALE_RATIO)
    sy = draw.uniform(1.0 / SCALE_RATIO, SCALE_RATIO)
    return scale(x, sx, sy)


def _random_rotate(x: torch.Tensor, draw: _Draw) -> torch.Tensor:
    limit = ROTATE_DEGREES / 180.0 * math.pi
    return rotate(x, draw.uniform(-limit, limit))


TRANSFORMS: dict[str, Callable[[torch.Tensor, _Draw], torch.Tensor]] = {
    "color": _random_color,
    "crop": _random_crop,
    "cutout": _random_cutout,
    "flip": _random_flip,
    "scale": _random_scale,
    "rotate": _random_rotate,
}


def strategy_parts(strategy: str) -> tuple[str, ...]:
    """The transforms an underscore-separated strategy names, e.g. "color_crop" -> ("color", "crop")."""
    parts = tuple(strategy.split("_")) if strategy and strategy != "none" else ()
    unknown = [p for p in parts if p not in TRANSFORMS]
    if unknown:
        raise ValueError(f"unknown DSA transform {unknown[0]!r} in strategy {strategy!r}; "
                         f"expected parts among {', '.join(TRANSFORMS)}")
    return parts


def dsa(x: torch.Tensor, generator: torch.Generator, strategy: str = DSA_STRATEGY, *,
        shared: bool = False) -> torch.Tensor:
    """Apply one randomly chosen transform of ``strategy`` to the batch ``x`` (N, C, H, W).

    The choice and the parameters come from ``generator`` (a CPU generator): per sample, or one draw for the
    whole batch with ``shared``. The result is differentiable with respect to ``x`` and on ``x``'s device.
    """
    if x.dim() != 4:
        raise ValueError(f"expected a batch of images (N, C, H, W), got shape {tuple(x.shape)}")
    parts = strategy_parts(strategy)
    if not parts:
        return x
    part = parts[int(torch.randint(len(parts), (1,), generator=generator))]
    return TRANSFORMS[part](x, _Draw(x.shape[0], generator, shared)).contiguous()
