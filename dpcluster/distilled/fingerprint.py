"""What identifies the training data in the keys of cached distilled sets and expert trajectories: a digest that
is cheap for any data size and the same for every placement of the data. Changing it re-keys every cache entry."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from dpcluster.data.base import DataBundle

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
        # Only where it is not MTT's (which every key made before styles existed means), so those keys stand.
        **({"zca_style": data.zca_style} if data.zca and data.zca_style != "mtt" else {}),
        "train_labels": _sha(labels.numpy().tobytes()),
        "train_images": _sha(images.to(torch.float32).contiguous().numpy().tobytes()),
    }
