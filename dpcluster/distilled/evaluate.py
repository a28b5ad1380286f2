"""How good a distilled set is: train a fresh network on it and test on real data; and the baseline it must
beat, a random real subset of the same size."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from dpcluster.data.base import TensorSet
from dpcluster.models import build_model
from dpcluster.specs import ModelSpec, TrainingSpec
from dpcluster.training import evaluate, train

if TYPE_CHECKING:
    from dpcluster.data.base import DataBundle


def test_accuracy_after_training_on(tensors: TensorSet, data: "DataBundle", model_spec: ModelSpec,
                                    training: TrainingSpec, seed: int, device: torch.device,
                                    lr: float | None = None) -> float:
    """Test accuracy on ``data`` of a network of ``model_spec`` (initialised from ``seed``) trained on ``tensors``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(model_spec, data.input_shape, data.num_classes)
    train(model, tensors.to(device), training, device=device, seed=seed, lr=lr)
    accuracy, _ = evaluate(model, data.test, device=device)
    return accuracy


def random_real_subset(data: "DataBundle", images_per_class: int, seed: int) -> TensorSet:
    """``images_per_class`` random real training images of every class: the images distribution matching with
    ``seed`` starts from (one draw, so the baseline is exactly DM's starting point)."""
    from dpcluster.distilled.dm import initial_indices, real_subset

    return real_subset(data, initial_indices(data, images_per_class, seed))
