"""Distilled sets: the project format, importers (MTT, PNG folders), distribution matching, and
:func:`obtain_distilled_set`, which gives an experiment its set."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dpcluster.distilled.cache import cached_dm, dm_cache_key
from dpcluster.distilled.dm import distill_dm
from dpcluster.distilled.format import DistilledSet
from dpcluster.distilled.importers import import_mtt, import_png
from dpcluster.errors import UserError
from dpcluster.specs import DistilledSpec, ModelSpec

if TYPE_CHECKING:
    from dpcluster.data.base import DataBundle

__all__ = ["DistilledSet", "distill_dm", "dm_cache_key", "import_mtt", "import_png", "obtain_distilled_set"]


def obtain_distilled_set(spec: DistilledSpec, data: "DataBundle", model_spec: ModelSpec, seed: int,
                         cache_dir: str | Path, device, progress=None) -> DistilledSet:
    """The distilled set ``spec`` describes, checked against ``data`` and in ``data``'s normalization.

    ``source = "dm"`` distils (or reuses the cached set under ``cache_dir``); the others import ``spec.path``.
    ``progress(iteration, iterations, loss)`` is called while distilling.
    """
    if spec.source == "dm":
        distilled = cached_dm(spec, data, model_spec, seed, cache_dir, device, progress)
        where = f"cache {Path(cache_dir) / distilled.extra.get('cache_key', '')}"
    else:
        path = Path(spec.path).expanduser()
        if not path.exists():
            raise UserError(f"distilled.path: {path} does not exist")
        where = str(path)
        if spec.source == "mtt":
            distilled = import_mtt(path, data)
        elif spec.source == "png":
            distilled = import_png(path, data)
        else:
            distilled = DistilledSet.load(path)
    distilled = distilled.matched_to(data, where=where)
    if distilled.images_per_class != spec.images_per_class:
        # The experiment records images_per_class; a set of another size would be filed under the wrong one.
        raise UserError(f"{where}: has {distilled.images_per_class} images per class, but the spec says "
                        f"distilled.images_per_class = {spec.images_per_class}")
    return distilled
