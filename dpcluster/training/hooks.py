"""The training loop's per-epoch hook: what one epoch did, for whoever follows a training (the progress bar, Ray
Tune's reports, the trackers); each is a function of an :class:`EpochEnd`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class EpochEnd:
    """One finished epoch of a training: ``epoch`` of ``epochs`` (counting from 1), the optimizer steps so far,
    the learning rate it ran at, and the mean training loss and accuracy over its batches (this process's share
    of them in a data-parallel training; augmented batches, so not a test of the network)."""

    epoch: int
    epochs: int
    step: int
    lr: float
    loss: float
    accuracy: float


EpochHook = Callable[[EpochEnd], None]


def every(*hooks: EpochHook | None) -> EpochHook | None:
    """One hook calling each of ``hooks`` in turn (None where there is none)."""
    present = [hook for hook in hooks if hook is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0]

    def call(end: EpochEnd) -> None:
        for hook in present:
            hook(end)

    return call
