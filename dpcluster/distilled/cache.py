"""The cache of distilled sets: ``cache_dir/<method>-<data set>-ipc<k>-<key>/`` in the project format, keyed by
everything that determines the result, so runs and sweeps that share a cache distil each set once."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from dpcluster.distilled.distillers import DISTILLERS, DistillRequest, distill_augmentation, distillation_model
from dpcluster.distilled.format import SIDECAR, DistilledSet
from dpcluster.errors import UserError
from dpcluster.hashing import stable_hash
from dpcluster.specs import DistilledSpec, ModelSpec

if TYPE_CHECKING:
    from dpcluster.data.base import DataBundle

# Bump a method's number when a change to it changes its output, so stale sets are not reused.
# Bumped when an algorithm's result changes for the same parameters (MTT 2: starts drawn below max_start_epoch).
ALGORITHM_VERSIONS = {"dm": 3, "mtt": 2}
_SAMPLED_IMAGES = 16


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def data_fingerprint(data: "DataBundle") -> dict[str, Any]:
    """What defines the training data's content: its description, a digest of all training labels (the split)
    and of a few evenly spaced images (the preprocessing). Cheap for any size, and the same for every placement."""
    labels = data.train_labels()
    n = len(labels)
    picks = torch.linspace(0, n - 1, min(n, _SAMPLED_IMAGES)).round().long().tolist() if n else []
    x = getattr(data.train, "x", None)
    if isinstance(x, torch.Tensor):
        images = x[torch.tensor(picks, dtype=torch.long, device=x.device)].cpu()
    else:
        images = torch.stack([data.train[i][0] for i in picks]) if picks else torch.empty(0)
    return {
        "name": data.name, "num_classes": data.num_classes, "input_shape": list(data.input_shape),
        "mean": list(data.mean), "std": list(data.std), "class_names": list(data.class_names), "train_size": n,
        "zca": data.zca,
        "train_labels": _sha(labels.numpy().tobytes()),
        "train_images": _sha(images.to(torch.float32).contiguous().numpy().tobytes()),
    }


def distill_key(spec: DistilledSpec, data: "DataBundle", model_spec: ModelSpec) -> str:
    """The hash of everything a distillation's result depends on (not where it runs or how it reports);
    ``model_spec`` is the network distilled with."""
    payload = {
        "method": spec.source,
        "version": ALGORITHM_VERSIONS[spec.source],
        "images_per_class": spec.images_per_class,
        "augmentation": distill_augmentation(spec, data),
        "seed": spec.seed,
        "params": getattr(spec, spec.source).to_dict(),
        "data": data_fingerprint(data),
        "model": model_spec.to_dict(),
    }
    return stable_hash(payload)


def cache_folder(spec: DistilledSpec, data: "DataBundle", model_spec: ModelSpec, cache_dir: str | Path) -> Path:
    key = distill_key(spec, data, model_spec)
    return Path(cache_dir) / f"{spec.source}-{data.name}-ipc{spec.images_per_class}-{key}"


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
    distilled = DISTILLERS[spec.source](request)
    distilled = replace(distilled, extra={**distilled.extra, "cache_key": folder.name})
    try:
        distilled.save(folder)
    except UserError:
        if not (folder / SIDECAR).is_file():
            raise
        return _load_cached(folder), folder, True  # another job stored the same set first; use theirs
    state_path.unlink(missing_ok=True)
    return distilled, folder, False
