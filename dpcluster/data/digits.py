"""scikit-learn's bundled handwritten digits: 1797 real 8x8 grayscale images, shipped with sklearn (no download).

The split is kept as a small ``.npz`` in the user's cache (``$XDG_CACHE_HOME/dpcluster``, or ``~/.cache``), keyed
by the split's settings and scikit-learn's version: importing scikit-learn costs about two seconds, which every
job of a sweep on Slurm would otherwise pay in a process of its own.
"""

from __future__ import annotations

import os
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

from dpcluster.atomic import write_atomic
from dpcluster.data.base import DataBundle, TensorSet, as_split
from dpcluster.specs.experiment import DataSpec


def _split_with_sklearn(spec: DataSpec) -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0  # pixel values are 0..16
    labels = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=spec.test_fraction, random_state=spec.split_seed, stratify=labels)
    return {"x_train": x_train, "x_test": x_test, "y_train": y_train, "y_test": y_test}


def split_cache_file(spec: DataSpec) -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dpcluster"
    return root / f"digits-split-{spec.test_fraction!r}-{spec.split_seed}-sklearn{version('scikit-learn')}.npz"


def _split(spec: DataSpec) -> dict[str, np.ndarray]:
    path = split_cache_file(spec)
    try:
        with np.load(path) as stored:
            return {key: stored[key] for key in ("x_train", "x_test", "y_train", "y_test")}
    except (OSError, KeyError, ValueError):  # not cached yet, or unreadable: make it again
        pass
    arrays = _split_with_sklearn(spec)
    try:
        write_atomic(path, lambda handle: np.savez(handle, **arrays))
    except OSError:  # a read-only home only costs the import next time
        pass
    return arrays


def load(spec: DataSpec) -> DataBundle:
    split = _split(spec)
    x_train, x_test, y_train, y_test = split["x_train"], split["x_test"], split["y_train"], split["y_test"]
    # Normalize with statistics of the training split only, so the test split stays unseen.
    mean = float(x_train.mean(dtype=np.float64))
    std = float(x_train.std(dtype=np.float64))

    def tensors(x: np.ndarray, y: np.ndarray) -> TensorSet:
        x = (torch.from_numpy(x).unsqueeze(1) - mean) / std
        return TensorSet(x.contiguous(), torch.from_numpy(y))

    return DataBundle(
        name="digits",
        num_classes=10,
        input_shape=(1, 8, 8),
        mean=(mean,),
        std=(std,),
        class_names=tuple(str(d) for d in range(10)),
        train=as_split(tensors(x_train, y_train), spec.placement),
        test=as_split(tensors(x_test, y_test), spec.placement),
    )
