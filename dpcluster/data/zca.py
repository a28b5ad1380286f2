"""ZCA whitening of images, as MTT applies it to CIFAR (kornia's ``ZCAWhitening`` with regularization 0.1).

With X the N x D matrix of flattened, centred training images, the covariance is C = X^T X / (N - 1) and, from
its decomposition C = U diag(S) U^T, the whitening matrix is W = U diag(1 / sqrt(S + reg)) U^T (kornia's
``zca_mean`` formula). An image x becomes (x - mean) W; W is symmetric, so this is also W (x - mean).

MTT fits it on raw [0, 1] pixels (with ``--zca`` its transform is ``ToTensor`` alone, no ``Normalize``); the
regularization is added to the eigenvalues of that pixel covariance, so the same 0.1 whitens much less hard
than it would on mean/std-normalized images (whose eigenvalues are larger by 1/std^2). ``load_data`` therefore
undoes its loaders' normalization (:func:`unnormalize`) before fitting.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dpcluster.errors import UserError

# MTT's ZCAWhitening(eps=0.1): added to the eigenvalues of the [0, 1] pixels' covariance.
MTT_REGULARIZATION = 0.1
# Values per image (64x64 RGB) above which the D x D covariance and its decomposition get impractical.
MAX_FEATURES = 3 * 64 * 64
# Rows per block when accumulating the covariance or applying the transform (bounds the temporary memory).
_BLOCK_VALUES = 1 << 23


def check_size(shape: tuple[int, ...], name: str) -> None:
    """Raise a one-line UserError if images of ``shape`` (C, H, W) are too large to ZCA-whiten."""
    features = 1
    for side in shape:
        features *= int(side)
    if features > MAX_FEATURES:
        raise UserError(f"{name}: ZCA whitening of {'x'.join(map(str, shape))} images needs a {features}x{features} "
                        f"covariance matrix; at most {MAX_FEATURES} values per image are supported "
                        f"(e.g. data.resolution = 64 for colour images)")


def in_memory_error(name: str) -> UserError:
    """The one-line error for ZCA on a split that is streamed from disk."""
    return UserError(f"{name}: ZCA whitening needs the data in memory; set data.placement = \"device\" "
                     f"(not \"loader\", which streams the images from disk)")


def unnormalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """Mean/std-normalized images (N, C, H, W) back to pixels: ``x * std + mean`` per channel, in place."""
    shape = (1, -1, 1, 1)
    return x.mul_(torch.tensor(std, dtype=x.dtype, device=x.device).view(shape)).add_(
        torch.tensor(mean, dtype=x.dtype, device=x.device).view(shape))


def _block_rows(features: int) -> int:
    return max(1, _BLOCK_VALUES // max(1, features))


@dataclass(eq=False)
class ZCA:
    """A fitted ZCA whitening: ``mean`` (D,) and the symmetric ``transform`` (D, D); ``inverse`` undoes it."""

    mean: torch.Tensor
    transform: torch.Tensor
    inverse: torch.Tensor | None = None

    @classmethod
    def fit(cls, x: torch.Tensor, regularization: float = 0.1, relative: bool = False, centred: bool = True,
            unbiased: bool = True) -> "ZCA":
        """Fit on the images ``x`` (N, ...), N >= 2; computed in float64, stored in ``x``'s dtype and device.

        The defaults are kornia's (MTT's): centred, covariance over N - 1, ``regularization`` added to the
        eigenvalues. FRePo and RCIG cover N and add ``regularization`` times the mean eigenvalue (``relative``,
        their ``zca_reg * trace(cov) / d``); KIP also does not centre (``centred=False``: its mean is zero)."""
        if x.shape[0] < 2:
            raise ValueError(f"ZCA needs at least 2 images to fit, got {x.shape[0]}")
        if not regularization > 0:
            raise ValueError(f"regularization must be > 0, got {regularization}")
        flat = x.detach().reshape(x.shape[0], -1)
        n, d = flat.shape
        mean = flat.mean(dim=0, dtype=torch.float64) if centred else torch.zeros(d, dtype=torch.float64,
                                                                                 device=flat.device)
        cov = torch.zeros(d, d, dtype=torch.float64, device=flat.device)
        step = _block_rows(d)
        for start in range(0, n, step):
            block = flat[start:start + step].to(torch.float64) - mean
            cov.addmm_(block.T, block)
        cov /= (n - 1) if unbiased else n
        if relative:
            regularization = regularization * float(torch.trace(cov)) / d
        # C is symmetric positive semi-definite: its eigendecomposition is its SVD (kornia's route) and W does
        # not depend on the sign or basis the solver picks; tiny negative eigenvalues are rounding.
        eigenvalues, vectors = torch.linalg.eigh(cov)
        eigenvalues = eigenvalues.clamp_min(0) + regularization
        transform = (vectors * eigenvalues.rsqrt()) @ vectors.T
        inverse = (vectors * eigenvalues.sqrt()) @ vectors.T
        dtype = x.dtype if x.dtype.is_floating_point else torch.float32
        return cls(mean.to(dtype), transform.to(dtype), inverse.to(dtype))

    def _check(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(x.shape[0], -1)
        if flat.shape[1] != self.mean.numel():
            raise ValueError(f"images of shape {tuple(x.shape[1:])} have {flat.shape[1]} values; "
                             f"this ZCA was fitted on {self.mean.numel()}")
        return flat

    def _linear(self, x: torch.Tensor, matrix: torch.Tensor, before: torch.Tensor | None,
                after: torch.Tensor | None) -> torch.Tensor:
        flat = self._check(x)
        matrix = matrix.to(device=x.device, dtype=x.dtype)
        before = None if before is None else before.to(device=x.device, dtype=x.dtype)
        after = None if after is None else after.to(device=x.device, dtype=x.dtype)

        def one(block: torch.Tensor) -> torch.Tensor:
            block = block - before if before is not None else block
            block = block @ matrix
            return block + after if after is not None else block

        step = _block_rows(flat.shape[1])
        if flat.shape[0] <= step:
            return one(flat).view(x.shape)
        out = torch.empty_like(flat)
        for start in range(0, flat.shape[0], step):
            out[start:start + step] = one(flat[start:start + step])
        return out.view(x.shape)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Whiten the images ``x`` (N, C, H, W) (any N, same per-image size as fitted); the shape is kept."""
        return self._linear(x, self.transform, self.mean, None)

    def invert(self, x: torch.Tensor) -> torch.Tensor:
        """Undo :meth:`apply` (e.g. to look at whitened images)."""
        if self.inverse is None:
            raise ValueError("this ZCA has no inverse")
        return self._linear(x, self.inverse, None, self.mean)


