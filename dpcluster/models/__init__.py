"""The networks: ``build_model(spec, input_shape, num_classes)`` and ``check_model`` (``build.py``), by name from
the registry (``registry.py``; the built-ins in ``networks/``). Importing this package loads no torch: what it
exports is imported on first use.

Every model exposes ``embed(x)`` (the features fed to the last linear layer), which distribution
matching uses, and ``classifier`` (that last layer).
"""

from __future__ import annotations

import importlib

_EXPORTS = {"build_model": "dpcluster.models.build", "check_model": "dpcluster.models.build",
            "ConvNet": "dpcluster.models.convnet", "AlexNet": "dpcluster.models.alexnet"}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
