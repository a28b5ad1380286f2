"""The cache of distribution-matching sets: ``cache_dir/<key>/`` in the project format, keyed by everything that
determines the result, so jobs that share a cache distil each set once."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from dpcluster.distilled import dm
from dpcluster.distilled.format import SIDECAR, DistilledSet
from dpcluster.errors import UserError
from dpcluster.specs import DistilledSpec, ModelSpec

if TYPE_CHECKING:
    from dpcluster.data.base import DataBundle

# Bump when a change to distill_dm changes its output, so stale sets are not reused.
ALGORITHM_VERSION = 1
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
        "train_labels": _sha(labels.numpy().tobytes()),
        "train_images": _sha(images.to(torch.float32).contiguous().numpy().tobytes()),
    }


def dm_cache_key(spec: DistilledSpec, data: "DataBundle", model_spec: ModelSpec, seed: int) -> str:
    payload = {
        "algorithm": ALGORITHM_VERSION,
        "dm": {"images_per_class": spec.images_per_class, "iterations": spec.dm_iterations, "lr": spec.dm_lr,
               "real_per_class": spec.dm_real_per_class},
        "data": data_fingerprint(data),
        "model": model_spec.to_dict(),
        "seed": seed,
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _load_cached(folder: Path) -> DistilledSet:
    try:
        return DistilledSet.load(folder)
    except UserError as error:
        raise UserError(f"{error} (a broken cache entry: delete {folder} to distil it again)") from None


def cached_dm(spec: DistilledSpec, data: "DataBundle", model_spec: ModelSpec, seed: int, cache_dir: str | Path,
              device, progress: dm.Progress | None = None) -> DistilledSet:
    """The DM set for these inputs: from ``cache_dir`` when there, else distilled and stored there."""
    key = dm_cache_key(spec, data, model_spec, seed)
    folder = Path(cache_dir) / key
    if (folder / SIDECAR).is_file():
        return _load_cached(folder)
    distilled = dm.distill_dm(data, model_spec, spec.images_per_class, spec.dm_iterations, spec.dm_lr,
                              spec.dm_real_per_class, seed, device, progress)
    distilled = replace(distilled, extra={**distilled.extra, "cache_key": key})
    try:
        distilled.save(folder)
    except UserError:
        if not (folder / SIDECAR).is_file():
            raise
        return _load_cached(folder)  # another job stored the same set first; use theirs
    return distilled
