"""The cache of distilled sets: ``cache_dir/<method>-<data set>-ipc<k>-<key>/`` in the project format, keyed by
everything that determines the result, so runs and sweeps that share a cache distil each set once."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from dpcluster.distilled.fingerprint import data_fingerprint
from dpcluster.distilled.format import SIDECAR, DistilledSet
from dpcluster.distilled.registry import get_distiller
from dpcluster.distilled.request import DistillRequest, distill_augmentation, distillation_model
from dpcluster.errors import UserError
from dpcluster.hashing import stable_hash
from dpcluster.registry import resolve
from dpcluster.specs import DistilledSpec, ModelSpec

if TYPE_CHECKING:
    from dpcluster.data.base import DataBundle


def distill_key(spec: DistilledSpec, data: "DataBundle", model_spec: ModelSpec) -> str:
    """The hash of everything a distillation's result depends on (not where it runs or how it reports);
    ``model_spec`` is the network distilled with. The distiller's ``version`` is in it: a distiller whose output
    changes for the same settings bumps it, so stale sets are not reused."""
    distiller = get_distiller(spec.source)
    settings = distiller.settings_of(spec)
    payload = {
        "method": spec.source,
        "version": distiller.version,
        "images_per_class": spec.images_per_class,
        "augmentation": distill_augmentation(spec, data),
        "seed": spec.seed,
        "params": settings.to_dict() if settings is not None else {},
        "data": data_fingerprint(data),
        "model": model_spec.to_dict(),
    }
    if spec.embedding is not None:  # only where set: every other key stays as it was
        payload["embedding"] = spec.embedding
    return stable_hash(payload)


def cache_folder(spec: DistilledSpec, data: "DataBundle", model_spec: ModelSpec, cache_dir: str | Path) -> Path:
    key = distill_key(spec, data, model_spec)
    # A factory's name (package.module:function) has a colon, which some file systems refuse in names. The key
    # hashes the data's content, so two data sets of one name (two folders) never share an entry.
    name = data.name.replace(":", "-")
    return Path(cache_dir) / f"{spec.source}-{name}-ipc{spec.images_per_class}-{key}"


def _load_cached(folder: Path) -> DistilledSet:
    try:
        return DistilledSet.load(folder)
    except UserError as error:
        raise UserError(f"{error} (a broken cache entry: delete {folder} to distil it again)") from None


def cached_distill(spec: DistilledSpec, data: "DataBundle", model_spec: ModelSpec, cache_dir: str | Path,
                   device, progress=None, on_checkpoint=None, checkpoint_every: int = 100,
                   expert_progress=None) -> tuple[DistilledSet, Path, bool]:
    """The set for these inputs: from the cache when there, else distilled (resuming a stopped distillation)
    and stored. ``model_spec`` is the experiment's; the network distilled with is :func:`distillation_model`.
    Returns the set, its folder, and whether it came from the cache."""
    model_spec = distillation_model(spec, model_spec, tuple(data.input_shape))
    folder = cache_folder(spec, data, model_spec, cache_dir)
    if (folder / SIDECAR).is_file():
        return _load_cached(folder), folder, True
    state_path = folder.with_name(f".{folder.name}.state.pt")
    request = DistillRequest(spec, data, model_spec, device, Path(cache_dir), state_path, progress, on_checkpoint,
                             checkpoint_every, expert_progress)
    distilled = resolve(get_distiller(spec.source).distil)(request)
    distilled = replace(distilled, extra={**distilled.extra, "cache_key": folder.name})
    try:
        distilled.save(folder)
    except UserError:
        if not (folder / SIDECAR).is_file():
            raise
        return _load_cached(folder), folder, True  # another job stored the same set first; use theirs
    state_path.unlink(missing_ok=True)
    return distilled, folder, False
