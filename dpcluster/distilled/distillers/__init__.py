"""The distillers behind ``distilled.source``: one module each, registering a
:class:`dpcluster.distilled.registry.Distiller` (importing them loads no torch). What every distiller is given and
shares is :mod:`dpcluster.distilled.request`, whose names are importable from here too (on first use)."""

from __future__ import annotations

import importlib

_EXPORTS = ("DistillRequest", "Progress", "distill_augmentation", "distillation_model")


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module("dpcluster.distilled.request"), name)
