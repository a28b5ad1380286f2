"""Loading a DataSpec's data set (``load_data``): its source's loader (``registry.py``), then ZCA whitening
where the spec asks for it."""

from __future__ import annotations

from dpcluster.data.base import DataBundle, Split, TensorSet, TensorSetDataset
from dpcluster.data.registry import source_for
from dpcluster.errors import UserError
from dpcluster.registry import resolve
from dpcluster.specs.experiment import DataSpec


def load_data(spec: DataSpec) -> DataBundle:
    """Load the data set ``spec`` names. Nothing is ever downloaded; missing or bad files raise UserError.

    With ``spec.zca`` both splits are ZCA-whitened with a transform fitted on the training split.
    """
    bundle = _load(spec)
    if spec.zca:
        _whiten(bundle, spec.zca_style)
    return bundle


def _in_memory(split: Split) -> TensorSet | None:
    if isinstance(split, TensorSet):
        return split
    if isinstance(split, TensorSetDataset):
        return split.tensors
    return None


def _whiten(bundle: DataBundle, style: str) -> None:
    """ZCA-whiten both in-memory splits of ``bundle`` in place, exactly as MTT does (``--zca``; for the styles of
    FRePo and KIP, see :func:`dpcluster.data.zca.whiten`).

    MTT fits kornia's ``ZCAWhitening(eps=0.1)`` on the training images as ``ToTensor`` gives them, [0, 1] pixels
    with no mean/std normalization, and applies it to both splits. The loaders here normalize, so the
    normalization is undone first (x * std + mean), then the transform is fitted on the training split's
    pixels (see :mod:`dpcluster.data.zca`) and applied to both.

    Afterwards the images are in ZCA space, not mean/std-normalized pixels: ``bundle.mean``/``bundle.std``
    become 0 and 1 per channel (the identity normalization), so nothing renormalizes ZCA-space images as if
    they were pixels (a distilled set made on this data records the same identity normalization).
    """
    from dpcluster.data import zca

    train, test = _in_memory(bundle.train), _in_memory(bundle.test)
    if train is None or test is None:
        raise zca.in_memory_error(bundle.name)
    zca.check_size(bundle.input_shape, bundle.name)
    if len(train) < 2:
        raise UserError(f"{bundle.name}: ZCA whitening needs at least 2 training images, got {len(train)}")
    for split in (train, test):
        split.x = zca.unnormalize(split.x, bundle.mean, bundle.std)
    train.x, test.x = zca.whiten(train.x, test.x, style)
    channels = bundle.input_shape[0]
    bundle.mean, bundle.std = (0.0,) * channels, (1.0,) * channels
    bundle.zca, bundle.zca_style = True, style


def _load(spec: DataSpec) -> DataBundle:
    # The source's module is imported here, so a digits run (and importing this package) does not pay for
    # torchvision.
    return resolve(source_for(spec.name).loader)(spec)