def fit(x: torch.Tensor, regularization: float = 0.1) -> ZCA:
    """:meth:`ZCA.fit`."""
    return ZCA.fit(x, regularization)


# --- the whitening spaces of the codes whose sets are imported (data.zca = "mtt", "frepo", "kip") ---------------

STYLES = ("mtt", "frepo", "kip")


def _standardized(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    shape = (1, -1, 1, 1)
    return (x - mean.view(shape)) / std.view(shape)


def _layer_normed(x: torch.Tensor) -> torch.Tensor:
    """KIP's per-image normalization: each image less its mean over all its values, over its length."""
    flat = x.reshape(x.shape[0], -1)
    flat = flat - flat.mean(dim=1, keepdim=True)
    return (flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)).view(x.shape)


def whiten(train: torch.Tensor, test: torch.Tensor, style: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Both splits' [0, 1] pixels (N, C, H, W) in the whitening space of ``style``, fitted on ``train``:

    - ``mtt``: kornia's ZCAWhitening(eps=0.1) on the pixels (MTT's ``--zca``, DD-Ranking's);
    - ``frepo``: FRePo's and RCIG's ``normalize_zca``: each channel standardized with the training split's
      statistics, then ZCA centred, over N, regularized by 0.1 times the mean eigenvalue;
    - ``kip``: KIP's ``zca_normalize``: standardized as FRePo, each image then less its mean and over its length
      (``layer_norm``), then ZCA uncentred, over N, regularized by 0.1 times the mean eigenvalue."""
    if style == "mtt":
        whitening = fit(train, MTT_REGULARIZATION)
        return whitening.apply(train), whitening.apply(test)
    mean = train.mean(dim=(0, 2, 3), dtype=torch.float64).to(train.dtype)
    std = train.to(torch.float64).std(dim=(0, 2, 3), unbiased=False).to(train.dtype)
    train, test = _standardized(train, mean, std), _standardized(test, mean, std)
    if style == "kip":
        train, test = _layer_normed(train), _layer_normed(test)
    whitening = ZCA.fit(train, MTT_REGULARIZATION, relative=True, centred=style != "kip", unbiased=False)
    return whitening.apply(train), whitening.apply(test)
