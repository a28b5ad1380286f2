"""scikit-learn's bundled handwritten digits: 1797 real 8x8 grayscale images, shipped with sklearn (no download)."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from dpcluster.data.base import DataBundle, TensorSet, as_split
from dpcluster.specs.experiment import DataSpec


def load(spec: DataSpec) -> DataBundle:
    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0  # pixel values are 0..16
    labels = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=spec.test_fraction, random_state=spec.split_seed, stratify=labels)
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
