"""The data layer: :func:`load_data` turns a DataSpec into a :class:`DataBundle`; data sets by name in
``registry.py`` (one module each in ``sources/``). Importing this package loads no torch: what it exports is
imported on first use.

Batch augmentation is ``dpcluster.data.augment.augment``; it is not re-exported here, because a package
attribute named ``augment`` would shadow the submodule of the same name.
"""

from __future__ import annotations

from dpcluster.lazy import lazy_exports

_EXPORTS = {"load_data": "dpcluster.data.load", "DataBundle": "dpcluster.data.base",
            "TensorSet": "dpcluster.data.base", "TensorSetDataset": "dpcluster.data.base"}

__all__ = list(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
