"""How good a distilled set is, as DC-BENCH and DD-Ranking measure it: several fresh networks (seeds 0..N-1)
trained on the set with the set's augmentation and learning rate and the evaluation schedule, tested on real
data, against random real subsets of the same size trained the same way (subset k drawn with seed k).
``dpcluster evaluate-set`` and ``dpcluster distill`` both evaluate through :func:`evaluate_set`."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from dpcluster.data.base import TensorSet
from dpcluster.models import build_model
from dpcluster.specs import ModelSpec, TrainingSpec
from dpcluster.training import evaluate, train

if TYPE_CHECKING:
    from dpcluster.data.base import DataBundle
    from dpcluster.distilled.format import DistilledSet

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
    ``seed`` starts from (one draw, so the baseline of seed 0 is exactly DM's starting point)."""
    from dpcluster.distilled.dm import initial_indices, real_subset

    return real_subset(data, initial_indices(data, images_per_class, seed))


@dataclass(frozen=True)
class SetEvaluation:
    """Test accuracies, network by network, of training on the set and on random real subsets of its size."""

    set_accuracies: tuple[float, ...]
    subset_accuracies: tuple[float, ...]
    # How both trained: the resolved augmentation and schedule, and the set's learning rate (its learned one where
    # it has one); the subsets train at the training's own.
    training: TrainingSpec
    set_lr: float
    seconds: float

    @property
    def subset_lr(self) -> float:
        return self.training.lr


def training_on_set(distilled: "DistilledSet", data: "DataBundle", training: TrainingSpec,
                    use_learned_lr: bool = True) -> tuple[TrainingSpec, float]:
    """The training a set is evaluated with (augmentation "auto" made the set's) and its learning rate."""
    resolved = training.with_auto_augmentation(distilled.training_augmentation(data))
    lr = distilled.learned_lr if use_learned_lr and distilled.learned_lr is not None else resolved.lr
    return resolved, lr


def evaluate_set(distilled: "DistilledSet", data: "DataBundle", model_spec: ModelSpec, training: TrainingSpec,
                 networks: int, device: torch.device, use_learned_lr: bool = True, baseline: bool = True,
                 on_network: Callable[[int, int], None] | None = None) -> SetEvaluation:
    """Train ``networks`` fresh networks on ``distilled`` (and, with ``baseline``, as many on random real subsets
    of its size, with the spec's learning rate), calling ``on_network(done, total)`` after each training."""
    resolved, lr = training_on_set(distilled, data, training, use_learned_lr)
    total = networks * (2 if baseline else 1)
    started, done = time.perf_counter(), 0
    on_set, on_subset = [], []
    tensors = distilled.as_tensor_set()
    for seed in range(networks):
        on_set.append(test_accuracy_after_training_on(tensors, data, model_spec, resolved, seed, device, lr))
        done += 1
        if on_network is not None:
            on_network(done, total)
        if baseline:
            subset = random_real_subset(data, distilled.images_per_class, seed)
            on_subset.append(test_accuracy_after_training_on(subset, data, model_spec, resolved, seed, device))
            done += 1
            if on_network is not None:
                on_network(done, total)
    return SetEvaluation(tuple(on_set), tuple(on_subset), resolved, lr, time.perf_counter() - started)


def set_digest(distilled: "DistilledSet") -> str:
    """What identifies a set's content (its images and labels), whatever file it came from."""
    digest = hashlib.sha256()
    for tensor in (distilled.images, distilled.labels):
        digest.update(str((tensor.dtype, tuple(tensor.shape))).encode())
        digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]
