"""The networks: ``build_model(spec, input_shape, num_classes)`` and ``check_model`` (``build.py``), by name from
the registry (``registry.py``; the built-ins in ``networks/``). Importing this package loads no torch: what it
exports is imported on first use.

The built-in models expose ``embed(x)`` (the features fed to the last linear layer), which distribution
matching uses, and ``classifier`` (that last layer).
"""

from __future__ import annotations

from dpcluster.lazy import lazy_exports

_EXPORTS = {"build_model": "dpcluster.models.build", "check_model": "dpcluster.models.build",
            "ConvNet": "dpcluster.models.convnet", "AlexNet": "dpcluster.models.alexnet"}

__all__ = list(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
