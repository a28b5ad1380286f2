"""The data layer: :func:`load_data` turns a DataSpec into a :class:`DataBundle`.

Batch augmentation is ``dpcluster.data.augment.augment``; it is not re-exported here, because a package
attribute named ``augment`` would shadow the submodule of the same name.
"""

from __future__ import annotations

from dpcluster.data.base import DataBundle, TensorSet, TensorSetDataset
from dpcluster.specs.experiment import DataSpec

__all__ = ["DataBundle", "TensorSet", "TensorSetDataset", "load_data"]


def load_data(spec: DataSpec) -> DataBundle:
    """Load the data set ``spec`` names. Nothing is ever downloaded; missing or bad files raise UserError."""
    # Imported here so that the digits path (and importing this package) does not pay for torchvision.
    if spec.name == "digits":
        from dpcluster.data import digits
        return digits.load(spec)
    if spec.name in ("cifar10", "cifar100"):
        from dpcluster.data import cifar
        return cifar.load(spec)
    if spec.name in ("imagenet10", "imagenette", "imagenet"):
        from dpcluster.data import imagenet
        return imagenet.load(spec)
    raise ValueError(f"no loader for data set {spec.name!r}")
