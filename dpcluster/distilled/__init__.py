"""Distilled sets: the project format, importers (MTT, PNG folders), the distillers (distribution matching,
trajectory matching) with their cache, and :func:`obtain_distilled_set`, which gives an experiment its set."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dpcluster.distilled.cache import cached_distill, distill_key
from dpcluster.distilled.format import DistilledSet
from dpcluster.distilled.importers import import_mtt, import_png
from dpcluster.errors import UserError
from dpcluster.specs import DistilledSpec, ModelSpec

if TYPE_CHECKING:
    from dpcluster.data.base import DataBundle

__all__ = ["DistilledSet", "distill_key", "import_mtt", "import_png", "obtain_distilled_set", "read_distilled_set"]


def read_distilled_set(path: str | Path, format: str, data: "DataBundle", zca: bool = False) -> DistilledSet:
    """The set at ``path`` in ``format`` ("dpcluster", "mtt", "png"). ``zca`` (``distilled.zca``) says an
    imported MTT or PNG set is ZCA-whitened; the project's own format records that itself, so it is not read
    there."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"distilled.path: {path} does not exist")
    if format == "mtt":
        return import_mtt(path, data, zca=zca)
    if format == "png":
        return import_png(path, data, zca=zca)
    return DistilledSet.load(path)


def obtain_distilled_set(spec: DistilledSpec, data: "DataBundle", model_spec: ModelSpec, cache_dir: str | Path,
                         device, progress=None, expert_progress=None) -> DistilledSet:
    """The distilled set ``spec`` describes, checked against ``data`` and in ``data``'s normalization.

    ``source = "dm"`` or ``"mtt"`` distils (or reuses the cached set under ``cache_dir``); ``"file"`` reads
    ``spec.path`` (``{ipc}`` in it replaced by the size). ``progress(iteration, iterations, loss)`` is called while
    distilling.
    """
    if spec.source == "file":
        distilled, where = read_distilled_set(spec.set_path, spec.format, data, zca=spec.zca), spec.set_path
    else:
        distilled, folder, _ = cached_distill(spec, data, model_spec, cache_dir, device, progress,
                                              expert_progress=expert_progress)
        where = f"cache {folder}"
    distilled = distilled.matched_to(data, where=where)
    if distilled.images_per_class != spec.images_per_class:
        # The experiment records images_per_class; a set of another size would be filed under the wrong one.
        raise UserError(f"{where}: has {distilled.images_per_class} images per class, but the spec says "
                        f"distilled.images_per_class = {spec.images_per_class}")
    return distilled
