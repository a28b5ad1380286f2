"""Distilled sets: the project format, readers of other codes' formats (``readers/``), the distillers
(distribution matching, trajectory matching) with their cache, and :func:`obtain_distilled_set`, which gives an
experiment its set.
Distillers and set formats by name are in ``registry.py`` (one module each in ``distillers/`` and ``formats/``).
Importing this package loads no torch: what it exports from its modules is imported on first use."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from dpcluster.errors import UserError

if TYPE_CHECKING:
    from dpcluster.data.base import DataBundle
    from dpcluster.distilled.format import DistilledSet
    from dpcluster.distilled.registry import ReadOptions
    from dpcluster.specs import DistilledSpec, ModelSpec

_EXPORTS = {"DistilledSet": "dpcluster.distilled.format", "distill_key": "dpcluster.distilled.cache"}

__all__ = ["DistilledSet", "distill_key", "obtain_distilled_set", "read_distilled_set", "read_options"]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def read_options(spec: "DistilledSpec") -> "ReadOptions":
    """What ``spec`` says of the file its set is read from."""
    from dpcluster.distilled.registry import ReadOptions

    return ReadOptions(zca=spec.zca, normalization=spec.normalization, labels=spec.labels, entry=spec.entry)


def read_distilled_set(path: str | Path, format: str, data: "DataBundle",
                       options: "ReadOptions | None" = None) -> "DistilledSet":
    """The set at ``path`` in ``format`` (a name of the set-format registry: "dpcluster", "mtt", "dc", ...), read
    as ``options`` say (ZCA, normalization, labels, entry), checked against ``data`` and converted to its
    normalization (here, for every format: a reader returns the set as stored)."""
    from dpcluster.distilled.registry import ReadOptions, get_format
    from dpcluster.registry import resolve

    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"distilled.path: {path} does not exist")
    stored = resolve(get_format(format).reader)(path, data, options or ReadOptions())
    return stored.matched_to(data, where=str(path))


def obtain_distilled_set(spec: "DistilledSpec", data: "DataBundle", model_spec: "ModelSpec", cache_dir: str | Path,
                         device, progress=None, expert_progress=None) -> "DistilledSet":
    """The distilled set ``spec`` describes, checked against ``data`` and in ``data``'s normalization.

    A distiller's ``source`` ("dm", "mtt", ...) distils (or reuses the cached set under ``cache_dir``); ``"file"``
    reads ``spec.path`` (``{ipc}`` in it replaced by the size). ``progress(iteration, iterations, loss)`` is
    called while distilling.
    """
    if spec.from_file:
        distilled, where = read_distilled_set(spec.set_path, spec.format, data, read_options(spec)), spec.set_path
    else:
        from dpcluster.distilled.cache import cached_distill

        distilled, folder, _ = cached_distill(spec, data, model_spec, cache_dir, device, progress,
                                              expert_progress=expert_progress)
        where = f"cache {folder}"
        distilled = distilled.matched_to(data, where=where)
    if distilled.images_per_class != spec.images_per_class:
        # The experiment records images_per_class; a set of another size would be filed under the wrong one.
        raise UserError(f"{where}: has {distilled.images_per_class} images per class, but the spec says "
                        f"distilled.images_per_class = {spec.images_per_class}")
    return distilled
